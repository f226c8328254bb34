"""Parse a chunk of lines and commit it: the unit of work of every ingest path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rarenet.baseline.config import Config
from rarenet.baseline.errors import ConfigError
from rarenet.baseline.ingest.model import Observation, Reject
from rarenet.baseline.ingest.normalise import Normaliser
from rarenet.baseline.ingest.parser import LineResult, Parser
from rarenet.baseline.store import Store


@dataclass(frozen=True)
class ChunkCounts:
    """What committing one chunk did."""

    inserted: int
    duplicates: int
    rejected: int
    filtered: int
    skipped: int
    quarantined: int = 0  # of the rejected: rows kept in quarantine (caps: docs/operations.md)


@dataclass
class ChunkResult:
    """A parsed chunk, before and after its commit."""

    observations: list[Observation]
    rejects: list[Reject]  # at most MAX_REJECTS_KEPT of them
    filtered: int
    skipped: int
    inserted: int = 0
    dropped: int = 0  # rejected lines past MAX_REJECTS_KEPT: counted, not kept
    quarantined: int = 0  # rejects stored by the commit (per-source cap)

    def counts(self) -> ChunkCounts:
        return ChunkCounts(
            inserted=self.inserted,
            duplicates=len(self.observations) - self.inserted,
            rejected=len(self.rejects) + self.dropped,
            filtered=self.filtered,
            skipped=self.skipped,
            quarantined=self.quarantined,
        )


def build_parser(config: Config) -> Parser:
    """A parser with the configured exclusions."""
    try:
        normaliser = Normaliser(
            exclude_destinations=config.ingest.exclude_destinations,
            exclude_processes=config.ingest.exclude_processes,
            exclude_users=config.ingest.exclude_users,
        )
    except ValueError as exc:
        raise ConfigError(str(exc), where="[ingest] exclude_destinations") from None
    return Parser(normaliser)


MAX_REJECTS_KEPT = 1000  # rejected lines kept per chunk or request body; the rest counted


def parse_lines(
    parser: Parser, lines: Iterable[tuple[int, bytes, int]], max_line: int
) -> ChunkResult:
    """Parse (number, bytes, oversize) lines into observations and rejects (no I/O). The
    first MAX_REJECTS_KEPT rejects are kept for quarantine; later ones only counted, so a
    body of millions of bad lines costs no more memory than one of good ones."""
    totals = LineResult()
    rejects: list[Reject] = []
    dropped = 0
    parse_into = parser.parse_into
    for number, data, oversize in lines:
        if oversize:
            errors = [
                f"line is {oversize} bytes, over the {max_line}-byte limit ([ingest] max_body)"
            ]
        else:
            errors = parse_into(data, totals)
        if not errors:
            continue
        if len(rejects) >= MAX_REJECTS_KEPT:
            dropped += 1
            continue
        reason = errors[0]
        if len(errors) > 1:
            reason += f" (and {len(errors) - 1} more)"
        rejects.append(Reject(number, reason, data, oversize or len(data)))
    return ChunkResult(totals.observations, rejects, totals.filtered, totals.skipped, 0, dropped)


def commit_chunk(
    store: Store,
    source: str,
    result: ChunkResult,
    also: Callable[[], None] | None = None,
) -> None:
    """Store a parsed chunk and its rejects, and run `also` (e.g. save the file's
    checkpoint), all in one transaction."""
    with store.transaction():
        result.inserted = store.insert_observations(result.observations)
        result.quarantined = store.quarantine_rejects(source, result.rejects, result.dropped)
        if also is not None:
            also()
