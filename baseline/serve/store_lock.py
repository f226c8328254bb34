"""One `rarenet serve` per store: the second is refused, naming the first.

Two servers on one store would both run the schedule — two detection runs racing for
the same windows, two delivery loops, two pruners — so `serve` holds an exclusive
POSIX record lock (`lockf`) on `<store>.serve.lock` for as long as it runs, with its
pid and address in the file for the message a second one prints. The kernel releases
it when the process ends however it ends (kill -9 included), and — unlike `flock` —
forked workers do not inherit it, so neither a stale file nor an orphaned worker blocks
the next start.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rarenet.baseline.errors import StoreError


def lock_path(store_path: str) -> str:
    """The lock file beside the store."""
    return f"{store_path}.serve.lock"


@contextmanager
def serving_alone(store_path: str, address: str) -> Iterator[None]:
    """Hold the store's serve lock while the block runs; StoreError (exit 3) naming
    the running server when another holds it."""
    if store_path == ":memory:":
        yield
        return
    path = lock_path(store_path)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot open its lock file: {exc.strerror or exc}", where=path) from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise StoreError(
                f"another rarenet serve ({holder}) is serving this store",
                where=store_path,
                hint="one serve per store runs the schedule (two would both detect, deliver "
                "and prune): stop that one, or give this one its own --db",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {address}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
