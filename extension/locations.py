"""Where an executable lives, and what that says: pure functions on path strings.

Shared by the rule (baseline/detect) and the extension, so both score a path alike.
docs/scoring.md ("Locations") explains the classes:

* volatile or hidden — /tmp, /var/tmp, /dev/shm, /run/user, a dot-directory, a deleted
  file: where droppers and implants live. Most suspicious; never a rollout.
* user — a home directory (a user-installed tool). Never a rollout.
* local — /usr/local, /srv and anything not package-managed. Never a rollout.
* package-managed — /usr/bin, /usr/lib…, /opt/<vendor>: where a package manager or a
  fleet tool installs. Only here can a new binary on many hosts be a rollout.
"""

from __future__ import annotations

from enum import Enum


class Location(Enum):
    """The kind of place an executable runs from."""

    VOLATILE = "volatile or hidden"
    USER = "home directory"
    LOCAL = "local"
    PACKAGE = "package-managed"
    UNKNOWN = "unknown"


# How much a location alone adds to a rare binary's suspicion (docs/scoring.md).
SUSPICION = {
    Location.VOLATILE: 1.0,
    Location.USER: 0.4,
    Location.LOCAL: 0.25,
    Location.UNKNOWN: 0.25,
    Location.PACKAGE: 0.0,
}
_VOLATILE = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/", "/run/user/", "/dev/mqueue/")
_VOLATILE_EXACT = ("/dev/", "/proc/", "/memfd:")
_PACKAGE = (
    "/usr/bin/",
    "/usr/sbin/",
    "/bin/",
    "/sbin/",
    "/usr/lib/",
    "/usr/lib32/",
    "/usr/lib64/",
    "/usr/libexec/",
    "/lib/",
    "/lib64/",
    "/usr/share/",
    "/usr/games/",
    "/opt/",
    "/snap/",
    "/nix/store/",
)
_USER = ("/home/", "/root/")
# Dot-directories that toolchains install user binaries into: a user tool, not hidden.
_TOOL_DOTDIRS = frozenset(
    {".local", ".cargo", ".rustup", ".nvm", ".npm", ".pyenv", ".rbenv", ".sdkman", ".deno"}
    | {".bun", ".vscode-server", ".cursor-server", ".krew", ".dotnet", ".volta", ".asdf"}
)


def classify(path: str) -> Location:
    """The location class of an executable path ("" → unknown)."""
    if not path:
        return Location.UNKNOWN
    if path.endswith(" (deleted)") or path.startswith(_VOLATILE) or path.startswith("/memfd:"):
        return Location.VOLATILE
    if path.startswith(_VOLATILE_EXACT) and not path.startswith(("/dev/null",)):
        return Location.VOLATILE
    parts = path.split("/")[1:-1]
    user = path.startswith(_USER)
    start = 2 if path.startswith("/home/") else 1 if user else 0
    for part in parts[start:]:
        if part.startswith(".") and part not in (".", "..") and part not in _TOOL_DOTDIRS:
            return Location.VOLATILE
    if user:
        return Location.USER
    if path.startswith(_PACKAGE):
        return Location.PACKAGE
    return Location.LOCAL


def suspicion(path: str) -> float:
    """What the location alone adds to a rare binary's score weight, in [0, 1]."""
    return SUSPICION[classify(path)]


def package_managed(path: str) -> bool:
    """True where a package manager or fleet tool installs."""
    return classify(path) is Location.PACKAGE


# Shells proper: their own sockets are a reverse shell's signature (baseline/shells.py).
SHELL_NAMES = frozenset(
    ("sh", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh", "ash", "fish", "yash", "busybox")
)


def may_roll_out(name: str, path: str) -> bool:
    """Whether a rollout can explain this binary (the score's p): a package-managed path,
    and never a shell — no package makes bash hold a socket on one host after another,
    a worm or an operator's reverse shells do."""
    return package_managed(path) and name not in SHELL_NAMES
