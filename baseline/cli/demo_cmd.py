"""`rarenet demo`: a simulated fleet replayed through the real server and the rule.

Simulates a small SYNTHETIC fleet with attacks, starts `rarenet serve` on a free
loopback port (a real subprocess with a token), POSTs the fleet's results to
/v1/ingest as Fleet webhook bodies in data-time order, and runs the rule at every
interval of data time, printing the learning progress and each signal with its reason.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import orjson
import requests

from rarenet.baseline.access.audit import cli_principal
from rarenet.baseline.access.users import add_user, create_token, get_user
from rarenet.baseline.cli import Context, command, json_option, scratch_store_options
from rarenet.baseline.cli.inert_output import echo_styled
from rarenet.baseline.cli.summary import Columns, Look, echo_summary, fit, plural, signal_row
from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.backtest import Backtest, evaluate
from rarenet.baseline.detect.maintenance import mark_replay
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.errors import StoreError
from rarenet.baseline.ingest.pipeline import IngestReport
from rarenet.baseline.simulate import (
    SimulationResult,
    SimulationSpec,
    read_labels,
    simulate_to_path,
)
from rarenet.baseline.store import Store
from rarenet.baseline.units import format_time

BODY_ROWS = 500  # rows per Fleet webhook body
START_TIMEOUT = 60.0


@command()
@click.option("--hosts", type=click.IntRange(2, 500), default=30, show_default=True)
@click.option("--days", type=click.FloatRange(0.5, 7), default=2.0, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--workdir", metavar="DIR", help="Keep the log, labels and store here.")
@scratch_store_options
@json_option
@click.pass_obj
def demo(
    state: Context, hosts: int, days: float, seed: int, workdir: str | None, as_json: bool
) -> int | None:
    """Replay a SYNTHETIC fleet with attacks through `rarenet serve` and the rule.

    Everything runs on a scratch store (so it refuses --db), kept in --workdir DIR if
    given; signals are printed as they happen, tagged with the injected attack they
    catch, then a summary names every attack missed and says what to run next.
    """
    if state.db is not None:
        raise click.UsageError(
            "demo runs on its own fresh scratch store and never reads or writes --db; drop "
            "--db (to keep the demo's store, its log and labels: --workdir DIR)",
            click.get_current_context(),
        )

    if workdir:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        return _demo(state, hosts, days, seed, Path(workdir), kept=True, as_json=as_json)
    with tempfile.TemporaryDirectory(prefix="rarenet-demo-") as scratch:
        return _demo(state, hosts, days, seed, Path(scratch), kept=False, as_json=as_json)


@dataclass
class _Totals:
    """What the replay posted."""

    posts: int = 0
    accepted: int = 0
    rejected: int = 0


def _demo(
    state: Context, hosts: int, days: float, seed: int, work: Path, *, kept: bool, as_json: bool
) -> int:
    settings = state.config().detect
    say = _quiet if as_json else echo_styled
    log, labels_path, db = work / "fleet.log", work / "fleet.labels.jsonl", work / "rarenet.db"
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        stale.unlink(missing_ok=True)
    sim = simulate_to_path(SimulationSpec(hosts, days, True, seed), str(log), str(labels_path))
    say(
        f"rarenet demo: SYNTHETIC fleet, {plural(sim.hosts, 'host')} x {plural(days, 'day')}, "
        f"{plural(sim.rows, 'row')}, {plural(sim.attacks, 'attack')} injected"
    )
    kept_note = "kept" if kept else "removed at the end; keep them with --workdir DIR"
    say(f"rarenet demo: log, labels and store in {work} ({kept_note})")
    span = max(1, int(settings.bucket_span))
    labels = read_labels(labels_path)
    result = Backtest(IngestReport(), labels=labels, span=span, start=sim.start, stop=sim.end)
    totals = _Totals()
    token = secrets.token_urlsafe(16)
    with Store(db) as store:  # a serve opened on it later keeps what the demo shows
        mark_replay(store, "rarenet demo")
    server, url = _start_server(_demo_config(work, db, token), db, work)
    say(f"rarenet demo: `rarenet serve` listening on {url}")
    say(
        f"rarenet demo: replay in data time: Fleet bodies (<= {BODY_ROWS} rows) to POST "
        f"/v1/ingest; rule every {settings.interval / 60:g}m"
    )
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        with Store(db) as store:
            _replay(session, url, store, settings, log, result, totals, say)
            warm = sim.start + settings.warmup_buckets * span
            result.metrics = evaluate(result, labels, store, span, warm, sim.end)
        # Signals are read as a person, never with the ingest token: a demo viewer.
        reader = {"Authorization": f"Bearer {_demo_reader(db)}"}
        listed = session.get(f"{url}/v1/signals?limit=1000", headers=reader, timeout=60).json()[
            "signals"
        ]
        say(f"rarenet demo: GET /v1/signals lists {plural(len(listed), 'signal')}")
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    result.ingest = IngestReport(observations=totals.accepted, rejected=totals.rejected)
    if as_json:
        _print_json(result, sim, days, totals, code, work if kept else None)
    else:
        _print_summary(result, totals, code, work, kept)
    return 0


def _demo_reader(db: Path) -> str:
    """A personal API token of a password-less `demo` viewer in the scratch store."""
    who = cli_principal()
    with Store(db) as store:
        if get_user(store, "demo") is None:
            add_user(store, "demo", "viewer", None, who)
        return create_token(store, "demo", "demo", None, who)[1]


def _demo_config(work: Path, db: Path, token: str) -> Path:
    """The scratch server's rarenet.toml: the scratch store, one token, no schedule of
    its own (the demo drives the rule in data time itself)."""
    toml = work / "rarenet.toml"
    toml.write_text(
        f'[store]\npath = "{db}"\nretention = "3650d"\n\n[ingest]\ntokens = ["{token}"]\n\n'
        '[detect]\ninterval = "1d"\n'
    )
    return toml


def _print_summary(result: Backtest, totals: _Totals, code: int, work: Path, kept: bool) -> None:
    """The closing lines, the summary (signals, recall, every miss), what to run next."""
    labels = result.labels or []
    caught = len(labels) - len(result.missed)
    click.echo(
        f"rarenet demo: {plural(totals.accepted, 'observation')} stored from "
        f"{plural(totals.posts, 'post')} ({totals.rejected} rejected); server exited {code}"
    )
    click.echo(
        f"rarenet demo: {plural(len(result.runs), 'run')} of the rule, "
        f"{plural(len(result.signals), 'signal')}; injected attacks caught: {caught}/{len(labels)}"
    )
    click.echo("")
    echo_summary(result, noun="injected attack")
    click.echo("")
    for line in _next_steps(work, kept):
        click.echo(line)  # commands are never cut: they are there to be copied


def _quiet(_text: str) -> None:
    """`say` with --json: stdout carries only the document."""


def _replay(
    session: requests.Session,
    url: str,
    store: Store,
    settings: DetectSettings,
    log: Path,
    result: Backtest,
    totals: _Totals,
    say: Callable[[str], None],
) -> None:
    """POST the log interval by interval and run the rule at each boundary; each run goes
    into `result`, each signal is printed (tagged) as it happens."""
    look = Look.of()
    cols = Columns(tag=len(_live_tag(True)))
    last_learning = ""
    for at, bodies in _intervals(log, max(1, int(settings.interval))):
        for payload in bodies:
            response = session.post(f"{url}/v1/ingest", data=payload, timeout=60)
            if response.status_code != 200:
                raise StoreError(
                    f"POST /v1/ingest answered {response.status_code}: {response.text[:200]}"
                )
            answer = response.json()
            totals.posts += 1
            totals.accepted += answer["accepted"]
            totals.rejected += answer["rejected"]
        run = detect_once(store, settings, at)
        result.runs.append(run)
        if run.learning and run.learning != last_learning and at % 3600 == 0:
            say(fit([(f"  {format_time(at)}  {run.learning}", {})], look))
            last_learning = run.learning
        for doc in run.documents:
            say(signal_row(doc, _live_tag(result.label_of(doc) is not None), cols, look))


def _live_tag(attack: bool) -> str:
    """The tag of a signal as it happens (the summary names the technique)."""
    return "[injected attack]" if attack else "[unlabelled]"


def _print_json(
    result: Backtest,
    sim: SimulationResult,
    days: float,
    totals: _Totals,
    code: int,
    kept: Path | None,
) -> None:
    """`demo --json`: the backtest document (signals with `label`, `metrics`, `missed`)
    plus what the demo posted and where its files are kept (null: deleted)."""
    doc = result.as_json()
    doc.pop("ingest")
    doc.update(
        hosts=sim.hosts,
        days=days,
        rows=sim.rows,
        attacks=sim.attacks,
        posts=totals.posts,
        observations=totals.accepted,
        rejected=totals.rejected,
        server_exit=code,
        workdir=str(kept) if kept else None,
    )
    click.echo(orjson.dumps(doc).decode())


def _next_steps(work: Path, kept: bool) -> list[str]:
    """What to run after the demo: why, then the command to copy (never cut)."""
    log, labels, db = work / "fleet.log", work / "fleet.labels.jsonl", work / "rarenet.db"
    if kept:
        head = f"next: the log, labels and store are kept in {work}"
        steps = [
            ("replay the same fleet offline:", f"rarenet backtest {log} --labels {labels}"),
            ("the demo's signal outbox:", f"rarenet signals list --db {db}"),
            (
                "its console (a store holding a replay keeps its data):",
                f"rarenet serve --db {db} --port 8081",
            ),
            (
                "caught and missed per label, as one HTML page:",
                f"rarenet report --backtest {log} --labels {labels} --out demo.html",
            ),
        ]
    else:
        head = "next: the demo's files are removed at the end"
        steps = [
            ("keep them in ./demo:", "rarenet demo --workdir demo"),
            (
                "then replay the same fleet offline:",
                "rarenet backtest demo/fleet.log --labels demo/fleet.labels.jsonl",
            ),
        ]
    steps.append(('this host, live, with its console (README.md, "Usage"):', "make run"))
    return [head] + [line for why, command in steps for line in (f"  {why}", f"      {command}")]


def _start_server(toml: Path, db: Path, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`rarenet serve` on the scratch store only: the user's RARENET_* settings (a
    RARENET_DB pointing at the real store, its tokens, its bind address) must not reach it."""
    command = [sys.executable, "-m", "rarenet", "serve", "--config", str(toml), "--db", str(db),
               "--host", "127.0.0.1", "--port", "0", "--no-access-log"]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if not key.startswith("RARENET_")}
    errors = (work / "serve.err").open("wb")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env)
    errors.close()
    assert proc.stdout is not None
    found: list[str] = []
    ready = threading.Event()
    threading.Thread(target=_watch, args=(proc.stdout, found, ready), daemon=True).start()
    if not ready.wait(START_TIMEOUT) or not found:
        proc.kill()
        proc.wait()
        detail = (work / "serve.err").read_text(errors="replace")[-500:]
        raise StoreError(f"rarenet serve did not start: {detail}")
    return proc, found[0]


def _watch(stream: IO[bytes], found: list[str], ready: threading.Event) -> None:
    """Find the URL in the server's first lines, then keep draining its output."""
    for raw in stream:
        match = re.search(rb"listening on (http://\S+)", raw)
        if match and not found:
            found.append(match.group(1).decode())
            ready.set()
    ready.set()


def _intervals(log: Path, interval: int) -> Iterator[tuple[int, list[bytes]]]:
    """(data time T, Fleet bodies of every result before T) for each interval boundary.
    The simulated log is in data-time order."""
    details: list[bytes] = []
    rows = 0
    bodies: list[bytes] = []
    boundary: int | None = None

    def flush() -> None:
        nonlocal details, rows
        if details:
            bodies.append(b'{"timestamp":"demo","details":[' + b",".join(details) + b"]}")
            details, rows = [], 0

    with log.open("rb") as handle:
        for raw in handle:
            document = orjson.loads(raw)
            when = int(document.get("unixTime", 0))
            if boundary is None:
                boundary = (when // interval + 1) * interval
            while when >= boundary:
                flush()
                yield boundary, bodies
                bodies = []
                boundary += interval
            details.append(raw.rstrip(b"\n"))
            rows += _rows(document)
            if rows >= BODY_ROWS:
                flush()
    flush()
    if boundary is not None:
        yield boundary, bodies


def _rows(document: dict[str, Any]) -> int:
    if "columns" in document:
        return 1
    if isinstance(document.get("snapshot"), list):
        return len(document["snapshot"])
    diff = document.get("diffResults")
    return len(diff.get("added") or []) if isinstance(diff, dict) else 1
