-- rarenet_open_sockets: live inet sockets of processes that talk to a remote peer.
--
-- @description: Live inet sockets of processes with a remote peer (no loopback, no LISTEN), with process, parent, user and direction.
-- @interval: 60
-- @platform: linux
-- @min_osquery_version: 5.0.0
-- @optional: false
--
-- One row per socket: the osquery columns of process_open_sockets, the owning
-- process (name, path, cmdline, cwd, uid, parent) and its parent's name, the user
-- name, and `direction`: 'inbound' when the process listens on the socket's local
-- port (it accepted the connection), else 'outbound'.
--
-- Needs: no flags; Linux. process_open_sockets maps /proc/<pid>/fd socket inodes
-- to the tcp/udp tables of every network namespace.
-- Interval 60 s: the rule counts presence per 15-minute bucket, so every bucket
-- must be polled many times. osquery splays each interval once by up to ±10 %
-- (54–66 s), so any connection that stays open ≥ 66 s is always seen and every
-- bucket gets ≥ 13 polls; shorter-lived connections are caught by
-- rarenet_socket_events. Differential logging (removed: false) sends only sockets
-- that are new since the last poll, so the result log stays small.
-- Costs: one walk of /proc/<pid>/fd for every process (process_open_sockets and
-- listening_ports), a processes scan and indexed lookups of parent and user. On a
-- busy server (≈1,000 processes, ≈5,000 sockets) this is typically tens of ms of CPU
-- per run — far inside the watchdog's 10 % CPU and 200 MB at a 60 s interval.
-- Filters: inet only (family 2/10), owned by a process (pid > 0), with a remote
-- peer (not unspecified, port ≠ 0), loopback peers dropped (127.0.0.0/8, ::1,
-- ::ffff:127.0.0.0/104), LISTEN sockets dropped.
SELECT
  s.pid,
  s.fd,
  s.socket,
  s.family,
  s.protocol,
  s.local_address,
  s.local_port,
  s.remote_address,
  s.remote_port,
  s.state,
  s.net_namespace,
  p.name,
  p.path,
  p.cmdline,
  p.cwd,
  p.uid,
  COALESCE(u.username, '') AS username,
  p.parent,
  COALESCE(pp.name, '') AS parent_name,
  CASE
    WHEN EXISTS (
      SELECT 1 FROM listening_ports AS l
      WHERE l.pid = s.pid AND l.port = s.local_port AND l.protocol = s.protocol
    ) THEN 'inbound'
    ELSE 'outbound'
  END AS direction
FROM process_open_sockets AS s
JOIN processes AS p ON p.pid = s.pid
LEFT JOIN processes AS pp ON pp.pid = p.parent
LEFT JOIN users AS u ON u.uid = p.uid
WHERE s.family IN (2, 10)
  AND s.pid > 0
  AND s.remote_port != 0
  AND s.remote_address NOT IN ('', '0.0.0.0', '::', '::1')
  AND s.remote_address NOT LIKE '127.%'
  AND s.remote_address NOT LIKE '::ffff:127.%'
  AND COALESCE(s.state, '') != 'LISTEN';
