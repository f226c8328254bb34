"""The field definitions an `ecs` signal document may use (ECS 8.11, Kibana's alerts as
data, rarenet's custom namespace) and `check_ecs`, which every ECS document a test makes
must pass."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from rarenet.baseline.deliver.formats import ECS_VERSION

# The field definitions the `ecs` document relies on: name → Elasticsearch type.
# ECS 8.11 (https://www.elastic.co/guide/en/ecs/8.11/ecs-field-reference.html):
ECS_FIELDS = {
    "@timestamp": "date",
    "event.url": "keyword",
    "ecs.version": "keyword",
    "message": "match_only_text",
    "tags": "keyword",
    "event.kind": "keyword",
    "event.category": "keyword",
    "event.type": "keyword",
    "event.id": "keyword",
    "event.created": "date",
    "event.start": "date",
    "event.ingested": "date",
    "event.module": "keyword",
    "event.dataset": "keyword",
    "event.risk_score": "float",
    "event.reason": "keyword",
    "rule.id": "keyword",
    "rule.uuid": "keyword",
    "rule.name": "keyword",
    "rule.ruleset": "keyword",
    "rule.description": "keyword",
    "threat.framework": "keyword",
    "threat.tactic.id": "keyword",
    "threat.tactic.name": "keyword",
    "threat.tactic.reference": "keyword",
    "threat.technique.id": "keyword",
    "threat.technique.name": "keyword",
    "threat.technique.reference": "keyword",
    "host.name": "keyword",
    "host.hostname": "keyword",
    "host.id": "keyword",
    "process.name": "keyword",
    "process.executable": "keyword",
    "process.pid": "long",
    "process.args": "keyword",
    "process.args_count": "long",
    "process.command_line": "wildcard",
    "process.working_directory": "keyword",
    "process.parent.pid": "long",
    "process.parent.name": "keyword",
    "process.parent.executable": "keyword",
    "process.parent.command_line": "wildcard",
    "user.name": "keyword",
    "user.id": "keyword",
    "destination.ip": "ip",
    "destination.address": "keyword",
    "destination.port": "long",
    "network.transport": "keyword",
    "network.type": "keyword",
    "network.direction": "keyword",
}
# Kibana's alerts-as-data fields (`kibana.alert.*`, as detection alerts carry them):
KIBANA_FIELDS = {
    "kibana.alert.uuid": "keyword",
    "kibana.alert.status": "keyword",
    "kibana.alert.workflow_status": "keyword",
    "kibana.alert.severity": "keyword",
    "kibana.alert.risk_score": "float",
    "kibana.alert.reason": "keyword",
    "kibana.alert.original_time": "date",
    "kibana.alert.start": "date",
    "kibana.alert.rule.name": "keyword",
    "kibana.alert.rule.uuid": "keyword",
    "kibana.alert.rule.rule_id": "keyword",
    "kibana.alert.rule.severity": "keyword",
    "kibana.alert.rule.risk_score": "float",
    "kibana.alert.rule.description": "keyword",
    "kibana.alert.rule.threat.framework": "keyword",
    "kibana.alert.rule.threat.tactic.id": "keyword",
    "kibana.alert.rule.threat.tactic.name": "keyword",
    "kibana.alert.rule.threat.tactic.reference": "keyword",
    "kibana.alert.rule.threat.technique.id": "keyword",
    "kibana.alert.rule.threat.technique.name": "keyword",
    "kibana.alert.rule.threat.technique.reference": "keyword",
}
# rarenet's own fields, in the custom namespace ECS allows (no ECS definition exists):
CUSTOM_FIELDS = {
    "rarenet.score": "float",
    "rarenet.initial_score": "float",
    "rarenet.bucket.start": "date",
    "rarenet.bucket.span": "keyword",
    "rarenet.explanation": "flattened",
    "rarenet.group": "keyword",
    "rarenet.kind": "keyword",
    "rarenet.destination_kind": "keyword",
    "rarenet.arrival.seen": "date",
    "rarenet.arrival.lag_seconds": "long",
    "rarenet.process_chain.pid": "long",
    "rarenet.process_chain.name": "keyword",
    "rarenet.process_chain.executable": "keyword",
    "rarenet.process_chain.command_line": "wildcard",
    "rarenet.links.signal": "keyword",
    "rarenet.links.fleet_host": "keyword",
}
FIELDS = ECS_FIELDS | KIBANA_FIELDS | CUSTOM_FIELDS
# ECS allowed values for the categorization fields we set.
ALLOWED = {
    "event.kind": {
        "alert",
        "asset",
        "enrichment",
        "event",
        "metric",
        "state",
        "pipeline_error",
        "signal",
    },
    "event.category": {"network"},
    "event.type": {"access", "allowed", "connection", "denied", "end", "info", "protocol", "start"},
    "network.direction": {
        "ingress",
        "egress",
        "inbound",
        "outbound",
        "internal",
        "external",
        "unknown",
    },
}


def leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, value) of every leaf; lists are walked (ECS fields may be arrays);
    a `flattened` field is one leaf."""
    if FIELDS.get(prefix) == "flattened":
        return [(prefix, value)]
    if isinstance(value, dict):
        return [
            pair
            for key, item in value.items()
            for pair in leaves(item, f"{prefix}.{key}" if prefix else key)
        ]
    if isinstance(value, list):
        return [pair for item in value for pair in leaves(item, prefix)]
    return [(prefix, value)]


def type_ok(kind: str, value: Any) -> bool:
    if kind in ("keyword", "wildcard", "match_only_text"):
        return isinstance(value, str)
    if kind == "long":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "flattened":
        return isinstance(value, dict)
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return True
    if kind == "date":
        return (
            isinstance(value, str)
            and datetime.fromisoformat(value.replace("Z", "+00:00")) is not None
        )
    raise AssertionError(f"unknown type {kind}")


def check_ecs(doc: dict[str, Any]) -> None:
    for name, value in leaves(doc):
        assert name in FIELDS, f"{name} has no field definition (ECS, Kibana or rarenet.*)"
        assert type_ok(FIELDS[name], value), f"{name}: {value!r} is not a valid {FIELDS[name]}"
        if name in ALLOWED:
            assert value in ALLOWED[name], f"{name}: {value!r} is not an allowed value"
    assert doc["ecs"]["version"] == ECS_VERSION
