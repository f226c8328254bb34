"""Detection quality per scenario family: rarenet's backtest beside two reference
detectors, on the same simulated fleet (`rarenet simulate --scenarios all`).

The references are the simplest forms of the rules rarenet is measured against:

* name-only rare (Elastic's ML keying for "Unusual Linux Network Activity"): in each
  15-minute bucket, a process name seen in < 1 % of the earlier buckets (once 20
  buckets exist) is anomalous, and every host that used it in that bucket is signalled;
* new terms on the executable: the first bucket in 14 days in which a path (the name
  when there is none) is seen anywhere in the fleet signals every host using it then.

Both get the same per (host, key) suppression for 24 hours that rarenet applies, so
the columns count signals a person would read. Used by tests/benchmarks/bench_quality.py
(docs/quality.md) and tests/detect/test_quality_families.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, NamedTuple

from rarenet.baseline.config import load_config
from rarenet.baseline.detect.backtest import arrive, backtest
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.simulate import Label, SimulationSpec, read_labels, simulate_to_path
from rarenet.baseline.simulate.catalogue import SCHEDULED_JOBS
from rarenet.baseline.simulate.delivery import Delay, read_delivery
from rarenet.baseline.simulate.families import benign_paths
from rarenet.baseline.store import Store
from rarenet.baseline.units import parse_time

SPAN = 900
WARMUP = 20
HISTORY = 14 * 86400 // SPAN
SUPPRESS = 86400 // SPAN
LOOKBACK = 2700  # the references' look-back after a bucket ends (Elastic's rule: 45 min)
FIRST_RUN = 12 * 3600  # a scheduled job's signal this soon after its first use is of that run
FAMILIES = (
    "never-seen",
    "masquerade",
    "host-novelty",
    "spread",
    "repeat",
    "child-shell",
    "returning",
)
DETECTORS = ("rarenet", "name-only rare", "new terms (path)")


class Hit(NamedTuple):
    """One signal of any detector: host, process name and path, bucket start."""

    host: str
    name: str
    path: str
    bucket: int


@dataclass
class Scored:
    """One detector's result on one fleet."""

    signals: list[Hit]
    by_name: bool = False  # the detector keys on the process name only

    def matches(self, label: Label, hit: Hit) -> bool:
        # as backtest.label_matches: same host, and the bucket overlaps [from, to]
        if hit.host != label.host or hit.bucket > label.end or hit.bucket + SPAN <= label.start:
            return False
        if self.by_name or not label.path:
            return hit.name == label.name
        return hit.path == label.path


@dataclass
class FleetQuality:
    """Per family and detector: labels caught, plus false and benign-family signals."""

    hosts: int
    seed: int
    host_days: float
    labels: list[Label]
    start: int  # the fleet's first data time
    detectors: dict[str, Scored] = field(default_factory=dict)
    documents: list[dict[str, Any]] = field(default_factory=list)  # rarenet's signals

    def recall(self, detector: str, family: str) -> tuple[int, int]:
        """(caught, labelled) for one family."""
        scored = self.detectors[detector]
        wanted = [label for label in self.labels if label.family == family]
        caught = sum(any(scored.matches(lb, hit) for hit in scored.signals) for lb in wanted)
        return caught, len(wanted)

    def false_signals(self, detector: str) -> int:
        """Signals matching no label and no benign scenario program (rollouts counted apart)."""
        scored = self.detectors[detector]
        benign = benign_paths()
        return sum(
            1
            for hit in scored.signals
            if not any(scored.matches(label, hit) for label in self.labels)
            and _benign(hit, benign, scored.by_name) is None
        )

    def benign_signals(self, detector: str, family: str) -> dict[str, int]:
        """Signals per program of a benign family (rollout, weekly, user-app)."""
        scored = self.detectors[detector]
        benign = benign_paths()
        counts: dict[str, int] = {
            path: 0 for path, kind in benign.items() if kind == family and path in self.present
        }
        for hit in scored.signals:
            path = _benign(hit, benign, scored.by_name)
            if path is not None and benign[path] == family:
                counts[path] = counts.get(path, 0) + 1
        return counts

    present: set[str] = field(default_factory=set)  # benign scenario paths in this fleet
    # (host, path) of a scheduled job → the bucket of its first use on that host
    first_runs: dict[tuple[str, str], int] = field(default_factory=dict)
    run_days: dict[tuple[str, str], set[int]] = field(default_factory=dict)  # UTC days used

    def scheduled_signals(self, detector: str) -> tuple[int, int]:
        """Signals of scheduled jobs (SCHEDULED_JOBS): (at a host's first run of the job,
        at a later run: its second occurrence on)."""
        scored = self.detectors[detector]
        first = later = 0
        for hit in scored.signals:
            for (host, path), start in self.first_runs.items():
                same = hit.name == path.rsplit("/", 1)[-1] if scored.by_name else hit.path == path
                if hit.host == host and same:
                    if hit.bucket - start < FIRST_RUN:
                        first += 1
                    else:
                        later += 1
        return first, later

    def false_documents(self) -> list[dict[str, Any]]:
        """rarenet's false signals as documents (to say what they are)."""
        scored, benign = self.detectors["rarenet"], benign_paths()
        return [
            doc
            for doc, hit in zip(self.documents, scored.signals, strict=True)
            if not any(scored.matches(label, hit) for label in self.labels)
            and _benign(hit, benign, False) is None
        ]


def _benign(hit: Hit, benign: dict[str, str], by_name: bool) -> str | None:
    """The benign scenario program (its catalogue path; "{user}" stands for any user) a
    hit is of, if any."""
    if by_name:
        return next((path for path in benign if path.rsplit("/", 1)[-1] == hit.name), None)
    if hit.path in benign:
        return hit.path
    return next(
        (p for p in benign if "{user}" in p and fnmatch(hit.path, p.replace("{user}", "*"))),
        None,
    )


def measure(
    hosts: int,
    days: float,
    seed: int,
    workdir: Path,
    late: bool = False,
    env: dict[str, str] | None = None,
    references: bool = True,
) -> FleetQuality:
    """Simulate one fleet with every scenario family, backtest rarenet, run both
    references on the same observations. `late`: the lines arrive as the simulated
    delivery plan says (laptops offline, attacks whose results arrive hours late, a
    rarenet and a Fleet outage) and everything is replayed in arrival order; the
    references, like Elastic's rules, score a bucket only with the data that arrived
    within their look-back after it (late data is never analysed). `env`: settings for
    rarenet as RARENET_* variables (default: every default). `references`: False scores
    rarenet alone (the tests; the comparison is `make bench`)."""
    log, labels_path = workdir / f"fleet-{hosts}-{seed}.log.gz", workdir / f"labels-{seed}.jsonl"
    arrivals = workdir / f"arrivals-{hosts}-{seed}.jsonl" if late else None
    spec = SimulationSpec(hosts=hosts, days=days, attacks=True, seed=seed, scenarios="all")
    simulate_to_path(spec, log, labels_path, arrivals)
    config = load_config(None, env=env or {})
    result = backtest(
        [str(log)],
        config,
        labels_path=str(labels_path),
        workdir=str(workdir),
        arrivals_path=None if arrivals is None else str(arrivals),
    )
    metrics = result.metrics or {}
    rarenet = [
        Hit(
            s["host"]["name"],
            s["process"]["name"],
            s["process"]["executable"] or "",
            parse_time(s["bucket"]["start"]),
        )
        for s in result.signals
    ]
    delays = read_delivery(arrivals) if arrivals is not None else []
    presence = _presence(log, workdir / f"ref-{hosts}-{seed}-{int(late)}.db", delays)
    quality = FleetQuality(
        hosts, seed, float(metrics.get("host_days", 0)), read_labels(labels_path), spec.start
    )
    quality.detectors = {"rarenet": Scored(rarenet)}
    if references:
        quality.detectors["name-only rare"] = Scored(name_only_rare(presence), by_name=True)
        quality.detectors["new terms (path)"] = Scored(new_terms(presence))
    quality.documents = result.signals
    benign = benign_paths()
    quality.present = {
        found
        for bucket, host, name, path in presence
        if (found := _benign(Hit(host, name, path, bucket), benign, False)) is not None
    }
    scheduled = {program.path for program, *_ in SCHEDULED_JOBS.values()}
    for bucket, host, _, path in presence:  # sorted by bucket: the first use stays
        if path in scheduled:
            quality.first_runs.setdefault((host, path), bucket)
            quality.run_days.setdefault((host, path), set()).add(bucket // 86400)
    return quality


Presence = list[tuple[int, str, str, str]]  # (bucket, host, name, path), sorted


def _presence(log: Path, db: Path, delays: list[Delay]) -> Presence:
    """(bucket, host, name, path) a reference detector sees: with delays, only what
    arrived within its look-back after the bucket ended."""
    with Store(db) as store:
        Ingester(store, load_config(None, env={})).ingest([str(log)])
        arrive(store, delays)
        rows = store.conn.execute(
            f"SELECT time - time % {SPAN} AS bucket, host, name, path FROM observations "
            f"GROUP BY 1, 2, 3, 4 HAVING min(arrival) < bucket + {SPAN + LOOKBACK} "
            "ORDER BY 1, 2, 3, 4"
        ).fetchall()
    return [(int(b), str(h), str(n), str(p)) for b, h, n, p in rows]


def _by_bucket(presence: Presence) -> list[tuple[int, list[tuple[str, str, str]]]]:
    grouped: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for bucket, host, name, path in presence:
        grouped[bucket].append((host, name, path))
    return sorted(grouped.items())


def _suppressed(hits: Iterable[Hit], by_name: bool) -> list[Hit]:
    last: dict[tuple[str, str], int] = {}
    kept = []
    for hit in sorted(hits, key=lambda h: h.bucket):
        key = (hit.host, hit.name if by_name else hit.path or hit.name)
        if key in last and hit.bucket - last[key] < SUPPRESS * SPAN:
            continue
        last[key] = hit.bucket
        kept.append(hit)
    return kept


def name_only_rare(presence: Presence) -> list[Hit]:
    """Elastic's keying: a name in < 1 % of the earlier buckets; every host in the bucket."""
    seen_in: dict[str, int] = defaultdict(int)
    hits = []
    for number, (bucket, rows) in enumerate(_by_bucket(presence)):
        names = {name for _, name, _ in rows}
        if number >= WARMUP:
            rare = {name for name in names if seen_in[name] < 0.01 * number}
            hits += [Hit(h, n, "", bucket) for h, n, _ in rows if n in rare]
        for name in names:
            seen_in[name] += 1
    return _suppressed(set(hits), by_name=True)


def new_terms(presence: Presence) -> list[Hit]:
    """New terms on the executable: first bucket in 14 days with this path anywhere."""
    last_seen: dict[str, int] = {}
    hits = []
    for number, (bucket, rows) in enumerate(_by_bucket(presence)):
        keys = {path or name for _, name, path in rows}
        if number >= WARMUP:
            new = {k for k in keys if k not in last_seen or bucket - last_seen[k] > HISTORY * SPAN}
            hits += [Hit(h, n, p, bucket) for h, n, p in rows if (p or n) in new]
        for key in keys:
            last_seen[key] = bucket
    return _suppressed(set(hits), by_name=False)


def per_100_host_days(count: int, host_days: float) -> float:
    return 100 * count / host_days if host_days else 0.0


def summarise(fleets: Sequence[FleetQuality]) -> dict[str, Any]:
    """Totals over fleets: per family and detector (caught, labelled); false signals per
    100 host-days; the worst rollout and weekly job (most signals for one program);
    scheduled jobs' signals at a host's first run and from its second run on."""
    out: dict[str, Any] = {
        "recall": {},
        "false": {},
        "rollout_max": {},
        "weekly_max": {},
        "user-app_max": {},
        "scheduled": {},
    }
    host_days = sum(f.host_days for f in fleets)
    for detector in DETECTORS:
        for family in FAMILIES:
            pairs = [f.recall(detector, family) for f in fleets]
            out["recall"][(detector, family)] = (
                sum(c for c, _ in pairs),
                sum(n for _, n in pairs),
            )
        false = sum(f.false_signals(detector) for f in fleets)
        out["false"][detector] = (false, per_100_host_days(false, host_days))
        for kind in ("rollout", "weekly", "user-app"):
            worst = max(
                (max(f.benign_signals(detector, kind).values(), default=0) for f in fleets),
                default=0,
            )
            out[f"{kind}_max"][detector] = worst
        runs = [f.scheduled_signals(detector) for f in fleets]
        out["scheduled"][detector] = (sum(a for a, _ in runs), sum(b for _, b in runs))
    out["scheduled_jobs"] = sum(len(f.first_runs) for f in fleets)
    out["host_days"] = host_days
    return out
