"""Benchmark: the console's heaviest pages, rendered on the server.

Goal (issue "The triage console"): the signals page with 10,000 signals and a binary's
page over 14 days × 1,000 hosts each render in ≤ 300 ms and ship ≤ 500 KB.

The store is built with SQL in the shapes the rule writes: 10,000 signals with real
documents (groups of 5 hosts every tenth executable), and one binary present on 1,000
hosts in every 15-minute bucket of 14 days (1.34M presence rows and their aggregates).
Each page is timed twice: its view + template in this process (what a request costs
the server), and over HTTP from a real `rarenet serve`; beside it the raw query of the
same rows (fetch + JSON) as the floor no page can beat.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import requests
from report import table, write_section

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.serve_process import ServerProcess

from rarenet.baseline.config import load_config
from rarenet.baseline.console import pages, views
from rarenet.baseline.console.render import render
from rarenet.baseline.store import Store

SIGNALS = 10_000
HOSTS = 1_000
DAYS = 14
SPAN = 900
END = 1_767_916_800  # 2026-01-09T00:00:00Z
START = END - DAYS * 86400
GOAL_MS = 300
GOAL_BYTES = 500 * 1024
REPEATS = 7


def build(db: Path) -> None:
    with Store(db) as store, store.transaction() as conn:
        conn.execute(
            "WITH RECURSIVE b(x) AS (SELECT ? UNION ALL SELECT x + ? FROM b WHERE x + ? < ?), "
            "h(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM h WHERE n + 1 < ?) "
            "INSERT INTO presence SELECT ?, x, printf('host-%04d', n), 'curl', '/usr/bin/curl', "
            "3, x, x + 60, 0 FROM b, h",
            (START, SPAN, SPAN, END, HOSTS, SPAN),
        )
        for kind, key in (("path", "/usr/bin/curl"), ("name", "curl")):
            conn.execute(
                "INSERT INTO key_bucket SELECT ?, ?, ?, bucket, count(*) FROM presence "
                "WHERE span = ? GROUP BY bucket",
                (SPAN, kind, key, SPAN),
            )
            conn.execute(
                "INSERT INTO key_host SELECT ?, ?, ?, host, min(bucket), max(bucket) "
                "FROM presence WHERE span = ? GROUP BY host",
                (SPAN, kind, key, SPAN),
            )
        conn.execute(
            "INSERT INTO fleet_bucket SELECT span, bucket, count(*) FROM presence GROUP BY bucket"
        )
        conn.execute("INSERT INTO name_path VALUES (?, 'curl', '/usr/bin/curl')", (SPAN,))
        conn.execute("INSERT INTO name_path VALUES (?, 'curl', '/var/tmp/.cache/curl')", (SPAN,))
        rows = []
        for i in range(SIGNALS):
            exe = i // 5 if i % 50 < 5 else i  # every tenth executable reaches 5 hosts
            host = f"host-{i % HOSTS:04d}"
            path = f"/tmp/.cache/x{exe}"
            bucket = END - SPAN - (i // 20) * SPAN
            group = f"g{exe:08d}"
            document = {
                "id": f"s{i:08d}",
                "host": {"name": host},
                "process": {"name": f"x{exe}", "executable": path, "command_line": f"{path} -c"},
                "reason": f"{path} on {host}: never seen in 134,400 fleet host-buckets over 14d",
                "kind": "host",
                "group": group,
                "score": 90.0,
                "explanation": {"parts": {"rarity": 1.0}},
            }
            rows.append(
                (f"s{i:08d}", host, f"x{exe}", path, bucket, END - i, 90.0 + i % 10,
                 orjson.dumps(document).decode(), group)
            )  # fmt: skip
        conn.executemany(
            "INSERT INTO signals (id, rule, host, name, path, bucket, created_at, score, "
            "initial_score, document, suppressed_count, group_id) "
            "VALUES (?, 'rarenet-unusual-network-activity', ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            [(*row[:6], row[6], row[6], row[7], row[8]) for row in rows],
        )


def timed(action: Callable[[], object]) -> tuple[float, object]:
    samples = []
    result: object = None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def test_console_pages(tmp_path: Path) -> None:
    db = tmp_path / "rarenet.db"  # where ServerProcess points its server
    started = time.perf_counter()
    build(db)
    built = time.perf_counter() - started
    config = load_config(None, env={"RARENET_STORE_PATH": str(db)})
    history = int(config.detect.history)

    def signals_page() -> str:
        with Store(db) as store:
            page = views.signals_page(store, views.SignalFilter())
        return render("signals.html", session=None, page=page, webhooks=[], states=("none",))

    def binary_page() -> str:
        with Store(db) as store:
            page = views.binary_page(store, SPAN, history, "/usr/bin/curl")
        return render("binary.html", session=None, page=page, plot=pages.binary_plot(page))

    def signals_raw() -> bytes:
        with Store(db) as store:
            rows = store.conn.execute(
                "SELECT id, host, name, path, bucket, score, document FROM signals "
                "ORDER BY created_at DESC LIMIT 50"
            ).fetchall()
            store.conn.execute("SELECT count(*), count(DISTINCT group_id) FROM signals").fetchone()
        return orjson.dumps(rows)

    def binary_raw() -> bytes:
        with Store(db) as store:
            series = store.conn.execute(
                "SELECT bucket, hosts FROM key_bucket WHERE span = ? AND kind = 'path' AND key = ?",
                (SPAN, "/usr/bin/curl"),
            ).fetchall()
            hosts = store.conn.execute(
                "SELECT host, first_bucket, last_bucket FROM key_host WHERE span = ? AND "
                "kind = 'path' AND key = ?",
                (SPAN, "/usr/bin/curl"),
            ).fetchall()
        return orjson.dumps([series, hosts])

    measured = {}
    for name, render_page, raw in (
        ("signals (10,000 signals)", signals_page, signals_raw),
        ("binary (14 d × 1,000 hosts)", binary_page, binary_raw),
    ):
        render_ms, html = timed(render_page)
        raw_ms, _ = timed(raw)
        measured[name] = (render_ms, len(str(html).encode()), raw_ms)
        assert str(html).count("<tr") >= 50 and ("binary" not in name or "<svg" in str(html))

    with ServerProcess(tmp_path, tokens=()) as server:
        http = {}
        for name, path in (
            ("signals (10,000 signals)", "/signals"),
            ("binary (14 d × 1,000 hosts)", "/binary?key=/usr/bin/curl"),
        ):
            session = requests.Session()
            session.get(f"{server.url}{path}", timeout=60)  # opens the session, warms caches
            ms, response = timed(lambda p=path, s=session: s.get(f"{server.url}{p}", timeout=60))
            assert response.status_code == 200  # type: ignore[attr-defined]
            assert response.content.count(b"<tr") >= 50, response.text[:500]  # type: ignore[attr-defined]
            http[name] = (ms, len(response.content))  # type: ignore[attr-defined]

    rows = [["page", "render (server)", "HTTP GET", "raw query + JSON", "bytes", "goal", "met"]]
    for name, (render_ms, _size, raw_ms) in measured.items():
        http_ms, http_size = http[name]
        met = render_ms <= GOAL_MS and http_ms <= GOAL_MS and http_size <= GOAL_BYTES
        rows.append(
            [
                name,
                f"{render_ms:.0f} ms",
                f"{http_ms:.0f} ms",
                f"{raw_ms:.1f} ms",
                f"{http_size / 1024:.0f} KiB",
                f"≤ {GOAL_MS} ms, ≤ {GOAL_BYTES // 1024} KiB",
                "yes" if met else "NO",
            ]
        )
    body = [
        f"Store built with SQL in {built:.0f} s: {SIGNALS:,} signals; one binary on {HOSTS:,} "
        f"hosts in every {SPAN // 60}-minute bucket of {DAYS} days "
        f"({HOSTS * DAYS * 86400 // SPAN:,} presence rows). Medians of {REPEATS}.",
        "",
        table(rows),
        "",
        "render = view + template in one process (what a request costs the server); HTTP = "
        "`GET` from a real `rarenet serve` on loopback, with a session cookie; raw = the "
        "page's main rows fetched and dumped as JSON, the floor no page beats.",
    ]
    write_section("console", "\n".join(body))
    for name, (render_ms, size, _raw) in measured.items():
        assert render_ms <= GOAL_MS and size <= GOAL_BYTES, (name, render_ms, size)
        assert http[name][0] <= GOAL_MS and http[name][1] <= GOAL_BYTES, (name, http[name])
