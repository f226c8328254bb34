"""`rarenet-extension` / `rarenet.ext`: the osquery extension process.

osquery starts it with its own flags only — `--socket PATH --timeout S --interval S
[--verbose]` — and everything else comes from rarenet.toml `[extension]` or
`RARENET_EXTENSION_*`. The process registers extension `rarenet` with core, serves its
tables on `<socket>.<uuid>`, refreshes the snapshot in the background, and asks core every
`--interval` seconds for its extensions: when core is gone (socket gone, call fails) or is
a new core that does not list this extension (osqueryd restarted its worker between two
checks) it exits with status 1 so that it is started again (osquery's own SDKs exit 0
when core is gone, and miss a quick restart); on core's `shutdown()` call or SIGTERM it
exits 0.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from rarenet.extension import __version__, core
from rarenet.extension.sdk import Handler, Registry
from rarenet.extension.server import ExtensionServer
from rarenet.extension.settings import ExtensionSettings, SettingsError, load_settings
from rarenet.extension.sync import SnapshotSync
from rarenet.extension.tables import (
    CoreSockets,
    FallbackSockets,
    NetworkBaseline,
    ProcSockets,
    UnusualNetworkActivity,
)

NAME = "rarenet"
VERSION = __version__
DEFAULT_SOCKET = "/var/osquery/osquery.em"
MAX_SECONDS = 86400.0

log = logging.getLogger("rarenet.extension")


def seconds(text: str) -> float:
    """A flag's seconds: a finite number ≥ 0 (osquery passes its own flag's text as is);
    `nan`, `inf` or 1e300 would make a wait loop forever or overflow."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and {MAX_SECONDS:g} seconds")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rarenet-extension",
        description="rarenet's osquery extension (tables unusual_network_activity, "
        "network_baseline). Settings come from rarenet.toml [extension] and "
        "RARENET_EXTENSION_*; the flags are the ones osquery passes.",
    )
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help="osquery's extensions socket")
    parser.add_argument("--timeout", type=seconds, default=3, help="seconds to wait for core")
    parser.add_argument(
        "--interval", type=seconds, default=3, help="seconds between checks of core"
    )
    parser.add_argument("--verbose", action="store_true", help="log informational messages")
    return parser.parse_args(argv)


def core_wait(timeout: float) -> float:
    """How long the table waits for core's sockets: half of a generate's deadline
    (`--timeout`), so a slow core leaves time to answer from /proc instead of an error."""
    return max(timeout / 2, 0.25)


def build(
    socket_path: str, timeout: float, settings: ExtensionSettings | None, problem: str = ""
) -> tuple[Registry, SnapshotSync]:
    """The tables over one snapshot sync (the sync reports a settings problem in rows)."""
    sync = SnapshotSync(settings or ExtensionSettings(snapshot_url="", snapshot_path=""))
    if problem:
        sync.configure_error(f"no snapshot: configuration error: {problem}")
    tables = Registry(
        [
            UnusualNetworkActivity(
                FallbackSockets(CoreSockets(socket_path, core_wait(timeout)), ProcSockets()), sync
            ),
            NetworkBaseline(sync),
        ]
    )
    return tables, sync


def wait_for_core(path: str, timeout: float, stop: threading.Event | None = None) -> bool:
    deadline = time.monotonic() + max(timeout, 0.1)
    while True:
        if core.ping(path, min(1.0, max(timeout, 0.1))):
            return True
        if time.monotonic() >= deadline:
            return False
        if stop is not None and stop.wait(0.1):  # SIGTERM while waiting
            return False
        if stop is None:
            time.sleep(0.1)


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    exit_code = [1]

    def request_stop(code: int) -> None:
        exit_code[0] = code
        stop.set()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        request_stop(0)

    signal.signal(signal.SIGTERM, on_signal)  # before anything: a clean stop at any moment
    signal.signal(signal.SIGINT, on_signal)
    try:
        settings: ExtensionSettings | None = load_settings()
        problem = ""
    except SettingsError as exc:
        log.error("%s", exc)
        settings, problem = None, str(exc)
    timeout = max(float(args.timeout), 0.5)
    registry, sync = build(args.socket, timeout, settings, problem)
    if not wait_for_core(args.socket, timeout, stop):
        if stop.is_set():  # SIGTERM while starting: nothing registered yet
            return exit_code[0]
        log.error("cannot reach osquery at %s within %gs", args.socket, timeout)
        return 1
    if stop.is_set():  # SIGTERM while starting: nothing registered yet
        return exit_code[0]
    try:
        uuid = core.register(args.socket, NAME, VERSION, registry.routes(), timeout)
    except core.CoreError as exc:
        log.error("%s", exc)
        return 1

    def on_shutdown() -> None:  # answer core first, then stop
        threading.Timer(0.2, request_stop, (0,)).start()

    handler = Handler(registry, on_shutdown=on_shutdown, deadline=timeout, encoded=True)
    server = ExtensionServer(f"{args.socket}.{uuid}", handler)
    try:
        server.start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", server.path, exc)
        core.deregister(args.socket, uuid, min(timeout, 1.0))
        return 1
    if not problem:
        sync.start()
    log.info("registered extension %s as uuid %d on %s", NAME, uuid, server.path)

    interval = max(float(args.interval), 0.1)
    try:
        while not stop.wait(interval):
            known = core.registered(args.socket, uuid, NAME, timeout)
            if known is None:
                log.error("osquery at %s went away; exiting", args.socket)
                exit_code[0] = 1
                break
            if not known and not stop.is_set():
                log.error(
                    "osquery at %s restarted and no longer knows extension %s (uuid %d); "
                    "exiting so that it is started again",
                    args.socket,
                    NAME,
                    uuid,
                )
                exit_code[0] = 1
                break
    finally:
        sync.stop()
        server.stop()
        if exit_code[0] == 0:
            core.deregister(args.socket, uuid, min(timeout, 1.0))
    return exit_code[0]


def tune_malloc() -> None:
    """glibc: at most 2 malloc arenas and a fixed mmap threshold, so the memory of a big
    generate goes back to the OS instead of staying in per-thread arenas (measured: ~10
    MiB less resident after a few 2,000-row calls). Harmless elsewhere (musl: no mallopt)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (also stops its dynamic growth)
    except (OSError, AttributeError, ImportError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tune_malloc()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="rarenet-extension: %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("thrift").setLevel(logging.CRITICAL)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
