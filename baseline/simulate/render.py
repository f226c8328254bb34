"""Rows → lines: osquery result objects (event or batch) and Fleet webhook bodies.

Rows arrive as JSON bytes; result objects are assembled from per-host pre-serialised
headers, so no line goes through a generic JSON encoder.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from rarenet.baseline.simulate.fleet import Host
from rarenet.baseline.simulate.writer import Writable
from rarenet.baseline.units import format_time

QUERY_NAME = "pack/unusual-network-activity/rarenet_open_sockets"
FLEET_WINDOW = 60  # seconds of results per Fleet webhook body
FLEET_MAX_DETAILS = 500
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_COLUMNS = b'"columns":'
_EVENT_TAIL = b',"action":"added"}'
_EVENT_TAIL_NL = _EVENT_TAIL + b"\n"
_BATCH_HEAD = b'"diffResults":{"added":['
_BATCH_TAIL = b'],"removed":[]}}'
_BATCH_TAIL_NL = _BATCH_TAIL + b"\n"


def calendar_time(unix: int) -> str:
    """osquery's calendarTime: `%a %b %e %H:%M:%S %Y UTC` (day padded with a space)."""
    tm = time.gmtime(unix)
    return (
        f"{_DAYS[tm.tm_wday]} {_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {tm.tm_year} UTC"
    )


def _json(value: object) -> bytes:
    return orjson.dumps(value).replace(b"%", b"%%")


def _header(host: Host) -> bytes:
    """`{"name":…,"hostIdentifier":…,"calendarTime":…,…,"decorations":{…},` as a % template."""
    who = "hostname" if host.legacy else "hostIdentifier"
    decorations = {"host_uuid": host.uuid, "hostname": host.name}
    return (
        b'{"name":' + _json(QUERY_NAME) + b"," + _json(who) + b":" + _json(host.name)
        + b',"calendarTime":"%s%02d%s","unixTime":%d,"epoch":0,"counter":%d,"numerics":false,'
        + b'"decorations":' + _json(decorations) + b","
    )  # fmt: skip


class ResultBuilder:
    """Builds osquery result objects for one host's rows of one poll, counting polls."""

    def __init__(self, hosts: Sequence[Host]) -> None:
        self.counters = [0] * len(hosts)
        self.batch = [host.batch for host in hosts]
        self.headers = [_header(host) for host in hosts]
        self._minute = -1
        self._calendar = (b"", b"")

    def head(self, index: int, unix: int) -> bytes:
        """The object up to `"decorations":{…},` for the host's next poll (counter + 1)."""
        counter = self.counters[index]
        self.counters[index] = counter + 1
        minute = unix // 60
        if minute != self._minute:  # calendarTime in two parts around the seconds
            text = calendar_time(minute * 60).encode()
            self._minute, self._calendar = minute, (text[:-11], text[-9:])
        before, after = self._calendar
        return self.headers[index] % (before, unix % 60, after, unix, counter)

    def results(self, index: int, unix: int, rows: Sequence[bytes]) -> list[bytes]:
        """Event objects (one per row), or one batch object for a batch-format host."""
        head = self.head(index, unix)
        if self.batch[index]:
            return [head + _BATCH_HEAD + b",".join(rows) + _BATCH_TAIL]
        head += _COLUMNS
        return [head + row + _EVENT_TAIL for row in rows]


class OsquerySink:
    """The osquery filesystem logger's results log: one result object per line."""

    def __init__(self, out: Writable, builder: ResultBuilder) -> None:
        self.out = out
        self.builder = builder
        self.lines = 0
        self._buffer: list[bytes] = []  # pieces of lines, joined on flush

    def poll(self, index: int, unix: int, rows: Sequence[bytes]) -> None:
        """Log one host's rows of one poll."""
        head = self.builder.head(index, unix)
        if self.builder.batch[index]:
            self._buffer += (head, _BATCH_HEAD, b",".join(rows), _BATCH_TAIL_NL)
            self.lines += 1
            return
        head += _COLUMNS
        buffer = self._buffer
        for row in rows:
            buffer += (head, row, _EVENT_TAIL_NL)
        self.lines += len(rows)

    def flush(self) -> None:
        """Write what is buffered."""
        if self._buffer:
            self.out.write(b"".join(self._buffer))
            self._buffer.clear()

    def close(self) -> None:
        """Write everything still pending."""
        self.flush()


class FleetSink(OsquerySink):
    """Fleet's webhook log destination: `{"timestamp", "details": [...]}` per minute."""

    def __init__(self, out: Writable, builder: ResultBuilder) -> None:
        super().__init__(out, builder)
        self._window = -1
        self._last = 0
        self._details: list[bytes] = []

    def poll(self, index: int, unix: int, rows: Sequence[bytes]) -> None:
        window = unix // FLEET_WINDOW
        if window != self._window:
            self._post()
            self._window = window
        self._details += self.builder.results(index, unix, rows)
        self._last = unix
        while len(self._details) >= FLEET_MAX_DETAILS:
            self._post()

    def _post(self) -> None:
        """One webhook body; its timestamp is when Fleet would send it (≥ its results)."""
        details = self._details[:FLEET_MAX_DETAILS]
        if not details:
            return
        del self._details[:FLEET_MAX_DETAILS]
        stamp = format_time(self._last).encode()
        self._buffer.append(
            b'{"timestamp":"' + stamp + b'","details":[' + b",".join(details) + b"]}\n"
        )
        self.lines += 1

    def close(self) -> None:
        while self._details:
            self._post()
        self.flush()
