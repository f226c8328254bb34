"""The API's OpenAPI 3.0 document (served at `GET /openapi.json`, fuzzed by the tests)."""

from __future__ import annotations

from typing import Any

from rarenet.baseline import __version__


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_INGEST_RESULT = {
    "type": "object",
    "required": ["accepted", "duplicates", "rejected", "errors"],
    "properties": {
        "accepted": {"type": "integer", "description": "observations newly stored"},
        "duplicates": {"type": "integer", "description": "observations already stored"},
        "rejected": {"type": "integer", "description": "lines or items rejected"},
        "quarantined": {
            "type": "integer",
            "description": "of the rejected, how many were kept in quarantine (the rest are "
            "counted: at most 1000 per body and 10,000 per source within retention)",
        },
        "filtered": {"type": "integer", "description": "rows deliberately not kept"},
        "skipped": {"type": "integer", "description": "rows of other queries, removed rows"},
        "errors": {
            "type": "array",
            "description": "the first reasons, in order (line of the body, why)",
            "items": {
                "type": "object",
                "properties": {"line": {"type": "integer"}, "reason": {"type": "string"}},
            },
        },
    },
}
_TOKEN_QUERY = {
    "name": "token",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "The token, for senders that cannot set headers (Fleet).",
}


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    reasons = {
        304: "Not modified (ETag matched)",
        400: "Malformed request",
        401: "Missing or wrong token",
        413: "Body over [ingest] max_body",
        415: "Unsupported Content-Encoding or Content-Type",
        503: "Shutting down or the store failed",
    }
    responses: dict[str, Any] = {"200": ok}
    for code in codes:
        entry: dict[str, Any] = {"description": reasons[code]}
        if code != 304:
            entry["content"] = _json(_ERROR)
        responses[str(code)] = entry
    return responses


def openapi_document() -> dict[str, Any]:
    """The document; every path and response the server implements."""
    body_schema = {"type": "string", "format": "binary"}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "rarenet",
            "version": __version__,
            "description": "Ingest osquery results, serve baseline snapshots, signals, metrics.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "query": {"type": "apiKey", "in": "query", "name": "token"},
            }
        },
        "paths": {
            "/v1/ingest": {
                "post": {
                    "summary": "Ingest osquery results (NDJSON, JSON array or Fleet body; gzip ok)",
                    "description": "Credential: an [ingest] tokens secret (it opens nothing else).",
                    "security": [{"bearer": []}, {"query": []}],
                    "parameters": [_TOKEN_QUERY],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {}},
                            "application/x-ndjson": {"schema": body_schema},
                            "application/octet-stream": {"schema": body_schema},
                        },
                    },
                    "responses": _responses(
                        {"description": "Durably stored", "content": _json(_INGEST_RESULT)},
                        400,
                        401,
                        413,
                        415,
                        503,
                    ),
                }
            },
            "/v1/snapshot": {
                "get": {
                    "summary": "The extension's baseline snapshot (docs/snapshot.md)",
                    "description": "Credential: a [server] snapshot_tokens secret (none set: the ingest tokens).",
                    "security": [{"bearer": []}, {"query": []}],
                    "parameters": [
                        {
                            "name": "host",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 255},
                        },
                        {
                            "name": "If-None-Match",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        _TOKEN_QUERY,
                    ],
                    "responses": _responses(
                        {
                            "description": "The snapshot; ETag header",
                            "content": _json({"type": "object"}),
                        },
                        304,
                        400,
                        401,
                    ),
                }
            },
            "/v1/signals": {
                "get": {
                    "summary": "Recent signals, newest first",
                    "description": "Credential: a person — a personal API token (rarenet tokens add) or a console session; never the ingest or snapshot token.",
                    "security": [{"bearer": []}, {"query": []}],
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                        {
                            "name": "since",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "unix seconds or ISO 8601",
                        },
                        {
                            "name": "state",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        _TOKEN_QUERY,
                    ],
                    "responses": _responses(
                        {
                            "description": "Signals",
                            "content": _json(
                                {
                                    "type": "object",
                                    "required": ["signals"],
                                    "properties": {
                                        "signals": {"type": "array", "items": {"type": "object"}}
                                    },
                                }
                            ),
                        },
                        400,
                        401,
                    ),
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness (no token needed)",
                    "responses": _responses(
                        {"description": "Alive", "content": _json({"type": "object"})}, 503
                    ),
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus text exposition",
                    "description": "Credential: a [server] metrics_tokens secret.",
                    "security": [{"bearer": []}, {"query": []}],
                    "parameters": [_TOKEN_QUERY],
                    "responses": _responses(
                        {
                            "description": "Metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        401,
                    ),
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document (no token needed)",
                    "responses": {
                        "200": {"description": "OpenAPI", "content": _json({"type": "object"})}
                    },
                }
            },
        },
    }
