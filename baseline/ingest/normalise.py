"""One osquery row → one `Observation`, or the reason it is filtered or rejected.

Keeps inet sockets (family 2/10) owned by a process (pid > 0) with a remote peer;
drops excluded destinations (loopback, unspecified, configured CIDRs), processes and
users; records a direction. Values arrive as strings (osquery's `numerics: false`) or
numbers; anything else is a `RowError` that names the field.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping
from hashlib import blake2b
from typing import Any

import orjson

from rarenet.baseline.ingest.ancestry import ancestors_json
from rarenet.baseline.ingest.model import Observation

INET_FAMILIES = frozenset({2, 10})
# Always excluded, whatever the config says (DESIGN.md §5).
ALWAYS_EXCLUDED_NETWORKS = ("127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128")
MIN_TIME, MAX_TIME = 946684800, 4102444800  # 2000-01-01 … 2100-01-01
MAX_EVENT_SKEW = 86400  # an evented row's own time may precede its result by at most a day
TEXT_LIMITS = {"cmdline": 8192, "path": 4096, "cwd": 4096, "name": 256}
DEFAULT_TEXT_LIMIT = 1024

_DIGEST_SEED = b"rarenet-observation-v1"


class RowError(ValueError):
    """A row that cannot become an observation because a field is malformed."""


class Filtered(Exception):
    """A well-formed row that rarenet deliberately does not keep (reason in args)."""


def to_int(value: Any, field: str, low: int, high: int) -> int:
    """An integer field from an int or a numeric string, within [low, high]."""
    if type(value) is int:
        number = value
    elif type(value) is str:
        try:
            number = int(value)
        except ValueError:
            try:
                number = int(float(value))
            except (ValueError, OverflowError):
                raise RowError(f"{field} {value[:40]!r} is not an integer") from None
    elif type(value) is float and value.is_integer():
        number = int(value)
    else:
        raise RowError(f"{field} has type {type(value).__name__}, expected an integer")
    if not low <= number <= high:
        raise RowError(f"{field} {number} is out of range [{low}, {high}]")
    return number


def to_text(value: Any, field: str) -> str:
    """A text field from a string (or number), truncated to its limit."""
    if type(value) is str:
        text = value
    elif value is None:
        return ""
    elif type(value) in (int, float):
        text = str(value)
    else:
        raise RowError(f"{field} has type {type(value).__name__}, expected a string")
    limit = TEXT_LIMITS.get(field, DEFAULT_TEXT_LIMIT)
    return text if len(text) <= limit else text[:limit]


def _glob_regex(patterns: Iterable[str]) -> re.Pattern[str] | None:
    parts = [fnmatch.translate(pattern) for pattern in patterns if pattern]
    return re.compile("|".join(parts)) if parts else None


class Normaliser:
    """Turns rows into observations under one configuration's exclusions."""

    def __init__(
        self,
        exclude_destinations: Iterable[str] = (),
        exclude_processes: Iterable[str] = (),
        exclude_users: Iterable[str] = (),
    ):
        networks = []
        for cidr in (*ALWAYS_EXCLUDED_NETWORKS, *exclude_destinations):
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IP address or CIDR") from None
        self._networks = tuple(networks)
        self._process_regex = _glob_regex(exclude_processes)
        self._excluded_users = frozenset(exclude_users)
        self._destination_cache: dict[str, bool] = {}
        self._process_cache: dict[str, bool] = {}

    def destination_excluded(self, address: str) -> bool:
        """True for loopback/unspecified/configured destinations; RowError if not an IP."""
        cached = self._destination_cache.get(address)
        if cached is not None:
            return cached
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise RowError(f"remote_address {address[:60]!r} is not an IP address") from None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        excluded = ip.is_unspecified or any(ip in net for net in self._networks)
        if len(self._destination_cache) > 100_000:
            self._destination_cache.clear()
        self._destination_cache[address] = excluded
        return excluded

    def process_excluded(self, name: str) -> bool:
        """True when the process name matches an `exclude_processes` glob."""
        cached = self._process_cache.get(name)
        if cached is None:
            cached = bool(self._process_regex and self._process_regex.match(name))
            if len(self._process_cache) > 100_000:
                self._process_cache.clear()
            self._process_cache[name] = cached
        return cached

    def observe(
        self,
        row: Mapping[str, Any],
        time: int,
        host: str,
        host_uuid: str,
        query: str,
        listening: frozenset[tuple[int, int]] = frozenset(),
    ) -> Observation:
        """The observation for one row; raises Filtered or RowError."""
        try:
            return self._observe_fast(row, time, host, host_uuid, query, listening)
        except _NotFast:
            return self._observe_checked(row, time, host, host_uuid, query, listening)

    def _observe_fast(
        self,
        row: Mapping[str, Any],
        time: int,
        host: str,
        host_uuid: str,
        query: str,
        listening: frozenset[tuple[int, int]],
    ) -> Observation:
        """The common case of a complete pack-query row, with cheap checks only.

        Anything unusual raises _NotFast and goes through `_observe_checked`, which
        gives the same result for valid rows and precise errors for bad ones."""
        get = row.get
        raw_numbers: tuple[Any, ...] = (
            get("pid"),
            get("uid"),
            get("parent"),
            get("family"),
            get("protocol"),
            get("local_port"),
            get("remote_port"),
        )
        texts: tuple[Any, ...] = (
            get("name"),
            get("path"),
            get("username"),
            get("cmdline"),
            get("cwd"),
            get("parent_name"),
            get("local_address"),
            get("remote_address"),
            get("state"),
        )
        if "action" in row or not {type(v) for v in raw_numbers} <= _NUMBER_TYPES:
            raise _NotFast
        if {type(v) for v in texts} != _STR_TYPE:
            raise _NotFast
        name, path, username, cmdline, cwd, parent_name, local_address, remote_address, state = (
            texts
        )
        try:
            pid, uid, parent, family, protocol, local_port, remote_port = map(int, raw_numbers)
        except ValueError:
            raise _NotFast from None
        if (
            not 0 < pid <= 2**31
            or not 0 < remote_port <= 65535
            or not 0 <= local_port <= 65535
            or family not in INET_FAMILIES
            or not 0 <= protocol <= 255
            or not -1 <= uid <= 2**32
            or not -1 <= parent <= 2**31
            or not name
            or len(cmdline) > 8192
            or len(path) > 4096
            or len(cwd) > 4096
            or len(name) + len(username) + len(parent_name) > 256
            or len(local_address) + len(remote_address) + len(state) > 1024
        ):
            raise _NotFast
        excluded = self._destination_cache.get(remote_address)
        if excluded is None:
            excluded = self.destination_excluded(remote_address)
        if excluded:
            raise Filtered("excluded destination")
        if self.process_excluded(name):
            raise Filtered("excluded process")
        if username and username in self._excluded_users:
            raise Filtered("excluded user")
        direction = get("direction")
        if type(direction) is not str or direction not in _DIRECTIONS:
            direction = "inbound" if (pid, local_port) in listening else "outbound"
        values = (
            time,
            host,
            host_uuid,
            name,
            path,
            pid,
            uid,
            username,
            cmdline,
            cwd,
            parent,
            parent_name,
            family,
            protocol,
            local_address,
            local_port,
            remote_address,
            remote_port,
            state,
            direction,
            query,
        )
        ancestors = ancestors_json(row, to_int, to_text)
        return _new_observation(Observation, (*values, observation_digest(values), ancestors))

    def _observe_checked(
        self,
        row: Mapping[str, Any],
        time: int,
        host: str,
        host_uuid: str,
        query: str,
        listening: frozenset[tuple[int, int]],
    ) -> Observation:
        """Every field validated, with defaults for optional columns."""
        get = row.get
        if "time" in row and "action" in row:  # socket_events: the event's own time
            event_time = to_int(get("time"), "time", MIN_TIME, MAX_TIME)
            if abs(event_time - time) > MAX_EVENT_SKEW:
                raise RowError(
                    f"time {event_time} is more than a day from the result's unixTime {time}"
                )
            time = event_time
            action = get("action")
            if action not in ("connect", "accept"):
                raise Filtered("socket event without a peer")
            event_direction = "inbound" if action == "accept" else "outbound"
        else:
            event_direction = ""
        pid = to_int(get("pid", -1), "pid", -(2**31), 2**31)
        if pid <= 0:
            raise Filtered("no owning process")
        remote_address = to_text(get("remote_address"), "remote_address")
        remote_port = to_int(get("remote_port", 0), "remote_port", 0, 65535)
        if not remote_address or remote_port == 0:
            raise Filtered("no remote peer")
        family_value = get("family")
        if family_value is None or family_value == "":
            family = 10 if ":" in remote_address else 2
        else:
            family = to_int(family_value, "family", 0, 2**16)
        if family not in INET_FAMILIES:
            raise Filtered("not an inet socket")
        if self.destination_excluded(remote_address):
            raise Filtered("excluded destination")
        path = to_text(get("path"), "path")
        name = to_text(get("name"), "name") or path.rsplit("/", 1)[-1]
        if not name:
            raise Filtered("no process name or path")
        if self.process_excluded(name):
            raise Filtered("excluded process")
        username = to_text(get("username"), "username")
        if username and username in self._excluded_users:
            raise Filtered("excluded user")
        local_port = to_int(get("local_port", 0), "local_port", 0, 65535)
        direction = get("direction")
        if type(direction) is not str or direction not in _DIRECTIONS:
            if event_direction:
                direction = event_direction
            elif (pid, local_port) in listening:
                direction = "inbound"
            else:
                direction = "outbound"
        values = (
            time,
            host,
            host_uuid,
            name,
            path,
            pid,
            to_int(get("uid", -1), "uid", -1, 2**32),
            username,
            to_text(get("cmdline"), "cmdline"),
            to_text(get("cwd"), "cwd"),
            to_int(get("parent", -1), "parent", -1, 2**31),
            to_text(get("parent_name"), "parent_name"),
            family,
            to_int(get("protocol", 0), "protocol", 0, 255),
            to_text(get("local_address"), "local_address"),
            local_port,
            remote_address,
            remote_port,
            to_text(get("state"), "state"),
            direction,
            query,
        )
        ancestors = ancestors_json(row, to_int, to_text)
        return _new_observation(Observation, (*values, observation_digest(values), ancestors))


class _NotFast(Exception):
    """The fast path declines a row; the checked path takes it."""


_new_observation = tuple.__new__
_NUMBER_TYPES = frozenset({str, int})
_STR_TYPE = {str}
_DIRECTIONS = frozenset({"inbound", "outbound"})


def observation_digest(values: tuple[Any, ...]) -> int:
    """A signed 64-bit hash of an observation's content (its idempotency key with time)."""
    digest = blake2b(orjson.dumps(values), digest_size=8, key=_DIGEST_SEED).digest()
    return int.from_bytes(digest, "big", signed=True)
