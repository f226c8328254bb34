"""Test helpers: a throw-away network namespace joined to the host by a veth pair, and
child processes that hold sockets in it (or on the host) until told to stop.

Test traffic only ever goes to loopback or to a namespace made here. Creating one needs
root and iproute2's `ip netns`; `veth_ns` skips the test when either is missing.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

IP_TIMEOUT = 10.0


class NetnsUnavailable(Exception):
    """This machine cannot make network namespaces (not root, or no `ip netns`)."""


@dataclass(frozen=True)
class VethNamespace:
    """A namespace `name` reachable from the host over `host_if`; addresses without prefix."""

    name: str
    host_if: str
    host_v4: str
    ns_v4: str
    host_v6: str
    ns_v6: str
    inode: int

    def exec_argv(self, argv: Sequence[str | bytes]) -> list[str | bytes]:
        """`argv` run inside the namespace (ip execs it: the child's pid is the command's)."""
        return ["ip", "netns", "exec", self.name, *argv]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], check=check, capture_output=True, text=True, timeout=IP_TIMEOUT
    )


def _ip_or_unavailable(*args: str) -> None:
    """Run `ip`; a refusal (no CAP_SYS_ADMIN, no veth, IPv6 off) means: cannot test here."""
    try:
        _ip(*args)
    except subprocess.CalledProcessError as exc:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {exc.stderr.strip()}") from exc


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    try:
        probe = _ip("netns", "list", check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` failed: {exc}"
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    return None


def _free_subnet() -> tuple[int, int, str]:
    """A random /30 in 10.231.0.0/16 and /64 in fd00::/16 not already on this host."""
    used = _ip("-o", "addr", "show").stdout
    for _attempt in range(20):
        index, v6 = secrets.randbelow(1 << 14), f"{secrets.randbelow(0xFFFF) + 1:x}"
        third, fourth = index >> 6, (index & 63) << 2
        if f"10.231.{third}.{fourth + 1}/" not in used and f"fd00:{v6}::" not in used:
            return third, fourth, v6
    raise NetnsUnavailable("no free 10.231.x.y/30 subnet after 20 tries")


@contextmanager
def veth_namespace() -> Iterator[VethNamespace]:
    """Create `rn-test-<random>` with a veth pair and IPv4 + IPv6 (ULA, nodad) on both ends.

    Always removes the link and the namespace, even when setup or the body fails.
    """
    reason = netns_unavailable_reason()
    if reason is not None:
        raise NetnsUnavailable(reason)
    tag = secrets.token_hex(3)
    name, host_if, ns_if = f"rn-test-{tag}", f"rnh-{tag}", f"rnn-{tag}"
    third, fourth, v6 = _free_subnet()
    v4 = f"10.231.{third}."
    try:
        _ip_or_unavailable("netns", "add", name)
        _ip_or_unavailable("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", name)
        _ip("addr", "add", f"{v4}{fourth + 1}/30", "dev", host_if)
        _ip_or_unavailable("-6", "addr", "add", f"fd00:{v6}::1/64", "dev", host_if, "nodad")
        _ip("link", "set", host_if, "up")
        inside = ("netns", "exec", name, "ip")
        _ip(*inside, "addr", "add", f"{v4}{fourth + 2}/30", "dev", ns_if)
        _ip(*inside, "-6", "addr", "add", f"fd00:{v6}::2/64", "dev", ns_if, "nodad")
        _ip(*inside, "link", "set", ns_if, "up")
        _ip(*inside, "link", "set", "lo", "up")
        yield VethNamespace(
            name=name,
            host_if=host_if,
            host_v4=f"{v4}{fourth + 1}",
            ns_v4=f"{v4}{fourth + 2}",
            host_v6=f"fd00:{v6}::1",
            ns_v6=f"fd00:{v6}::2",
            inode=os.stat(f"/run/netns/{name}").st_ino,
        )
    finally:
        _ip("link", "del", host_if, check=False)
        _ip("netns", "del", name, check=False)


# A child that opens the sockets described by argv[1], a JSON spec:
#   {"sockets": [{"op": "connect" | "listen" | "bind" | "unix", "host", "port",
#                 "udp": bool, "count": n, "from": [host, port]}, ...],
#    "user": name to run as, "comm": process name, "report_accepts": bool}
# prints one JSON line {"pid", "sockets": [{"fd", "laddr", "raddr"}]}, then accepts on its
# listeners (printing one line per connection if "report_accepts") until stdin closes.
HOLDER = r"""
import json, os, pwd, resource, selectors, socket, sys

spec = json.loads(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if spec.get("comm"):
    with open("/proc/self/comm", "w") as handle:
        handle.write(spec["comm"])
if spec.get("user"):
    entry = pwd.getpwnam(spec["user"])
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)

def describe(sock):
    raddr = []
    try:
        raddr = list(sock.getpeername()[:2])
    except OSError:
        pass
    return {"fd": sock.fileno(), "laddr": list(sock.getsockname()[:2]), "raddr": raddr}

held, listeners = [], []
for item in spec["sockets"]:
    op = item["op"]
    if op == "unix":
        held.extend(socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM))
        continue
    family = socket.AF_INET6 if ":" in item["host"] else socket.AF_INET
    kind = socket.SOCK_DGRAM if item.get("udp") else socket.SOCK_STREAM
    for _ in range(item.get("count", 1)):
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if op == "connect":
            if "from" in item:
                sock.bind(tuple(item["from"]))
            sock.connect((item["host"], item["port"]))
        else:
            sock.bind((item["host"], item.get("port", 0)))
            if op == "listen":
                sock.listen(4096)
                listeners.append(sock)
        held.append(sock)

report = spec.get("report_accepts", False)
print(json.dumps({"pid": os.getpid(), "sockets": [describe(s) for s in held]}), flush=True)
selector = selectors.DefaultSelector()
selector.register(sys.stdin, selectors.EVENT_READ)
for sock in listeners:
    sock.setblocking(False)
    selector.register(sock, selectors.EVENT_READ)
while True:
    for key, _ in selector.select():
        if key.fileobj is sys.stdin:
            if not sys.stdin.readline():
                raise SystemExit(0)
            continue
        try:
            conn, _peer = key.fileobj.accept()
        except BlockingIOError:
            continue
        held.append(conn)
        if report:
            print(json.dumps(describe(conn)), flush=True)
"""


class Child:
    """A running HOLDER (or any line-printing) process; `stop()` always reaps it."""

    def __init__(self, argv: Sequence[str | bytes], **popen: Any) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                **popen,
            )
        except BaseException:
            self._stderr.close()
            raise
        self.pid = self.proc.pid
        self._pending = b""
        self._stderr_text = ""

    def line(self, timeout: float = 10.0) -> Any:
        """The next JSON line the child prints, waiting at most `timeout` seconds."""
        assert self.proc.stdout is not None
        out = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([out], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"child {self.pid} printed no line for {timeout} s")
            chunk = os.read(out, 1 << 16)
            if not chunk:
                raise RuntimeError(f"child {self.pid} exited: {self.stderr_text()}")
            self._pending += chunk
        text, _, self._pending = self._pending.partition(b"\n")
        return json.loads(text)

    def stderr_text(self) -> str:
        """What the child wrote to stderr (stops it first)."""
        self.stop()
        return self._stderr_text

    def stop(self, timeout: float = 5.0) -> None:
        """Close stdin (the child exits), kill it if it lingers, reap it, close pipes."""
        if self.proc.stdin and not self.proc.stdin.closed:
            with suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if not self._stderr.closed:
            self._stderr.seek(0)
            self._stderr_text = self._stderr.read().decode(errors="replace")
            self._stderr.close()


def holder_argv(spec: dict[str, Any], *extra: str | bytes) -> list[str | bytes]:
    """argv of an isolated Python child running HOLDER with `spec`."""
    return [sys.executable, "-I", "-c", HOLDER, json.dumps(spec), *extra]


@contextmanager
def children() -> Iterator[list[Child]]:
    """A list to append `Child`ren to; every one is stopped on exit."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.stop()


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Poll `predicate()` until true or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
