"""osquery's real table schema (support/data/, from osquery 5.23.1) as SQLite tables:
what the fake osquery core answers queries from and what the pack queries are checked
against."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from support import OSQUERY_SCHEMA

Schema = dict[str, dict[str, Any]]  # table name → its spec (columns, platforms)
AFFINITY = {
    "text": "TEXT",
    "integer": "INTEGER",
    "bigint": "INTEGER",
    "unsigned_bigint": "INTEGER",
    "double": "REAL",
}


def osquery_schema() -> Schema:
    """Every osquery table by name."""
    tables = json.loads(OSQUERY_SCHEMA.read_text(encoding="utf-8"))
    return {table["name"]: table for table in tables}


def column_definitions(table: dict[str, Any]) -> list[str]:
    """The table's columns as SQLite column definitions, with osquery's types' affinities."""
    return [f'"{c["name"]}" {AFFINITY[c["type"]]}' for c in table["columns"]]


def create_tables(conn: sqlite3.Connection, schema: Schema) -> sqlite3.Connection:
    """One empty table per osquery table in `conn`, every column."""
    for name, table in schema.items():
        conn.execute(f'CREATE TABLE "{name}" ({", ".join(column_definitions(table))})')
    return conn
