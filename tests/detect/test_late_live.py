"""Live equals backtest (issue 29): simulated fleets delivered to a real `rarenet serve`
over HTTP in arrival order — laptops offline for hours, attacks whose results arrive
hours late, a rarenet and a Fleet outage — with `rarenet detect --at` run every 15
minutes as the scheduler would, raise exactly the signals `rarenet backtest --arrivals`
predicts, with the same recall on every scenario family as on-time delivery and no more
than 10 % more false signals; every signal records how late its data arrived."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from support.serve_process import ServerProcess

from rarenet.baseline.cli import main as cli
from rarenet.baseline.config import load_config
from rarenet.baseline.detect.backtest import Backtest, backtest, label_matches
from rarenet.baseline.simulate import SimulationSpec, read_labels, simulate_to_path
from rarenet.baseline.simulate.delivery import arrival, read_delivery
from rarenet.baseline.store import Store

SPAN = 900


def recall(result: Backtest | list[dict[str, object]], labels_path: Path) -> dict[str, int]:
    """Labels caught per family."""
    signals = result.signals if isinstance(result, Backtest) else result
    caught: dict[str, int] = {}
    for label in read_labels(labels_path):
        hit = any(label_matches(label, doc, SPAN) for doc in signals)
        caught[label.family] = caught.get(label.family, 0) + hit
    return caught


def false_signals(signals: list[dict[str, object]], labels_path: Path) -> int:
    labels = read_labels(labels_path)
    return sum(not any(label_matches(lb, doc, SPAN) for lb in labels) for doc in signals)


def arrival_order(log: Path, arrivals: Path) -> list[tuple[int, bytes]]:
    """Every line of the log with the time it reaches rarenet, in that order."""
    delays = read_delivery(arrivals)
    out = []
    for line in log.read_bytes().splitlines(keepends=True):
        event = orjson.loads(line)
        host = event.get("hostIdentifier") or event["hostname"]
        out.append((arrival(delays, host, int(event["unixTime"])), line))
    return sorted(out, key=lambda pair: pair[0])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 4])
def test_serve_fed_in_arrival_order_raises_what_backtest_predicts_and_loses_no_family(
    tmp_path: Path, seed: int
) -> None:
    log, labels, arrivals = (
        tmp_path / "fleet.log",
        tmp_path / "labels.jsonl",
        tmp_path / "arr.jsonl",
    )
    spec = SimulationSpec(hosts=16, days=2.5, attacks=True, seed=seed, scenarios="all")
    simulate_to_path(spec, log, labels, arrivals)
    config = load_config(None, env={})
    on_time = backtest([str(log)], config, labels_path=str(labels))
    predicted = backtest([str(log)], config, labels_path=str(labels), arrivals_path=str(arrivals))
    lines = arrival_order(log, arrivals)
    late_lines = sum(seen - orjson.loads(line)["unixTime"] > 3600 for seen, line in lines)
    assert late_lines > 1000  # hours of some hosts' results, and two outages

    # the server's own rule is kept out (interval 30d): the CLI below runs it at data time
    with ServerProcess(
        tmp_path, max_body="64MiB", extra_toml='[detect]\ninterval = "30d"\n'
    ) as srv:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sum(
            srv.metric("rarenet_detection_runs_total", f'status="{s}"') for s in ("ok", "learning")
        ):
            time.sleep(0.1)  # its start-up run, on an empty store
        runner = CliRunner()
        sent = 0
        at = (lines[0][0] // SPAN + 1) * SPAN
        while sent < len(lines) or at <= lines[-1][0] + SPAN:
            batch = []
            while sent < len(lines) and lines[sent][0] < at:
                batch.append(lines[sent][1])
                sent += 1
            if batch:
                answer = srv.post(b"".join(batch))
                assert answer.status_code == 200 and answer.json()["rejected"] == 0, answer.text
            done = runner.invoke(cli, ["--db", str(srv.db), "detect", "--at", str(at)])
            assert done.exit_code in (0, 1), done.output
            at += SPAN
    with Store(srv.db) as store:
        live = [orjson.loads(doc) for (doc,) in store.conn.execute("SELECT document FROM signals")]
        caught_up = store.conn.execute("SELECT sum(late) FROM runs WHERE catch_up = 1").fetchone()
    assert caught_up[0] > 0
    assert sorted(d["id"] for d in live) == sorted(d["id"] for d in predicted.signals)
    assert recall(live, labels) == recall(on_time, labels), (
        recall(live, labels),
        recall(on_time, labels),
    )
    assert false_signals(live, labels) <= 1.1 * false_signals(on_time.signals, labels)
    assert all(isinstance(d["arrival"]["lag_seconds"], int) for d in live)
    true_lags = [
        d["arrival"]["lag_seconds"]
        for d in live
        if any(label_matches(lb, d, SPAN) for lb in read_labels(labels))
    ]
    assert max(true_lags) > 3600, true_lags  # an attack whose results came hours late
