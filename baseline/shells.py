"""Shells proper (bash, sh, dash, zsh, …): the process names whose own sockets are a
reverse shell's signature.

A shell holds a socket only through a redirection (`/dev/tcp/…`) or one it inherited;
script interpreters (python, perl, …) open sockets as any program does, so they are not
in this set. Used by presence (shell destinations), scoring's `d` and the migrations.
"""

from __future__ import annotations

from rarenet.extension.locations import SHELL_NAMES as SHELL_NAMES

# Network tools attackers use where they find them: never "newly installed?", and no
# familiar destination speaks for them (baseline/detect/explain.py, destinations.py).
DUAL_USE_TOOLS = frozenset(
    {
        "nc", "nc.openbsd", "nc.traditional", "ncat", "netcat", "socat", "telnet",
        "openssl", "curl", "wget", "ssh", "scp", "sftp", "ftp", "tftp", "nmap", "rsync",
        "xterm", "busybox", "nohup", "sleep", "base64", "dd",
    }
)  # fmt: skip

# Addresses that are no destination: a listening or unconnected socket.
UNSET_REMOTES = ("", "0.0.0.0", "::")


def is_plain_shell(name: str) -> bool:
    """A shell proper, not a script interpreter."""
    return name in SHELL_NAMES


def sql_list(values: frozenset[str] | tuple[str, ...]) -> str:
    """The values as an SQL list of string literals (they are constants without quotes)."""
    return ", ".join(f"'{value}'" for value in sorted(values))
