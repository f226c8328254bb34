"""Read one process's `/proc/<pid>` entries the way osquery's tables do.

Every function returns an empty value instead of raising when the process is gone or
the entry cannot be read: processes come and go while a scan runs.

Names, paths and command lines are whatever bytes a process chose (any local user can
chdir into, or run, a file whose name is not UTF-8), so they are read as bytes and decoded
as UTF-8 with U+FFFD for invalid bytes: every string returned here is valid UTF-8 (no
surrogate escapes, which orjson and SQLite reject).
"""

from __future__ import annotations

import os
from typing import NamedTuple

_SOCKET_PREFIX = "socket:["
_DELETED = b" (deleted)"
_C_SPACE = " \t\n\v\f\r"  # what osquery's boost::trim strips
_C_SPACE_BYTES = _C_SPACE.encode()
_CHUNK = 1 << 16


class ProcessInfo(NamedTuple):
    """The `processes` columns the pack query uses."""

    name: str
    path: str
    cmdline: str
    cwd: str
    uid: int
    parent: int


class Ancestor(NamedTuple):
    """The `processes` columns the pack query reads of an ancestor (its LEFT JOINs)."""

    name: str
    path: str
    cmdline: str
    parent: int


def list_pids(proc_root: str) -> list[int]:
    """Pids under `proc_root`, in osquery's order (sorted as strings); [] if unreadable."""
    try:
        names = os.listdir(proc_root)
    except OSError:
        return []
    return [int(name) for name in sorted(names) if name.isdigit() and int(name) > 0]


def net_namespace(proc_root: str, pid: int) -> int | None:
    """Inode of the process's network namespace; 0 if not readable; None if gone."""
    try:
        link = os.readlink(f"{proc_root}/{pid}/ns/net")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return 0
    if not link.startswith("net:[") or not link.endswith("]"):
        return 0
    try:
        return int(link[5:-1])
    except ValueError:
        return 0


def socket_fds(proc_root: str, pid: int) -> list[tuple[int, int]]:
    """(fd, socket inode) for each socket descriptor of `pid`, in directory order."""
    try:
        directory = os.open(f"{proc_root}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return []
    found: list[tuple[int, int]] = []
    try:
        for name in os.listdir(directory):
            try:
                link = os.readlink(name, dir_fd=directory)
                if link.startswith(_SOCKET_PREFIX):
                    found.append((int(name), int(link[8:-1])))
            except (OSError, ValueError):
                continue  # closed since the listing, not permitted, or not a socket link
    except OSError:
        pass
    finally:
        os.close(directory)
    return found


def read_process(proc_root: str, pid: int) -> ProcessInfo | None:
    """The process's name, path, cmdline, cwd, uid and parent; None if gone."""
    status = _read_status(proc_root, pid)
    if status is None:
        return None
    name, uid, parent = status
    base = os.fsencode(f"{proc_root}/{pid}")
    cwd = _text(_readlink(base + b"/cwd"))
    return ProcessInfo(name, _exe_path(base), _cmdline(base), cwd, uid, parent)


def read_ancestor(proc_root: str, pid: int) -> Ancestor | None:
    """The name, path, cmdline and parent of `pid` as an ancestor; None if there is no
    such process (gone, or pid 0 — the kernel, above init — or -1: no pid at all)."""
    status = _read_status(proc_root, pid) if pid > 0 else None
    if status is None:
        return None
    name, _uid, parent = status
    base = os.fsencode(f"{proc_root}/{pid}")
    return Ancestor(name, _exe_path(base), _cmdline(base), parent)


def _read_status(proc_root: str, pid: int) -> tuple[str, int, int] | None:
    """(Name, real Uid, PPid) from /proc/<pid>/status; None if gone or malformed."""
    try:
        text = _read(f"{proc_root}/{pid}/status").decode("utf-8", "replace")
    except OSError:
        return None
    name, uid, parent = "", -1, -1
    for line in text.split("\n"):
        key, _, value = line.partition(":")
        if key == "Name":
            name = _status_value(value)
        elif key == "Uid":
            uid = _first_int(value)
        elif key == "PPid":
            parent = _first_int(value)
    if uid < 0 or parent < 0:
        return None
    return name, uid, parent


def _status_value(raw: str) -> str:
    """osquery's reading of a status value: split on ':', drop empty pieces, trim, re-join."""
    return ":".join(piece.strip(_C_SPACE) for piece in raw.split(":") if piece)


def _first_int(raw: str) -> int:
    fields = raw.split()
    return int(fields[0]) if fields and fields[0].isdigit() else -1


def _read(path: str | bytes) -> bytes:
    """A small /proc file in as few syscalls as possible (a short read is its end)."""
    handle = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(handle, _CHUNK)]
        while len(chunks[-1]) == _CHUNK:
            chunks.append(os.read(handle, _CHUNK))
    finally:
        os.close(handle)
    return b"".join(chunks)


def utf8_text(value: str) -> str:
    """`value` as valid UTF-8 text. A str the OS decoded from non-UTF-8 bytes (`pwd`,
    `os` results carry them as surrogate escapes) is re-read from those bytes, U+FFFD
    for each invalid one."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = os.fsencode(value)
        except UnicodeEncodeError:  # a surrogate no OS decoding makes
            raw = value.encode("utf-8", "surrogatepass")
        return _text(raw)
    return value


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _readlink(path: bytes) -> bytes:
    """The link's target as raw bytes (a bytes path makes readlink return bytes)."""
    try:
        return os.readlink(path)
    except OSError:
        return b""


def _exe_path(base: bytes) -> str:
    """readlink exe; osquery drops " (deleted)" unless a file by that very name exists."""
    path = _readlink(base + b"/exe")
    if path.endswith(_DELETED) and not os.path.exists(path):
        path = path[: -len(_DELETED)]
    return _text(path)


def _cmdline(base: bytes) -> str:
    """cmdline with NULs as spaces, trimmed; invalid UTF-8 replaced."""
    try:
        raw = _read(base + b"/cmdline")
    except OSError:
        return ""
    return _text(raw.replace(b"\0", b" ").strip(_C_SPACE_BYTES))
