"""What kind of address a connection went to: the investigation guide's first question
("internal or external?"), answered on every signal.

Kinds: `loopback`; `link-local`; `private` (RFC 1918, shared address space 100.64/10,
IPv6 unique local fc00::/7); `multicast`; `unspecified` (0.0.0.0, ::: a listening or
unconnected socket); `external` (anything else — documentation ranges such as
203.0.113.0/24 included, which the simulator uses for the internet); `none` when there
is no IP address (a UNIX socket, or no connection detail left after retention).
"""

from __future__ import annotations

import ipaddress

_PRIVATE = tuple(
    ipaddress.ip_network(block)
    for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
KINDS = ("loopback", "link-local", "private", "multicast", "unspecified", "external", "none")


def destination_kind(address: str | None) -> str:
    """The kind of `address` (one of KINDS); IPv4-mapped IPv6 is judged as IPv4."""
    try:
        ip = ipaddress.ip_address((address or "").strip().split("%", 1)[0])
    except ValueError:
        return "none"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if any(ip in block for block in _PRIVATE if block.version == ip.version):
        return "private"
    return "external"
