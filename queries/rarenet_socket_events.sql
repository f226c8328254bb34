-- rarenet_socket_events: every outbound connect() and inbound accept() as it
-- happens, from the Linux audit subsystem — catches connections too short-lived for
-- the rarenet_open_sockets poll to see.
--
-- @description: Optional. connect()/accept() of inet sockets from Linux audit (short-lived connections); needs osquery audit flags.
-- @interval: 60
-- @platform: linux
-- @min_osquery_version: 5.0.0
-- @optional: true
--
-- Needs: osqueryd flags --disable_audit=false --audit_allow_config=true
-- --audit_allow_sockets=true (and auditd must not be running: osquery needs the
-- audit netlink socket to itself). Evented: rows are buffered by osqueryd between
-- runs and each row is one event with its own `time`. Without the flags the query
-- returns nothing. The `status` column needs osquery 5.0 (Linux only).
-- Interval 60 s: for an evented table the interval only sets how often buffered
-- events are flushed to the log. 60 s keeps each batch small (friendly to the
-- watchdog's 200 MB), well below --events_max, and the delay far inside a
-- 15-minute bucket.
-- Costs: audit events for every connect/accept/bind on the host; on very busy hosts
-- (tens of thousands of connections per minute) this is the expensive query — see
-- docs/deploy.md before enabling it fleet-wide.
-- Columns follow rarenet_open_sockets where socket_events has them (pid, path,
-- family, local/remote address and port); name is derived from path by rarenet.
SELECT
  action,
  pid,
  fd,
  family,
  protocol,
  local_address,
  local_port,
  remote_address,
  remote_port,
  path,
  auid,
  time,
  status,
  success,
  CASE WHEN action = 'accept' THEN 'inbound' ELSE 'outbound' END AS direction
FROM socket_events
WHERE action IN ('connect', 'accept')
  AND family IN (2, 10)
  AND pid > 0
  AND remote_port != 0
  AND remote_address NOT IN ('', '0.0.0.0', '::', '::1')
  AND remote_address NOT LIKE '127.%'
  AND remote_address NOT LIKE '::ffff:127.%';
