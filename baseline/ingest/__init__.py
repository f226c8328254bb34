"""Ingest: osquery/Fleet result logs → typed observations in the store."""
