"""Roles and what each may do. Viewers read; analysts also acknowledge and redeliver;
admins also manage exceptions, users and tokens."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("viewer", "analyst", "admin")

# action -> the lowest role allowed to do it
REQUIRED_ROLE: dict[str, str] = {
    "read": "viewer",
    "acknowledge": "analyst",
    "redeliver": "analyst",
    "sign_out": "viewer",
    "add_exception": "admin",
    "remove_exception": "admin",
    "read_audit": "admin",
    "manage_users": "admin",
}


def role_allows(role: str, action: str) -> bool:
    """True when `role` may do `action` (an unknown role or action may do nothing)."""
    needed = REQUIRED_ROLE.get(action)
    if needed is None or role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class Principal:
    """Who made a request: a named user (or `anonymous` on a loopback server with no
    users yet), how they proved it (`session`, `token`, `proxy`, `open`) and from where."""

    name: str
    role: str
    via: str
    address: str

    @property
    def named(self) -> bool:
        return self.via != "open"

    def can(self, action: str) -> bool:
        """True when this principal may do `action`; only named users change state."""
        if action not in ("read", "sign_out") and not self.named:
            return False
        return role_allows(self.role, action)
