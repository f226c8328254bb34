"""The process chain of a signal and the shell or interpreter behind it.

A reverse shell `bash -c 'exec 3<>/dev/tcp/…; sleep 60'` leaves the socket with
`sleep`: osquery's process_open_sockets names one holder per socket (docs/extension.md
"Shared sockets"). The chain (parent, grandparent, great-grandparent, from the pack
query's ancestor columns) lets the signal name the shell that opened it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from rarenet.baseline.shells import DUAL_USE_TOOLS

# Shells and interpreters whose children holding a socket deserve to be named.
_SHELL = re.compile(
    r"^(?:ba|da|z|k|mk|c|tc|a|fi|yash|busybox|)sh$|^busybox$|^fish$"
    r"|^(?:python|perl|ruby|php|node|lua|tclsh|pwsh)[0-9.]*$|^(?:g|m|n)?awk$"
)


@dataclass(frozen=True)
class Ancestor:
    """One process of the chain; empty strings and pid -1 where osquery gave nothing."""

    pid: int
    name: str
    path: str
    cmdline: str

    def as_ecs(self) -> dict[str, Any]:
        """ECS process fields of this ancestor."""
        return {
            "pid": self.pid if self.pid > 0 else None,
            "name": self.name or None,
            "executable": self.path or None,
            "command_line": self.cmdline or None,
        }


def parse_chain(
    stored: str | None, parent_pid: int = -1, parent_name: str = ""
) -> tuple[Ancestor, ...]:
    """The chain from `observations.ancestors`; without it, the parent's pid and name."""
    chain: list[Ancestor] = []
    try:
        items = orjson.loads(stored) if stored else []
    except orjson.JSONDecodeError:
        items = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, list) and len(item) == 4:
            pid, name, path, cmdline = item
            chain.append(
                Ancestor(
                    pid if isinstance(pid, int) else -1,
                    str(name or ""),
                    str(path or ""),
                    str(cmdline or ""),
                )
            )
    if not chain and (parent_pid > 0 or parent_name):
        chain.append(Ancestor(parent_pid, parent_name, "", ""))
    return tuple(chain[:3])


def is_shell(name: str) -> bool:
    """A shell or script interpreter, by process name."""
    return bool(_SHELL.match(name))


def lives_off_the_land(name: str) -> bool:
    """A shell, a script interpreter or a dual-use network tool (nc, curl, openssl, …):
    on every host, so being new to the network says nothing of how it got there."""
    return is_shell(name) or name in DUAL_USE_TOOLS


FIRST_LOGIN_UID = 1000  # Debian's and Red Hat's UID_MIN: the first account of a person
NOT_PEOPLE = (65534, 4294967294, 4294967295)  # nobody, and (uid_t) -2 and -1


def started_by_a_person(uid: int) -> bool:
    """Whether a process runs as a login account (uid from UID_MIN, not nobody) rather
    than root or a service account: an app someone installed and runs themselves."""
    return uid >= FIRST_LOGIN_UID and uid not in NOT_PEOPLE


def shell_behind(name: str, chain: tuple[Ancestor, ...]) -> Ancestor | None:
    """The nearest shell or interpreter above a socket holder that is not one itself."""
    if is_shell(name):
        return None
    for ancestor in chain:
        if is_shell(ancestor.name):
            return ancestor
    return None


def shell_clause(shell: Ancestor) -> str:
    """The reason's words for the shell behind the holder."""
    command = f": {shell.cmdline[:160]}" if shell.cmdline else ""
    pid = f" (pid {shell.pid})" if shell.pid > 0 else ""
    return f"held by a child of the shell {shell.name}{pid}{command}"


def name_the_shell(
    reason: str, explanation: dict[str, Any], name: str, chain: tuple[Ancestor, ...]
) -> str:
    """The reason with the shell behind the holder named; the explanation gains
    `lineage.shell`. Unchanged when the holder has no shell or interpreter above it."""
    shell = shell_behind(name, chain)
    if shell is None:
        return reason
    explanation["lineage"] = {"shell": shell.as_ecs()}
    return f"{reason}; {shell_clause(shell)}"
