"""The heartbeat of `rarenet serve`: a console line per collect, ingest and detect step
saying what it did and when it runs next, so a quiet service visibly keeps working.

Rate limit: collect and ingest print at most one line per `gap` = min(60 s, [detect]
interval), less 10 % for scheduling jitter; the runs in between are summed into the
next line, so a 1 s collect interval prints about one line a minute, not sixty. A job's first
line prints at once. Every detection run prints (the gap is never longer than its
interval). Signal lines are the console sink's and are never held back.

Lines carry no `rarenet: ` prefix: `emit` adds it (the CLI echoes, else the logger);
a console that is gone never fails a job.
Times are the local clock, with seconds when the schedule is faster than a minute.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.rule import RunResult
from rarenet.baseline.ingest.chunks import ChunkCounts
from rarenet.baseline.units import format_age

QUIET = 60.0  # seconds: at most one collect (or ingest) line per this long
JITTER = 0.9  # a run this fraction of the gap after the last line is due
SHORT_WAIT = 120.0  # next runs closer than this read "next in N s", later ones a time
_LEARNED = re.compile(r"(\d+)/\d+")


@dataclass
class _Ingested:
    """What arrived, from every source, since the last ingest line."""

    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    sources: set[str] = field(default_factory=set)


class Heartbeat:
    """The lines of one server; safe to call from any thread (emits outside its lock)."""

    def __init__(
        self,
        emit: Callable[[str], None],
        settings: DetectSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit = emit
        self.settings = settings
        self.gap = min(QUIET, settings.interval)
        self.precise = settings.interval < 60  # show seconds in clock times
        self.clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last: dict[str, float] = {}  # job → clock() of its last line
        self._scans = 0
        self._stored = 0
        self._ingested = _Ingested()

    def _due(self, job: str, now: float) -> bool:
        last = self._last.get(job)
        return last is None or now - last >= self.gap * JITTER

    # -- collect ----------------------------------------------------------------------

    def collected(self, sockets: int, stored: int, host: str, upcoming: datetime | None) -> None:
        """One /proc scan: `sockets` seen, `stored` new observations."""
        with self._lock:
            self._scans += 1
            self._stored += stored
            now = self.clock()
            first = "collect" not in self._last
            if not self._due("collect", now):
                return
            scans, stored, self._scans, self._stored = self._scans, self._stored, 0, 0
            self._last["collect"] = now
        where = f" on this host ({host})" if first else ""
        over = f" in {scans} scans" if scans > 1 else ""
        self._say(
            f"collect: {sockets} sockets{where}, {stored} new observations{over}"
            f"{self._next_in(upcoming)}"
        )

    # -- ingest -----------------------------------------------------------------------

    def ingested(self, source: str, counts: ChunkCounts) -> None:
        """Count a commit (HTTP, files, stream); never prints (the request path calls it)."""
        with self._lock:
            pending = self._ingested
            pending.inserted += counts.inserted
            pending.duplicates += counts.duplicates
            pending.rejected += counts.rejected
            pending.sources.add(source)

    def ingest_step(self, files: int | None = None, upcoming: datetime | None = None) -> None:
        """Print what arrived since the last ingest line, when due. `files`: the tail job
        read this many files (it also reports "nothing new"); None: any other job's tick,
        which prints only when something arrived."""
        with self._lock:
            pending = self._ingested
            now = self.clock()
            if (files is None and not pending.sources) or not self._due("ingest", now):
                return
            since = now - self._last.get("ingest", self._started)
            self._ingested = _Ingested()
            self._last["ingest"] = now
        if pending.sources:
            what = (
                f"{pending.inserted} new observations ({pending.duplicates} duplicates, "
                f"{pending.rejected} rejected) from {', '.join(sorted(pending.sources))}"
            )
        else:
            what = "nothing new"
        tail = ""
        if files is not None:
            read = f"{files} file(s) tailed" if files else "no file matches [ingest] files yet"
            tail = f"; {read}{self._next_in(upcoming, 'next read')}"
        self._say(f"ingest: {what} in the last {format_age(since)}{tail}")

    # -- detect -----------------------------------------------------------------------

    def detected(self, run: RunResult, upcoming: datetime | None) -> None:
        """One detection run, learning or warm."""
        with self._lock:
            self._last["detect"] = self.clock()
        looked = f"{run.observations} observations in the look-back"
        if run.learning:
            found = _LEARNED.search(run.learning)
            done = int(found.group(1)) if found else 0
            left = max(1, self.settings.warmup_buckets - done) * self.settings.bucket_span
            what = (
                f"{run.learning}, {looked} (about {format_age(left)} of data still needed; "
                "`make demo` shows signals now)"
            )
        else:
            held = [
                f"{n} {label}"
                for n, label in (
                    (run.suppressed, "suppressed"),
                    (run.excepted, "allowed by exceptions"),
                    (run.truncated, "beyond max_signals"),
                )
                if n
            ]
            late = run.late_summary()
            held += [late] if late else []
            more = f" ({', '.join(held)})" if held else ""
            what = f"{looked}, {run.candidates} candidates, {run.all_signals} new signal(s){more}"
        upcoming_at = f"; next {self._clock(upcoming.timestamp())}" if upcoming else ""
        self._say(f"detect at {self._clock(run.data_time)}: {what}{upcoming_at}")

    # -- formatting -------------------------------------------------------------------

    def webhook(self, name: str, error: str | None) -> None:
        """A webhook's deliveries started failing (with the error) or recovered (None)."""
        clock = self._clock(self.clock())
        if error is None:
            self._say(f"deliver at {clock}: webhook {name} delivers again")
        else:
            self._say(f"deliver at {clock}: webhook {name} is failing: {error} (retrying)")

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the console is gone, not the job
            self.emit(line)

    def _clock(self, unix: float) -> str:
        return datetime.fromtimestamp(unix).strftime("%H:%M:%S" if self.precise else "%H:%M")

    def _next_in(self, upcoming: datetime | None, label: str = "next") -> str:
        if upcoming is None:
            return ""
        wait = upcoming.timestamp() - time.time()
        if wait <= SHORT_WAIT:
            return f"; {label} in {max(1, round(wait))} s"
        return f"; {label} {self._clock(upcoming.timestamp())}"
