"""A small fleet for late-data tests: 3 days of 6 web servers and 4 laptops, a gawk
reverse shell on laptop-02 at ATTACK, and the laptop offline (its results buffered)
from two hours before it to three hours after (tests/detect/test_late.py, test_late_nats.py)."""

from __future__ import annotations

import random

from support.osquery_lines import T0, connection_line

SPAN, HOUR, DAY = 900, 3600, 86400
START = (T0 // DAY) * DAY
DAYS = 3
WEB = [f"web-{i:02d}" for i in range(6)]
LAPTOPS = [f"laptop-{i:02d}" for i in range(4)]
HOSTS = WEB + LAPTOPS
ATTACK = START + 2 * DAY + 10 * HOUR  # a gawk reverse shell on laptop-02
VICTIM = "laptop-02"
GAWK = "/usr/bin/gawk"
OFFLINE = (ATTACK - 2 * HOUR, ATTACK + 3 * HOUR)  # the laptop buffers its results
END = START + DAYS * DAY
WEBSITE = "198.51.100.4"
FIREFOX = "/usr/lib/firefox/firefox"


def _row(host: str, t: int, name: str, path: str, remote: str, port: int) -> bytes:
    return connection_line(host, t, name, path, remote, port)


Line = tuple[int, str, bytes]  # data time, host, the result line


def fleet() -> list[Line]:
    """(data time, line) of 3 days: nginx on web servers every bucket, a browser and
    curl on laptops, and at ATTACK a gawk reverse shell on laptop-02 for 45 minutes."""
    rnd = random.Random(29)
    out = []
    for bucket in range(START, END, SPAN):
        for i, host in enumerate(HOSTS):
            t = bucket + rnd.randrange(SPAN - 5)
            if host in WEB:
                out.append((t, host, _row(host, t, "nginx", "/usr/sbin/nginx", WEBSITE, 443)))
            else:
                out.append((t, host, _row(host, t, "firefox", FIREFOX, WEBSITE, 443)))
            if (bucket // SPAN) % 4 == i % 4:
                curl = _row(host, t + 1, "curl", "/usr/bin/curl", "203.0.113.81", 443)
                out.append((t + 1, host, curl))
    for t in range(ATTACK + 7, ATTACK + 3 * SPAN, SPAN):
        out.append((t, VICTIM, _row(VICTIM, t, "gawk", GAWK, "203.0.113.66", 4444)))
    return sorted(out)


def arrival(t: int, host: str) -> int:
    """When a line reaches rarenet: at once, or when the offline laptop reconnects."""
    if host == VICTIM and OFFLINE[0] <= t < OFFLINE[1]:
        return OFFLINE[1] + 5
    return t
