"""Parse a chunk of lines and commit it: the unit of work of every ingest path."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from baseline.config import Config
from baseline.errors import ConfigError
from baseline.ingest.model import Observation
from baseline.ingest.normalise import Normaliser
from baseline.ingest.parser import LineResult, Parser
from baseline.store import Store


@dataclass(frozen=True)
class Reject:
    """A line that goes to quarantine: its number, why, and its bytes."""

    line: int
    reason: str
    raw: bytes
    size: int  # the line's real length (raw may be cut)


@dataclass(frozen=True)
class ChunkCounts:
    """What committing one chunk did."""

    inserted: int
    duplicates: int
    rejected: int
    filtered: int
    skipped: int


@dataclass
class ChunkResult:
    """A parsed chunk, before and after its commit."""

    observations: list[Observation]
    rejects: list[Reject]
    filtered: int
    skipped: int
    inserted: int = 0

    def counts(self) -> ChunkCounts:
        return ChunkCounts(
            inserted=self.inserted,
            duplicates=len(self.observations) - self.inserted,
            rejected=len(self.rejects),
            filtered=self.filtered,
            skipped=self.skipped,
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


def parse_lines(
    parser: Parser, lines: Iterable[tuple[int, bytes, int]], max_line: int
) -> ChunkResult:
    """Parse (number, bytes, oversize) lines into observations and rejects (no I/O)."""
    totals = LineResult()
    rejects: list[Reject] = []
    parse_into = parser.parse_into
    for number, data, oversize in lines:
        if oversize:
            reason = f"line is {oversize} bytes, over the {max_line}-byte limit ([ingest] max_body)"
            rejects.append(Reject(number, reason, data, oversize))
            continue
        errors = parse_into(data, totals)
        if errors:
            reason = errors[0]
            if len(errors) > 1:
                reason += f" (and {len(errors) - 1} more)"
            rejects.append(Reject(number, reason, data, len(data)))
    return ChunkResult(totals.observations, rejects, totals.filtered, totals.skipped)


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
        for reject in result.rejects:
            store.quarantine(source, reject.line, reject.reason, reject.raw, reject.size)
        if also is not None:
            also()
