"""What the tests share and are not tests themselves: real servers, simulated fleets,
osquery's result lines, and where the checkout's files are."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: README.md, docs/, queries/
DOCS = ROOT / "docs"
OSQUERY_SCHEMA = Path(__file__).parent / "data" / "osquery_schema_5.23.1.json"
