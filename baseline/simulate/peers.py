"""Addresses the fleet talks to: documentation and private ranges only.

10.0.0.0/8 is the internal network, 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and
2001:db8::/32 stand for the internet (attacker C2 included, see catalogue.ATTACKER_IPS),
fd00:ac:: is the internal IPv6 network, and loopback rows test the ingest filters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rarenet.baseline.simulate.catalogue import ATTACKER_IPS

Pool = tuple[tuple[str, ...], tuple[str, ...]]  # (IPv4 addresses, IPv6 addresses)

STATIC_PEERS: dict[str, Pool] = {
    "fleet-server": (("10.0.0.5",), ()),
    "prometheus": (("10.0.0.20", "10.0.0.21"), ()),
    "dns": (("10.0.0.2", "10.0.0.3"), ()),
    "resolved-stub": (("127.0.0.53",), ()),
    "loopback": (("127.0.0.1",), ("::1",)),
    "internal-registry": (("10.0.0.30",), ()),
    "k8s-api": (("10.0.0.40",), ()),
    "gitlab": (("10.0.0.50",), ()),
    "ntp": (("203.0.113.123", "198.51.100.123", "192.0.2.123"), ("2001:db8:123::1",)),
    "mirror": (("198.51.100.80", "198.51.100.81"), ("2001:db8:80::80",)),
    "docker-repo": (("192.0.2.50",), ("2001:db8:50::50",)),
    "registry": (("192.0.2.50", "192.0.2.51"), ("2001:db8:50::51",)),
    "github": (("192.0.2.10", "192.0.2.11"), ("2001:db8:10::10",)),
    "goproxy": (("192.0.2.12",), ("2001:db8:12::12",)),
    "crates": (("192.0.2.70",), ("2001:db8:70::70",)),
    "terraform-registry": (("198.51.100.60",), ()),
    "pypi": (("192.0.2.30", "192.0.2.31"), ("2001:db8:30::30",)),
    "npm": (("192.0.2.40",), ("2001:db8:40::40",)),
    "maven": (("192.0.2.60",), ()),
    "letsencrypt": (("192.0.2.80",), ("2001:db8:80::443",)),
    "s3": (("203.0.113.201", "203.0.113.202"), ("2001:db8:201::1",)),
    "backup": (("203.0.113.200",), ()),
    "payments": (("198.51.100.30",), ("2001:db8:3000::30",)),
    "slack": (("198.51.100.140", "198.51.100.141"), ("2001:db8:140::1",)),
    "code-services": (("192.0.2.90", "192.0.2.91"), ("2001:db8:90::1",)),
    "acme-saas": (("198.51.100.150",), ("2001:db8:150::1",)),
    # --scenarios all: packages rolled out mid-run and new weekly jobs
    "teleport-proxy": (("10.0.0.60",), ()),
    "datadog": (("198.51.100.160", "198.51.100.161"), ()),
    "lvfs": (("192.0.2.100",), ("2001:db8:100::1",)),
    "vector-aggregator": (("10.0.0.70",), ()),
    "cisofy": (("198.51.100.170",), ()),
    "rkhunter-mirror": (("192.0.2.110",), ()),
    # --scenarios all: apps developers install (families.USER_APPS)
    "zoom-cloud": (("198.51.100.180", "198.51.100.181"), ()),
    "obsidian-sync": (("192.0.2.120",), ()),
    "jetbrains": (("198.51.100.190",), ()),
}

# Fleet peers: pool key → (host flavors whose addresses form it, "*" = every host;
# how many of them one host talks to; an address to use when the fleet has none).
FLEET_PEERS: dict[str, tuple[tuple[str, ...], int, str]] = {
    "fleet:db": (("db",), 2, "10.20.0.250"),
    "fleet:cache": (("cache",), 2, "10.60.0.250"),
    "fleet:queue": (("queue",), 2, "10.60.1.250"),
    "fleet:bastion": (("bastion",), 2, "10.50.0.250"),
    "fleet:web": (("web",), 8, "10.10.0.250"),
    "fleet:app": (("web", "k8s"), 12, "10.10.0.250"),
    "fleet:all": (("*",), 32, "10.10.0.250"),
}


def internet_pool() -> Pool:
    """Benign internet addresses: the three IPv4 documentation /24s (minus C2) and some IPv6."""
    v4 = tuple(
        f"{net}.{last}"
        for net in ("192.0.2", "198.51.100", "203.0.113")
        for last in range(1, 255)
        if f"{net}.{last}" not in ATTACKER_IPS
    )
    v6 = tuple(
        f"2001:db8:{block:x}::{last:x}" for block in range(0x100, 0x140) for last in (1, 0x1F)
    )
    return v4, v6


class FleetPeers:
    """The fleet hosts behind each `fleet:` pool; each host talks to a few of them."""

    def __init__(self, by_flavor: Mapping[str, Sequence[str]]) -> None:
        everyone = tuple(ip for ips in by_flavor.values() for ip in ips)
        self._members = {
            key: everyone
            if flavors == ("*",)
            else tuple(ip for flavor in flavors for ip in by_flavor.get(flavor, ()))
            for key, (flavors, _, _) in FLEET_PEERS.items()
        }

    def pool(self, key: str, own: str, index: int) -> Pool:
        """The peers host `index` (address `own`) uses: a fixed few, never itself."""
        members = self._members[key]
        _, fanout, fallback = FLEET_PEERS[key]
        first = index * 7919 % len(members) if members else 0
        window = [members[(first + k) % len(members)] for k in range(min(fanout + 1, len(members)))]
        others = tuple(dict.fromkeys(ip for ip in window if ip != own))[:fanout]
        return (others or (fallback,)), ()
