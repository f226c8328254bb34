"""rarenet central service: ingest, store, baselines, scoring, delivery, CLI."""

from rarenet.extension import __version__ as __version__
