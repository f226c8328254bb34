"""The hand-built fleet many tests share: 24 web servers and 3 database servers over 4
days of routine traffic, then a beacon dropped in /tmp, a bash reverse shell, a curl
masquerade in a hidden directory and an agent rollout to ten web servers, 3 hours
before the end of the data. `build_hand_fleet` ingests it into a store (conftest's
`hand_fleet_db` fixture builds it once per test session)."""

from __future__ import annotations

import random
from pathlib import Path

from support.osquery_lines import T0, event, line, socket_line, socket_row
from support.stores import store_of_lines

SPAN = 900
DAYS = 4
START = (T0 // 86400) * 86400
END = START + DAYS * 86400
WEB = [f"web-{i:02d}" for i in range(24)]
DB = [f"db-{i:02d}" for i in range(3)]
HOSTS = WEB + DB


def routine_lines() -> list[bytes]:
    """4 days: nginx inbound on web servers every bucket, bash health checks on db
    servers every bucket, curl hourly everywhere, apt daily everywhere."""
    rnd = random.Random(7)
    out = []
    for bucket in range(START, END, SPAN):
        for host in HOSTS:
            t = bucket + rnd.randrange(SPAN)
            if host in WEB:
                row = socket_row(
                    pid=800,
                    name="nginx",
                    path="/usr/sbin/nginx",
                    remote_address=f"198.51.100.{rnd.randrange(250)}",
                    remote_port=50000 + rnd.randrange(9999),
                    local_port=443,
                    direction="inbound",
                    username="www-data",
                )
            else:
                row = socket_row(
                    pid=900,
                    name="bash",
                    path="/usr/bin/bash",
                    cmdline="bash /usr/local/bin/health",
                    remote_address="10.0.0.9",
                    remote_port=5432 + rnd.randrange(2),
                    username="postgres",
                )
            out.append(line(event(row, host=host, unix=t)))
            if (bucket // SPAN) % 4 == HOSTS.index(host) % 4:
                out.append(
                    socket_line(
                        host,
                        t + 1,
                        pid=rnd.randrange(2000, 9000),
                        name="curl",
                        path="/usr/bin/curl",
                        remote_address="203.0.113.80",
                        remote_port=443,
                    )
                )
            if (bucket - START) % 86400 == 3 * 3600:
                out.append(
                    socket_line(
                        host,
                        t + 2,
                        pid=rnd.randrange(2000, 9000),
                        name="http",
                        path="/usr/lib/apt/methods/http",
                        remote_address="203.0.113.90",
                        remote_port=80,
                        username="_apt",
                    )
                )
    return out


ATTACK_AT = END - 3 * 3600  # 3 hours before the end of the data
BEACON = socket_line(
    "web-05",
    ATTACK_AT + 10,
    pid=6666,
    name="beacon",
    path="/tmp/.x/beacon",
    remote_address="203.0.113.99",
    remote_port=8443,
    cmdline="/tmp/.x/beacon",
    username="www-data",
)
BASH_SHELL = socket_line(
    "web-07",
    ATTACK_AT + 20,
    pid=7777,
    name="bash",
    path="/usr/bin/bash",
    cmdline="bash -i",
    remote_port=4444,
)
MASQUERADE = socket_line(
    "web-09",
    ATTACK_AT + 30,
    pid=8888,
    name="curl",
    path="/var/tmp/.cache/curl",
    remote_address="198.51.100.5",
    remote_port=80,
)
ROLLOUT = [
    socket_line(
        host,
        ATTACK_AT + 40 + i,
        pid=5000,
        name="acme-agent",
        path="/opt/acme/bin/acme-agent",
        remote_address="203.0.113.200",
        remote_port=443,
        username="root",
    )
    for i, host in enumerate(WEB[10:20])
]
RUN_AT = ATTACK_AT - ATTACK_AT % SPAN + 2 * SPAN  # the first run whose window holds the attacks


def build_hand_fleet(directory: Path) -> Path:
    """The fleet's store (routine and attacks ingested, nothing detected yet)."""
    return store_of_lines(directory, [*routine_lines(), BEACON, BASH_SHELL, MASQUERADE, *ROLLOUT])
