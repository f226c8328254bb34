"""rarenet central service: ingest, store, baselines, scoring, delivery, CLI."""

__version__ = "0.1.0"
