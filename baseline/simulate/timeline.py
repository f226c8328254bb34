"""One host's timeline: its activities fire in time order and emit socket rows.

A row is emitted once, when its socket first shows up: at the host's first osquery poll
at or after the connection start (differential results). Rows are
`(poll time, host index, sequence, row JSON bytes)` tuples.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import ChainMap
from collections.abc import Sequence

from rarenet.baseline.simulate.activities import (
    Activity,
    Attack,
    Once,
    make_activity,
    tool_activity,
)
from rarenet.baseline.simulate.attacks import AttackPlan
from rarenet.baseline.simulate.catalogue import (
    DAEMON,
    FLOWS,
    FORK,
    PROGRAMS,
    UPGRADES,
    Flow,
    Program,
)
from rarenet.baseline.simulate.fleet import Host, ToolInstall
from rarenet.baseline.simulate.peers import STATIC_PEERS, FleetPeers, Pool, internet_pool
from rarenet.baseline.simulate.roles import (
    AGENT,
    OFF_HOURS,
    WEB,
    WEB_CURVE,
    ActivitySpec,
    activities_for,
)
from rarenet.baseline.simulate.sockets import SharedCache, Stream, View

Event = tuple[int, int, int, bytes]
PID_MAX = 4_194_304
EPHEMERAL_LOW, EPHEMERAL_COUNT = 32768, 28232  # net.ipv4.ip_local_port_range 32768 60999
INTERNET = internet_pool()
IPV6_CUTOFF = 154  # of 256: IPv6 share of connections to dual-stack peers from IPv6 hosts


class HostSim:
    """The state of one host (pids, inodes, activities) while its timeline is generated."""

    def __init__(
        self,
        host: Host,
        end: int,
        seed: int,
        peers: FleetPeers,
        shared: SharedCache,
        installs: Sequence[ToolInstall] = (),
        attacks: Sequence[AttackPlan] = (),
        extras: Sequence[tuple[ActivitySpec, int]] = (),
    ) -> None:
        self.host = host
        self.index = host.index
        self.rng = random.Random(f"rarenet-simulate:{seed}:host:{host.index}")
        self.rand = self.rng.random
        self.bits = self.rng.getrandbits
        self.end = end
        self.offset = host.poll_offset
        self.peers = peers
        self.shared = shared
        self.pids: dict[str, int] = {"systemd": 1}
        self.last_pid = self.rng.randint(600, 3000)
        self.inode = self.rng.randint(18_000, 60_000)
        self.port = EPHEMERAL_LOW + self.rng.randrange(EPHEMERAL_COUNT)
        self.sequence = itertools.count()
        self.out: list[Event] = []
        self.heap: list[tuple[float, int, Activity]] = []
        self.pushed = 0
        self.views: dict[str, View] = {}
        self.streams: dict[tuple[str, str], Stream] = {}
        self.resolved: dict[str, tuple[Stream, View]] = {}
        self.programs: ChainMap[str, Program] = ChainMap({}, PROGRAMS)  # + attack programs
        self.pools: ChainMap[str, Pool] = ChainMap({}, STATIC_PEERS)  # + attacker C2
        self._schedule(installs, attacks, extras)

    def _schedule(
        self,
        installs: Sequence[ToolInstall],
        attacks: Sequence[AttackPlan],
        extras: Sequence[tuple[ActivitySpec, int]],
    ) -> None:
        host = self.host
        for spec, begin in extras:  # scenario families: rollouts in waves, weekly jobs
            self.add(spec, begin)
        for spec in activities_for(host.flavor):
            self.add(spec, host.join)
        self.add(AGENT, host.agent_at)
        for install in installs:
            self.add(tool_activity(install.tool), install.at)
        for plan in attacks:
            self._push(plan.start, Attack(plan))

    def add(self, spec: ActivitySpec, begin: float) -> None:
        """Start an activity at `begin` (ignored if the run is over by then)."""
        if begin >= self.end:
            return
        if spec.open_at_start:
            self._push(begin, Once(spec))
        activity = make_activity(spec, self.rng)
        self._push(activity.first(self, begin), activity)

    def _push(self, when: float, activity: Activity) -> None:
        if when < self.end:
            self.pushed += 1
            heapq.heappush(self.heap, (when, self.pushed, activity))

    def run(self, until: int, out: list[Event]) -> None:
        """Fire every activity due before `until`, appending rows to `out`."""
        self.out = out
        heap = self.heap
        while heap and heap[0][0] < until:
            when, order, activity = heap[0]
            activity.fire(self, when)
            following = activity.after(self, when)
            if following < self.end:
                heapq.heapreplace(heap, (following, order, activity))
            else:
                heapq.heappop(heap)

    def weight(self, profile: str, t: float) -> float:
        """How busy this host is at `t` for a time-of-day profile (1 = peak)."""
        if profile == WEB:
            return WEB_CURVE[int(t // 3600) % 24]
        local = t + self.host.tz
        day = int(local // 86400)
        night, weekend = OFF_HOURS[profile]
        if (day + 3) % 7 >= 5:  # 1970-01-01 was a Thursday
            return weekend
        low, high = self.host.work
        return 1.0 if low <= local - day * 86400 < high else night

    # --- processes -------------------------------------------------------------------

    def new_pid(self) -> int:
        """The next pid the kernel hands out (increasing, wrapping at pid_max)."""
        self.last_pid += 1 + int(self.rng.random() * 30)
        if self.last_pid >= PID_MAX:
            self.last_pid = 300 + int(self.rng.random() * 1000)
        return self.last_pid

    def pid_of(self, key: str) -> int:
        """The pid of a long-running process, started on first use."""
        pid = self.pids.get(key)
        if pid is None:
            pid = self.pids[key] = self.new_pid()
        return pid

    def restart(self, chance: float) -> None:
        """Restart each daemon with this chance (package upgrades): new pids."""
        for key in self.pids:
            if key != "systemd" and self.rng.random() < chance:
                self.pids[key] = self.new_pid()

    def view(self, key: str, at: float) -> View:
        """A program on this host, after any upgrade that reached it by `at`."""
        if key in UPGRADES and at >= self.host.upgrade_at:
            key = UPGRADES[key]
        found = self.views.get(key)
        if found is None:
            host = self.host
            found = self.shared.view(key, self.programs, host.user, host.uid, host.netns)
            self.views[key] = found
        return found

    def parent_pid(self, view: View) -> int:
        """The parent's pid: stable for daemons, a fresh process otherwise."""
        if not view.parent:
            return 0
        return self.pid_of(view.parent) if view.parent_daemon else self.new_pid()

    # --- sockets ---------------------------------------------------------------------

    def _pool(self, peer: str) -> Pool:
        if peer == "internet":
            return INTERNET
        if peer.startswith("fleet:"):
            return self.peers.pool(peer, self.host.ip4, self.index)
        return self.pools[peer]

    def stream(self, key: str, flow: Flow, view: View) -> Stream:
        """How `view` opens `flow` on this host, computed once."""
        found = self.streams.get((key, view.key))
        if found is None:
            host = self.host
            local = (host.ip4, host.ip6)
            if view.pod:  # pods have their own address and no IPv6 here
                local = (f"10.244.{host.index // 250 % 256}.{host.index % 250 + 2}", "")
            found = self.shared.stream(view, flow, self._pool(flow.peer), local)
            self.streams[(key, view.key)] = found
        return found

    def resolve(self, key: str, at: float) -> tuple[Stream, View]:
        """The stream and program of a flow at `at` (cached unless an upgrade may apply)."""
        found = self.resolved.get(key)
        if found is None:
            flow = FLOWS[key]
            view = self.view(flow.program, at)
            found = (self.stream(key, flow, view), view)
            if flow.program not in UPGRADES:
                self.resolved[key] = found
        return found

    def open_one(self, key: str, t: float) -> None:
        """The common occurrence: one socket of one flow (never an upgradable program)."""
        stream, view = self.resolved.get(key) or self.resolve(key, t)
        pid = self.pid_of(view.key) if view.mode == DAEMON else self.new_pid()
        self.emit(stream, pid, self.parent_pid(view), t)

    def occur(self, spec: ActivitySpec, t: float) -> None:
        """One occurrence of an activity: its flows in order, each a burst of sockets."""
        rand = self.rng.random
        if spec.restart:
            self.restart(spec.restart)
        keys = spec.flows
        if spec.choose:
            keys = (*keys, spec.choose[int(rand() * len(spec.choose))])
        low, high = spec.burst
        at = t
        for key in keys:
            stream, view = self.resolve(key, at)
            ppid = self.parent_pid(view)
            mode = view.mode
            pid = self.pid_of(view.key) if mode == DAEMON else self.new_pid()
            for _ in range(low if low == high else self.rng.randint(low, high)):
                if mode == FORK:
                    pid = self.new_pid()
                self.emit(stream, pid, ppid, at)
                at += 1 + rand() * 20
            at += 2 + rand() * 60

    def emit(self, stream: Stream, pid: int, ppid: int, at: float) -> None:
        """One socket row, logged at the first poll at or after `at` (none past the end)."""
        t = int(at)
        poll = t + (self.offset - t) % 60
        if poll >= self.end:
            return
        bits = self.bits(64)  # one draw for all of this row's random choices
        if stream.v6 and bits & 0xFF < IPV6_CUTOFF:
            template, local, pool = stream.template6, stream.local6, stream.v6
        else:
            template, local, pool = stream.template4, stream.local4, stream.v4
        remote = pool[(bits >> 8 & 0xFFFF) % len(pool)]
        self.inode = inode = self.inode + 1 + (bits >> 40 & 0x1FF)
        fd = stream.fd_low + (bits >> 49 & 0xFF) % stream.fd_span
        if stream.inbound:
            client_port = EPHEMERAL_LOW + (bits >> 24 & 0xFFFF) % EPHEMERAL_COUNT
            row = template % (pid, fd, inode, local, stream.port, remote, client_port, ppid)
        else:  # the kernel walks its ephemeral range: no 4-tuple repeats soon
            step = 1 + (bits >> 24 & 0x3F)
            self.port = port = EPHEMERAL_LOW + (self.port + step - EPHEMERAL_LOW) % EPHEMERAL_COUNT
            row = template % (pid, fd, inode, local, port, remote, stream.port, ppid)
        self.out.append((poll, self.index, next(self.sequence), row))

    def attack(self, plan: AttackPlan) -> None:
        """Emit a planned attack's rows (at exact offsets, so its label covers them).

        Attacks draw from their own random stream and leave the host's pid/inode state as
        they found it, so `--attacks` adds rows without changing the benign ones.
        """
        tech = plan.technique
        key = f"attack:{tech.id}"
        self.programs[key] = plan.program
        if plan.shell is not None:
            self.programs[plan.program.parent] = plan.shell
        self.pools[key] = ((tech.remote,), ())
        saved = (self.rng, self.bits, self.inode, self.port, self.last_pid, dict(self.pids))
        self.rng = random.Random(f"rarenet-simulate:{plan.label.host}:{key}:{plan.start}")
        self.bits = self.rng.getrandbits
        try:
            view = self.view(key, plan.start)
            stream = self.stream(key, Flow(key, key, tech.port), view)
            ppid = self.parent_pid(view)
            pid = self.new_pid()
            for i, offset in enumerate(tech.offsets):
                if tech.respawn and i:
                    pid = self.new_pid()
                self.emit(stream, pid, ppid, plan.start + offset)
        finally:
            self.rng, self.bits, self.inode, self.port, self.last_pid, self.pids = saved
