"""The fixed example signal behind the golden payloads in docs/signals.md.

`python -m rarenet.baseline.deliver.examples docs/signals.md` rewrites the blocks between
`<!-- golden:FORMAT -->` and `<!-- /golden -->`; a test fails when they drift.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import orjson

from rarenet.baseline.deliver.formats import render
from rarenet.baseline.deliver.links import Links
from rarenet.baseline.deliver.outbox import SignalRecord
from rarenet.baseline.deliver.signing import sign
from rarenet.baseline.detect.late import Arrival
from rarenet.baseline.detect.lineage import Ancestor
from rarenet.baseline.detect.signal import Detail, document, signal_id

EXAMPLE_SECRET = "example-secret"
_BUCKET = 1768212000  # 2026-01-12T10:00:00Z


def example_document(**overrides: Any) -> dict[str, Any]:
    """A native signal document as the rule writes it: perl calling out on port 4444."""
    detail = Detail(
        time=_BUCKET + 192,
        host_uuid="4c4c4544-0042-3510-8057-b4c04f4e3732",
        pid=31337,
        uid=33,
        username="www-data",
        cmdline=overrides.pop("cmdline", "perl -e use Socket;$i=203.0.113.9;$p=4444"),
        cwd="/var/www",
        parent_pid=1204,
        parent_name="apache2",
        family=2,
        protocol=6,
        local_address="10.0.3.17",
        local_port=51544,
        remote_address=overrides.pop("remote_address", "203.0.113.9"),
        remote_port=4444,
        direction="outbound",
        chain=(
            Ancestor(1204, "apache2", "/usr/sbin/apache2", "/usr/sbin/apache2 -k start"),
            Ancestor(1201, "apache2", "/usr/sbin/apache2", "/usr/sbin/apache2 -k start"),
            Ancestor(1, "systemd", "/usr/lib/systemd/systemd", "/sbin/init"),
        ),
    )
    host = overrides.pop("host", "web-017")
    name = overrides.pop("name", "perl")
    path = overrides.pop("path", "/usr/bin/perl")
    explanation: dict[str, Any] = {
        "decided_by": "path",
        "fleet": {
            "host_buckets": 40_320,
            "hosts": 30,
            "history_buckets": 1_344,
            "warmup_buckets": 20,
            "baseline_since": "2025-12-29T10:00:00Z",
            "baseline_age": "14.0d",
            "day_covered": 1.0,
        },
        "name": {
            "value": name,
            "host_buckets": 0,
            "hosts": 0,
            "hosts_at_least": False,
            "first_seen": None,
            "rarity": 1.0,
        },
        "path": {
            "value": path,
            "host_buckets": 0,
            "hosts": 0,
            "hosts_at_least": False,
            "first_seen": None,
            "last_seen": None,
            "rarity": 1.0,
        },
        "host": {"buckets_with_binary": 0, "maturity": 1.0, "familiarity": 0.0, "novelty": 1.0},
        "location": {"class": "package-managed", "weight": 0.8},
        "rollout": {
            "hosts_last_day": 1,
            "hosts_last_day_at_least": False,
            "hosts_in_bucket": 1,
            "established": 0.0,
            "package_managed": True,
            "may_roll_out": True,
            "discount": 0.0,
        },
        "parts": {"rarity": 1.0, "after_habit_and_location": 0.8, "host_novelty": 0.0},
        "history": {
            "days_on_host_before": 0,
            "days_at_least": False,
            "first_used_on_host": None,
        },
        "destination": {
            "address": "203.0.113.9",
            "port": 4444,
            "kind": "external",
            "other_hosts_before": 0,
            "other_hosts_at_least": False,
            "this_host_before": False,
            "binary_elsewhere_before": 0,
            "binary_elsewhere_at_least": False,
            "familiar": False,
        },
        "user": {"name": "www-data", "ran_it_before": False, "usual": []},
        "peer_routine": None,
        "schedule": None,
        "newly_installed": False,
        "score": 80.0,
        "score_without_rollout": 80.0,
    }
    reason = overrides.pop(
        "reason", f"{path} on {host}: never seen in 40,320 fleet host-buckets over 14.0d"
    )
    sid = signal_id(host, name, path, _BUCKET)
    explanation["group"] = {"id": sid, "hosts": []}
    doc = document(
        sid=sid,
        host=host,
        name=name,
        path=path,
        bucket=_BUCKET,
        span=900,
        score=80.0,
        detail=detail,
        explanation=explanation,
        reason=reason,
    )
    # scored by the run right after its bucket (at its end): on time
    arrival = Arrival.of(_BUCKET, 900, _BUCKET + 900).as_json()
    return doc | {"group": sid, "kind": "host", "arrival": arrival}


def example_record(**overrides: Any) -> SignalRecord:
    """The example as the outbox loads it (created 3 minutes after its bucket)."""
    doc = example_document(**overrides)
    return SignalRecord(
        id=doc["id"],
        host=doc["host"]["name"],
        name=doc["process"]["name"],
        path=doc["process"]["executable"] or "",
        bucket=_BUCKET,
        score=doc["score"],
        initial_score=doc["initial_score"],
        created_at=float(_BUCKET + 900 + 180),
        document=doc,
    )


EXAMPLE_LINKS = Links("https://rarenet.example.com", "https://fleet.example.com")


def golden(fmt: str) -> str:
    """The example body in `fmt`, pretty-printed for the docs (the wire form is compact),
    with `[server] public_url` and `fleet_url` set."""
    body = render(fmt, example_record(), EXAMPLE_LINKS)
    return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()


def golden_signature() -> str:
    """The signature header of the compact `json` example body under EXAMPLE_SECRET."""
    return sign(EXAMPLE_SECRET, render("json", example_record(), EXAMPLE_LINKS))


_BLOCK = re.compile(r"(<!-- golden:(\w+) -->\n)(.*?)(<!-- /golden -->)", re.S)


def rewrite(text: str) -> str:
    """`text` with every golden block regenerated."""

    def block(match: re.Match[str]) -> str:
        key = match.group(2)
        content = golden_signature() if key == "signature" else golden(key)
        fence = "text" if key == "signature" else "json"
        return f"{match.group(1)}```{fence}\n{content}\n```\n{match.group(4)}"

    return _BLOCK.sub(block, text)


def main(argv: list[str]) -> int:
    """Rewrite the golden blocks of the given markdown files in place."""
    for name in argv:
        path = Path(name)
        path.write_text(rewrite(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
