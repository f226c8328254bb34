-- rarenet_open_sockets: live inet sockets of processes that talk to a remote peer.
--
-- @description: Live inet sockets of processes with a remote peer (no loopback, no LISTEN), with process, user, parent, grandparent, great-grandparent and direction.
-- @interval: 60
-- @platform: linux
-- @min_osquery_version: 5.0.0
-- @optional: false
--
-- One row per socket: the osquery columns of process_open_sockets, the owning
-- process (name, path, cmdline, cwd, uid, parent), the user name, the parent's name,
-- path and cmdline, then the grandparent and great-grandparent (pid, name, path,
-- cmdline), and `direction`: 'inbound' when the process listens on the socket's
-- local port (it accepted the connection), else 'outbound'. An ancestor that is gone
-- (or pid 0, above init) gives '' for its texts and -1 for the pid above it, as the
-- LEFT JOINs leave them. The ancestors name the shell when a socket is held by its
-- child: osquery reports a socket shared by several processes once, for one holder
-- (docs/extension.md, "Shared sockets").
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
-- listening_ports), then, per socket kept by the filters, four processes lookups
-- (the holder, parent, grandparent, great-grandparent) and one users lookup. pid is
-- an index column of processes, so each lookup reads that one /proc/<pid> (status,
-- stat, cmdline, exe, cwd), never the whole process list; SQLite does not share
-- them between rows, so a process with 50 remote sockets is read 50 times per level.
-- The grandparent and great-grandparent joins take the processes lookups per kept
-- socket from two to four; they cost nothing per process on the host or per socket
-- the filters drop. On a busy server (≈1,000 processes, ≈5,000 sockets, a few
-- hundred of them remote) this is still expected in the tens of ms of CPU per run —
-- far inside the watchdog's 10 % CPU and 200 MB at a 60 s interval; the lookups grow
-- with the number of remote sockets (an estimate, not measured against osquery here).
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
  COALESCE(pp.path, '') AS parent_path,
  COALESCE(pp.cmdline, '') AS parent_cmdline,
  COALESCE(pp.parent, -1) AS grandparent,
  COALESCE(gp.name, '') AS grandparent_name,
  COALESCE(gp.path, '') AS grandparent_path,
  COALESCE(gp.cmdline, '') AS grandparent_cmdline,
  COALESCE(gp.parent, -1) AS great_grandparent,
  COALESCE(ggp.name, '') AS great_grandparent_name,
  COALESCE(ggp.path, '') AS great_grandparent_path,
  COALESCE(ggp.cmdline, '') AS great_grandparent_cmdline,
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
LEFT JOIN processes AS gp ON gp.pid = pp.parent
LEFT JOIN processes AS ggp ON ggp.pid = gp.parent
LEFT JOIN users AS u ON u.uid = p.uid
WHERE s.family IN (2, 10)
  AND s.pid > 0
  AND s.remote_port != 0
  AND s.remote_address NOT IN ('', '0.0.0.0', '::', '::1')
  AND s.remote_address NOT LIKE '127.%'
  AND s.remote_address NOT LIKE '::ffff:127.%'
  AND COALESCE(s.state, '') != 'LISTEN';
