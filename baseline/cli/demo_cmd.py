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
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import orjson
import requests

from baseline.cli import Context, common_options, run_guarded
from baseline.cli.detect_cmd import signal_line
from baseline.detect.backtest import label_matches
from baseline.detect.rule import detect_once
from baseline.errors import StoreError
from baseline.simulate import SimulationSpec, read_labels, simulate_to_path
from baseline.store import Store
from baseline.units import format_time

BODY_ROWS = 500  # rows per Fleet webhook body
START_TIMEOUT = 60.0


@click.command()
@click.option("--hosts", type=click.IntRange(2, 500), default=30, show_default=True)
@click.option("--days", type=click.FloatRange(0.5, 7), default=2.0, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--workdir", metavar="DIR", help="Keep the log, labels and store here.")
@common_options
@click.pass_obj
def demo(state: Context, hosts: int, days: float, seed: int, workdir: str | None) -> None:
    """Replay a SYNTHETIC fleet with attacks through `rarenet serve` and the rule.

    Everything runs on a scratch store (never --db) unless --workdir is given; the
    signals and whether they caught the injected attacks are printed as they happen.
    """

    def body() -> int:
        if workdir:
            Path(workdir).mkdir(parents=True, exist_ok=True)
            return _demo(state, hosts, days, seed, Path(workdir))
        with tempfile.TemporaryDirectory(prefix="rarenet-demo-") as scratch:
            return _demo(state, hosts, days, seed, Path(scratch))

    run_guarded(body)


def _demo(state: Context, hosts: int, days: float, seed: int, work: Path) -> int:
    config = state.config()
    settings = config.detect
    log, labels_path, db = work / "fleet.log", work / "fleet.labels.jsonl", work / "rarenet.db"
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        stale.unlink(missing_ok=True)
    sim = simulate_to_path(SimulationSpec(hosts, days, True, seed), str(log), str(labels_path))
    labels = read_labels(labels_path)
    click.echo(
        f"rarenet demo: SYNTHETIC fleet, {sim.hosts} hosts x {days:g} days, {sim.rows:,} rows, "
        f"{sim.attacks} attacks injected ({log})"
    )
    token = secrets.token_urlsafe(16)
    toml = work / "rarenet.toml"
    toml.write_text(
        f'[store]\npath = "{db}"\nretention = "3650d"\n\n[ingest]\ntokens = ["{token}"]\n\n'
        '[detect]\ninterval = "1d"\n'  # the demo drives the rule in data time itself
    )
    server, url = _start_server(toml, db, work)
    click.echo(f"rarenet demo: `rarenet serve` listening on {url} (store {db})")
    click.echo(
        f"rarenet demo: replaying in data time: Fleet webhook bodies of <= {BODY_ROWS} rows "
        f"to POST /v1/ingest, the rule every {settings.interval / 60:g}m of data"
    )
    interval = max(1, int(settings.interval))
    totals = {"posts": 0, "accepted": 0, "rejected": 0, "runs": 0}
    found: list[dict[str, Any]] = []
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        with Store(db) as store:
            last_learning = ""
            for at, bodies in _intervals(log, interval):
                for payload in bodies:
                    response = session.post(f"{url}/v1/ingest", data=payload, timeout=60)
                    if response.status_code != 200:
                        raise StoreError(
                            f"POST /v1/ingest answered {response.status_code}: {response.text[:200]}"
                        )
                    result = response.json()
                    totals["posts"] += 1
                    totals["accepted"] += result["accepted"]
                    totals["rejected"] += result["rejected"]
                run = detect_once(store, settings, at)
                totals["runs"] += 1
                if run.learning and run.learning != last_learning and at % 3600 == 0:
                    click.echo(f"  {format_time(at)}  {run.learning}")
                    last_learning = run.learning
                for doc in run.documents:
                    hit = any(label_matches(lb, doc, int(settings.bucket_span)) for lb in labels)
                    click.echo(
                        f"  {format_time(at)} "
                        + signal_line(doc).strip()
                        + ("  [injected attack]" if hit else "")
                    )
                    found.append(doc)
        listed = session.get(f"{url}/v1/signals?limit=1000", timeout=60).json()["signals"]
        click.echo(f"rarenet demo: GET /v1/signals lists {len(listed)} signals")
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    span = int(settings.bucket_span)
    caught = sum(any(label_matches(lb, doc, span) for doc in found) for lb in labels)
    click.echo(
        f"rarenet demo: {totals['accepted']:,} observations stored from {totals['posts']} posts "
        f"({totals['rejected']} rejected), {totals['runs']} runs of the rule, {len(found)} "
        f"signals; injected attacks caught: {caught}/{len(labels)}; server exited {code}"
    )
    return 0


def _start_server(toml: Path, db: Path, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`rarenet serve` on the scratch store only: the user's RARENET_* settings (a
    RARENET_DB pointing at the real store, its tokens, its bind address) must not reach it."""
    command = [sys.executable, "-m", "baseline", "serve", "--config", str(toml), "--db", str(db),
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
