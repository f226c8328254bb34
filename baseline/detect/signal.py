"""Signals: deterministic ids, MITRE mapping, and the self-explaining signal document."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from rarenet.baseline.detect.destination import destination_kind
from rarenet.baseline.detect.lineage import Ancestor
from rarenet.baseline.units import format_duration, format_time

RULE_ID = "rarenet-unusual-network-activity"
RULE_NAME = "Unusual Linux Network Activity"
SEVERITY = "low"
RISK_SCORE = 21
THREAT: list[dict[str, Any]] = [
    {
        "framework": "MITRE ATT&CK",
        "tactic": {"id": "TA0011", "name": "Command and Control"},
        "technique": [{"id": "T1071", "name": "Application Layer Protocol"}],
    },
    {
        "framework": "MITRE ATT&CK",
        "tactic": {"id": "TA0010", "name": "Exfiltration"},
        "technique": [{"id": "T1041", "name": "Exfiltration Over C2 Channel"}],
    },
    {"framework": "MITRE ATT&CK", "tactic": {"id": "TA0008", "name": "Lateral Movement"}},
    {"framework": "MITRE ATT&CK", "tactic": {"id": "TA0003", "name": "Persistence"}},
    {
        "framework": "MITRE ATT&CK",
        "tactic": {"id": "TA0005", "name": "Defense Evasion"},
        "technique": [{"id": "T1055", "name": "Process Injection"}],
    },
]
TRANSPORTS = {6: "tcp", 17: "udp"}


def signal_id(host: str, name: str, path: str, bucket: int, rule: str = RULE_ID) -> str:
    """hash(rule, host, name, path, bucket): overlapping look-backs give the same id."""
    text = "\x1f".join((rule, host, name, path, str(bucket)))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class Detail:
    """The first connection of a candidate in its bucket (from the observations)."""

    time: int
    host_uuid: str
    pid: int
    uid: int
    username: str
    cmdline: str
    cwd: str
    parent_pid: int
    parent_name: str
    family: int
    protocol: int
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    direction: str
    chain: tuple[Ancestor, ...] = ()  # parent first, at most 3 (detect.lineage)


def _parent(detail: Detail) -> dict[str, Any]:
    parent = detail.chain[0] if detail.chain else None
    return {
        "pid": detail.parent_pid,
        "name": detail.parent_name or (parent.name if parent else "") or None,
        "executable": parent.path or None if parent else None,
        "command_line": parent.cmdline or None if parent else None,
    }


def document(
    *,
    sid: str,
    host: str,
    name: str,
    path: str,
    bucket: int,
    span: int,
    score: float,
    detail: Detail | None,
    explanation: dict[str, Any],
    reason: str,
) -> dict[str, Any]:
    """The native signal document (ECS field names), explanation included."""
    process: dict[str, Any] = {"name": name, "executable": path or None}
    user: dict[str, Any] = {}
    network: dict[str, Any] = {}
    destination: dict[str, Any] = {}
    if detail is not None:
        process |= {
            "pid": detail.pid,
            "args": detail.cmdline.split(" ") if detail.cmdline else [],
            "command_line": detail.cmdline,
            "working_directory": detail.cwd or None,
            "parent": _parent(detail),
            "chain": [ancestor.as_ecs() for ancestor in detail.chain],
        }
        user = {"name": detail.username or None, "id": str(detail.uid) if detail.uid >= 0 else None}
        destination = {
            "ip": detail.remote_address,
            "port": detail.remote_port,
            "kind": destination_kind(detail.remote_address),
        }
        network = {
            "transport": TRANSPORTS.get(detail.protocol, str(detail.protocol)),
            "type": "ipv6" if detail.family == 10 else "ipv4",
            "direction": detail.direction,
        }
    return {
        "id": sid,
        "@timestamp": format_time(detail.time if detail else bucket),
        "event": {"kind": "signal", "category": ["network"], "type": ["connection"]},
        "rule": {"id": RULE_ID, "name": RULE_NAME},
        "severity": SEVERITY,
        "risk_score": RISK_SCORE,
        "score": score,
        "initial_score": score,
        "host": {"name": host, "id": detail.host_uuid if detail and detail.host_uuid else host},
        "process": process,
        "user": user,
        "destination": destination,
        "network": network,
        "threat": THREAT,
        "bucket": {"start": format_time(bucket), "span": format_duration(span)},
        "reason": reason,
        "explanation": explanation,
    }
