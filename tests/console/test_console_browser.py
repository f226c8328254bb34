"""The console and the report in a real headless Chromium, against `rarenet serve` on a
loopback port with a small simulated fleet (the rule's hand-built fleet plus a hostile
process): pages load clean, filters filter, "allow this" makes an exception the next run
counts, hostile names stay text, a wrong token sees nothing, a CSRF-less POST is refused,
and the report renders offline without a request. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page
from support import DOCS
from support.browser import Watch, launch
from support.deliver_helpers import add_signals
from support.hand_fleet import (
    ATTACK_AT,
    BASH_SHELL,
    BEACON,
    MASQUERADE,
    ROLLOUT,
    RUN_AT,
    routine_lines,
)
from support.osquery_lines import socket_line
from support.serve_process import PASSWORD, TOKEN, ServerProcess

from rarenet.baseline.config import load_config
from rarenet.baseline.deliver import get_signal
from rarenet.baseline.deliver.formats import slack_message
from rarenet.baseline.deliver.links import Links
from rarenet.baseline.detect.rule import detect_once
from rarenet.baseline.ingest.pipeline import Ingester
from rarenet.baseline.store import Store

pytestmark = pytest.mark.slow

# The README's screenshots: written only by `make screenshots` (SCREENSHOTS_INTO_DOCS=1);
# otherwise into the test's temporary directory, so `make test` leaves the tree as it is.
DOC_SCREENSHOTS = DOCS / "screenshots"
HOSTILE_NAME = "<script>window.__pwned=1</script>"
HOSTILE_PATH = '/tmp/"><img src=x onerror="window.__pwned=2">'
HOSTILE_CMDLINE = "sh -c 'id' \u202etxt.exe <b>bold</b> \x1b[31m\u200b"
HOSTILE = socket_line(
    "web-11",
    ATTACK_AT + 30,
    pid=5150,
    name=HOSTILE_NAME,
    path=HOSTILE_PATH,
    cmdline=HOSTILE_CMDLINE,
    remote_address="203.0.113.66",
    remote_port=4444,
)

SPREAD = "/dev/shm/.k/kworkerd"  # lateral movement: web-12, then web-13 two hours later
SPREAD_LINES = [
    socket_line(host, at, pid=3100 + i, name="kworkerd", path=SPREAD, remote_address="203.0.113.77")
    for i, (host, at) in enumerate((("web-12", ATTACK_AT - 7200 + 40), ("web-13", ATTACK_AT + 40)))
]


def fleet_log(directory: Path) -> Path:
    log = directory / "fleet.log"
    log.write_bytes(
        b"".join(
            [*routine_lines(), BEACON, BASH_SHELL, MASQUERADE, HOSTILE, *ROLLOUT, *SPREAD_LINES]
        )
    )
    return log


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fleet's store after the run that catches the attacks."""
    directory = tmp_path_factory.mktemp("console-fleet")
    db = directory / "fleet.db"
    config = load_config(None, env={})
    with Store(db) as store:
        report = Ingester(store, config).ingest([str(fleet_log(directory))])
        assert report.rejected == 0
        first = detect_once(store, config.detect, RUN_AT - 7200)
        assert [d["host"]["name"] for d in first.documents] == ["web-12"]
        run = detect_once(store, config.detect, RUN_AT)
        found = sorted((d["host"]["name"], d["process"]["executable"]) for d in run.documents)
        assert len(found) == 6 and ("web-13", SPREAD) in found, found
        assert (
            len(
                {
                    d["group"]
                    for d in [*first.documents, *run.documents]
                    if d["process"]["executable"] == SPREAD
                }
            )
            == 1
        )
    return db


@pytest.fixture(scope="module")
def server(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("console-serve")
    shutil.copy(fleet, workdir / "rarenet.db")
    # A webhook nobody listens on: redeliver has a target; its failures show on Health.
    hook = '[[webhooks]]\nurl = "http://127.0.0.1:9/hook"\nname = "soc"\ntimeout = "1s"\n'
    with ServerProcess(workdir, extra_toml=hook, scoped=True) as proc:
        for name, role in USERS.items():
            proc.add_user(name, role)
        yield proc


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


USERS = {"ada": "admin", "ann": "analyst", "vic": "viewer"}


def signed_in(
    context: BrowserContext, server: ServerProcess, user: str = "ada"
) -> tuple[Page, Watch]:
    page = context.new_page()
    watch = Watch().attach(page)
    page.goto(f"{server.url}/signals")
    assert "/login" in page.url
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/signals")
    assert page.inner_text("#me") == f"{user} · {USERS[user]}"
    return page, watch


def signal_id(server: ServerProcess, path: str) -> str:
    with sqlite3.connect(server.db) as conn:
        row = conn.execute("SELECT id FROM signals WHERE path = ?", (path,)).fetchone()
    assert row is not None, path
    return str(row[0])


def host_of(server: ServerProcess, sid: str) -> str:
    with sqlite3.connect(server.db) as conn:
        return str(conn.execute("SELECT host FROM signals WHERE id = ?", (sid,)).fetchone()[0])


def test_every_page_loads_clean(
    context: BrowserContext, server: ServerProcess, tmp_path: Path
) -> None:
    page, watch = signed_in(context, server)
    beacon = signal_id(server, "/tmp/.x/beacon")
    shots = DOC_SCREENSHOTS if os.environ.get("SCREENSHOTS_INTO_DOCS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    visits = {
        "signals": "/signals",
        "signal": f"/signals/{beacon}",
        "allow": f"/signals/{beacon}/allow",
        "host": "/host?name=web-05",
        "binary": "/binary?key=bash",
        "binary-path": "/binary?key=/usr/bin/bash",
        "health": "/health",
        "hosts": "/hosts",
        "binaries": "/binaries",
        "exceptions": "/exceptions",
        "webhooks": "/webhooks",
    }
    for name, path in visits.items():
        response = page.goto(f"{server.url}{path}")
        assert response is not None and response.status == 200, (name, response)
        assert page.locator("h1").count() == 1, name
        if name in ("signals", "signal", "binary", "health", "hosts", "webhooks"):
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            assert (shots / f"{name}.png").stat().st_size > 10_000, name
    assert watch.problems() == []
    csp = requests.get(f"{server.url}/health", cookies=_cookies(context)).headers
    assert "script-src" not in csp["content-security-policy"]  # default-src 'none': no script
    assert csp["content-security-policy"].startswith("default-src 'none'")
    page.goto(f"{server.url}/signals/{beacon}")
    assert page.locator("svg.plot").count() == 3  # presence, timeline, score parts
    assert "never seen in 10,044 fleet host-buckets" in page.inner_text("section.why")
    page.goto(f"{server.url}/health")
    assert "mature: " in page.inner_text("#learning")
    assert page.locator("text=detection runs").count() + page.locator("h2").count() > 0


def test_filters_change_the_list(context: BrowserContext, server: ServerProcess) -> None:
    page, watch = signed_in(context, server)
    rows = page.locator("table.groups tbody tr.group")
    assert rows.count() == 6  # 7 signals: the spread's two hosts share one row
    spread = rows.filter(has_text=SPREAD)
    assert spread.count() == 1 and "2 hosts · 2 signals" in spread.inner_text()
    members = spread.locator("ul.members")
    assert not members.is_visible()
    spread.locator("summary").click()  # expand the group to its hosts
    assert members.is_visible() and {"web-12", "web-13"} <= set(members.inner_text().split())
    page.fill("input[name=executable]", "beacon")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**executable=beacon**")
    assert rows.count() == 1 and "/tmp/.x/beacon" in rows.first.inner_text()
    page.fill("input[name=executable]", "")
    page.fill("input[name=min_score]", "90")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**min_score=90**")
    scores = [
        float(s) for s in page.locator("table.groups tr.group > td > span.score").all_inner_texts()
    ]
    assert scores and all(score >= 90 for score in scores) and len(scores) < 6
    page.goto(f"{server.url}/signals?host=web-10")
    assert rows.count() == 1 and "acme-agent" in rows.first.inner_text()
    assert watch.problems() == []


def test_allow_this_creates_an_exception_the_next_run_counts(
    context: BrowserContext, server: ServerProcess
) -> None:
    page, watch = signed_in(context, server)
    beacon = signal_id(server, "/tmp/.x/beacon")
    page.goto(f"{server.url}/signals/{beacon}")
    page.click("text=Allow this")
    assert page.input_value("input[name=path]") == "/tmp/.x/beacon"
    assert page.input_value("input[name=host]") == "web-05"
    page.fill("input[name=reason]", "red-team exercise RT-42")
    page.click("form.allow button[type=submit]")
    page.wait_for_url(f"**/signals/{beacon}?**")
    flash = page.inner_text(".flash")
    assert "exception #" in flash and "path /tmp/.x/beacon, host web-05" in flash
    assert watch.problems() == []
    with sqlite3.connect(server.db) as conn:
        (exception_id, expires_at, reason, matched) = conn.execute(
            "SELECT id, expires_at, reason, matched FROM exceptions"
        ).fetchone()
    assert reason == "red-team exercise RT-42" and matched == 0 and expires_at is not None
    # The next run of the rule over that bucket counts a hit on the exception.
    detect = subprocess.run(
        [sys.executable, "-m", "rarenet", "detect", "--config", str(server.config),
         "--at", str(RUN_AT + 900), "--json"],
        capture_output=True, check=True, cwd=server.workdir, timeout=120,
    )  # fmt: skip
    run = orjson.loads(detect.stdout)["run"]
    assert run["excepted"] >= 1, run
    with sqlite3.connect(server.db) as conn:
        assert (
            conn.execute("SELECT matched FROM exceptions WHERE id = ?", (exception_id,)).fetchone()[
                0
            ]
            >= 1
        )


def test_hostile_names_render_as_text(context: BrowserContext, server: ServerProcess) -> None:
    page, watch = signed_in(context, server)
    sid = signal_id(server, HOSTILE_PATH)
    for path in (
        f"/signals/{sid}",
        "/signals",
        f"/binary?key={requests.utils.quote(HOSTILE_PATH)}",
    ):
        page.goto(f"{server.url}{path}")
        assert page.evaluate("window.__pwned === undefined"), path
        assert page.locator("img").count() == 0, path  # no element was injected
        assert page.locator("script").count() == 0, path
        assert page.locator("b").count() == 0, path
    page.goto(f"{server.url}/signals/{sid}")
    assert HOSTILE_PATH in page.inner_text("h1")  # shown, as text
    cmdline = page.inner_text("code.cmdline")
    assert "\\u202e" in cmdline and "\u202e" not in cmdline  # the bidi override is visible
    assert "\\x1b" in cmdline and "\\u200b" in cmdline and "<b>bold</b>" in cmdline
    assert watch.dialogs == [] and watch.page_errors == []
    raw = requests.get(f"{server.url}/signals/{sid}", cookies=_cookies(context)).text
    assert "<script>window" not in raw and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in raw
    assert '"><img' not in raw


def test_a_wrong_password_never_shows_data(context: BrowserContext, server: ServerProcess) -> None:
    page = context.new_page()
    page.goto(f"{server.url}/signals?host=web")
    assert "/login" in page.url
    page.fill("input[name=user]", "ada")
    page.fill("input[name=password]", "wrong-password-0123456789")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "wrong user name or password" in page.inner_text("main")
    for path in ("/signals", "/health", f"/signals/{signal_id(server, '/tmp/.x/beacon')}"):
        page.goto(f"{server.url}{path}")
        assert "/login" in page.url, path
        html = page.content()
        assert "web-05" not in html and "beacon" not in html and "signals in" not in html
    response = requests.get(
        f"{server.url}/signals",
        headers={"Authorization": "Bearer wrong-token-0123456789"},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 401 and "web-05" not in response.text
    for secret in (TOKEN, "wrong-token-0123456789"):  # the ingest token opens no page
        refused = requests.get(
            f"{server.url}/signals", headers={"Authorization": f"Bearer {secret}"}, timeout=10
        )
        assert refused.status_code == 401 and "web-05" not in refused.text
    personal = server.api_token("vic")  # a person's API token works for scripts
    listed = requests.get(
        f"{server.url}/signals", headers={"Authorization": f"Bearer {personal}"}, timeout=10
    )
    assert listed.status_code == 200 and "web-05" in listed.text
    cookie = [c for c in context.cookies() if c["name"] == "rarenet_session"]
    assert cookie == []  # no session was handed out


def test_a_csrf_less_post_is_refused(context: BrowserContext, server: ServerProcess) -> None:
    page, watch = signed_in(context, server)
    sid = signal_id(server, "/usr/bin/bash")
    cookie = next(c for c in context.cookies() if c["name"] == "rarenet_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    url = f"{server.url}/signals/{sid}/acknowledge"
    jar = _cookies(context)
    page.goto(f"{server.url}/signals/{sid}")
    csrf = page.get_attribute("form[action$=acknowledge] input[name=csrf]", "value")
    assert csrf
    for data, headers in (
        ({}, {}),  # no token
        ({"csrf": "guess"}, {}),  # a wrong one
        ({"csrf": csrf}, {"Origin": "http://evil.example"}),  # right token, other origin
    ):
        refused = requests.post(
            url, data=data, headers=headers, cookies=jar, timeout=10, allow_redirects=False
        )
        assert refused.status_code == 403, (data, headers)
    refused = requests.post(url, data={"csrf": csrf}, timeout=10, allow_redirects=False)
    assert refused.status_code == 403  # the token alone, without the session, is nothing
    with sqlite3.connect(server.db) as conn:
        assert conn.execute(
            "SELECT count(*) FROM signal_acks WHERE signal_id = ?", (sid,)
        ).fetchone() == (0,)
    page.click("form[action$=acknowledge] button")  # the page's own form works
    page.wait_for_url("**done=acknowledged**")
    assert "acknowledged" in page.inner_text(".actions")
    page.click("form[action$=redeliver] button")
    page.wait_for_url("**done=**")
    assert "queued again for soc" in page.inner_text(".flash")
    with sqlite3.connect(server.db) as conn:
        assert conn.execute(
            "SELECT count(*) FROM signal_acks WHERE signal_id = ?", (sid,)
        ).fetchone() == (1,)
        assert conn.execute(
            "SELECT webhook FROM deliveries WHERE signal_id = ?", (sid,)
        ).fetchall() == [("soc",)]
    page.goto(f"{server.url}/signals?ack=open")
    assert "/usr/bin/bash" not in page.inner_text("table.groups")
    assert watch.problems() == []


def test_the_report_renders_offline_without_a_request(
    browser: Browser, fleet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    made = subprocess.run(
        [sys.executable, "-m", "rarenet", "report", "--db", str(fleet), "--out", str(out), "--json"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    assert orjson.loads(made.stdout)["signals"] == 7
    context = browser.new_context(offline=True)
    try:
        page = context.new_page()
        watch = Watch().attach(page)
        page.goto(out.as_uri())
        assert watch.requests == [out.as_uri()]  # the file itself, nothing else
        assert watch.problems() == []
        assert page.locator("section.signal").count() == 7
        assert page.locator("svg.plot").count() == 7 * 3 + 6  # three per signal, one per binary
        assert page.evaluate("window.__pwned === undefined") and page.locator("img").count() == 0
        page.locator("table.groups a[href^='#signal-']:visible").first.click()
        assert page.url.startswith(out.as_uri() + "#signal-")
        page.screenshot(path=str(tmp_path / "report.png"))
    finally:
        context.close()


def _cookies(context: BrowserContext) -> dict[str, str]:
    return {c["name"]: c["value"] for c in context.cookies()}


def test_the_backtest_report_shows_caught_and_missed_per_label(
    browser: Browser, tmp_path: Path
) -> None:
    log = fleet_log(tmp_path)
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(
        b"".join(
            orjson.dumps({"hostIdentifier": host, "path": path, "from": start, "to": start + 100})
            + b"\n"
            for host, path, start in (
                ("web-05", "/tmp/.x/beacon", ATTACK_AT),
                ("web-12", SPREAD, ATTACK_AT - 7200),
                ("web-13", SPREAD, ATTACK_AT),
                ("web-03", "/usr/bin/nc", ATTACK_AT),  # never happened: missed
            )
        )
    )
    out = tmp_path / "backtest.html"
    made = subprocess.run(
        [sys.executable, "-m", "rarenet", "report", "--backtest", str(log),
         "--labels", str(labels), "--out", str(out), "--json"],
        capture_output=True, check=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    metrics = orjson.loads(made.stdout)["metrics"]
    assert metrics["labelled"] == 4 and metrics["detected"] == 3
    context = browser.new_context(offline=True)
    try:
        page = context.new_page()
        watch = Watch().attach(page)
        page.goto(out.as_uri())
        assert watch.requests == [out.as_uri()] and watch.problems() == []
        rows = page.locator("#quality table.list").first.locator("tbody tr")
        outcomes = {
            (cells[1], cells[2]): cells[0]
            for cells in (row.locator("td").all_inner_texts() for row in rows.all())
        }
        assert outcomes == {
            ("web-05", "/tmp/.x/beacon"): "caught",
            ("web-12", SPREAD): "caught",
            ("web-13", SPREAD): "caught",
            ("web-03", "/usr/bin/nc"): "missed",
        }
        false_rows = page.locator("#quality table.list").nth(1).locator("tbody tr")
        assert false_rows.count() == metrics["false_signals"] == 4
        assert page.locator("svg.plot").count() > 0
    finally:
        context.close()


def test_a_viewer_reads_but_cannot_act(context: BrowserContext, server: ServerProcess) -> None:
    page, watch = signed_in(context, server, "vic")
    sid = signal_id(server, "/tmp/.x/beacon")
    page.goto(f"{server.url}/signals/{sid}")
    actions = page.locator(".actions")
    assert actions.locator("button").count() == 0 and "Allow this" not in actions.inner_text()
    assert page.locator("a[href='/audit']").count() == 0
    csrf = page.get_attribute("form.logout input[name=csrf]", "value")
    assert csrf  # a real session's token: the refusal below is the role, not CSRF
    refused = requests.post(
        f"{server.url}/signals/{sid}/acknowledge", data={"csrf": csrf},
        cookies=_cookies(context), timeout=10, allow_redirects=False,
    )  # fmt: skip
    assert refused.status_code == 403 and "vic is a viewer" in refused.text
    allow = requests.post(
        f"{server.url}/exceptions",
        data={"csrf": csrf, "signal": sid, "path": "/tmp/.x/beacon", "reason": "x"},
        cookies=_cookies(context), timeout=10, allow_redirects=False,
    )  # fmt: skip
    assert allow.status_code == 403
    assert page.goto(f"{server.url}/audit").status == 403  # type: ignore[union-attr]
    with sqlite3.connect(server.db) as conn:
        assert conn.execute(
            "SELECT count(*) FROM signal_acks WHERE signal_id = ?", (sid,)
        ).fetchone() == (0,)
    assert [p for p in watch.problems() if "403" not in p] == []


def test_an_analyst_acknowledges_and_the_trail_names_them(
    context: BrowserContext, server: ServerProcess
) -> None:
    page, watch = signed_in(context, server, "ann")
    sid = signal_id(server, "/var/tmp/.cache/curl")  # the masquerade
    page.goto(f"{server.url}/signals/{sid}")
    assert "Allow this" not in page.inner_text(".actions")  # exceptions are an admin's
    page.click("form[action$=acknowledge] button")
    page.wait_for_url("**done=acknowledged**")
    trail = page.inner_text("section.trail")
    assert "ann (session, 127.0.0.1)" in trail and "signal.acknowledge" in trail
    with sqlite3.connect(server.db) as conn:
        assert conn.execute(
            "SELECT acknowledged_by FROM signal_acks WHERE signal_id = ?", (sid,)
        ).fetchone() == ("ann",)
    assert watch.problems() == []


def test_a_broad_exception_needs_confirming_and_is_flagged(
    context: BrowserContext, server: ServerProcess
) -> None:
    page, watch = signed_in(context, server, "ada")
    sid = signal_id(server, "/usr/bin/bash")
    page.goto(f"{server.url}/signals/{sid}/allow")
    for field in ("path", "name", "host"):
        page.fill(f"input[name={field}]", "")
    page.fill("input[name=user]", "www-data")  # a user alone: pins no binary
    page.fill("input[name=reason]", "web team said so")
    page.fill("input[name=expires]", "soon")  # neither a duration nor a time
    page.click("form.allow button[type=submit]")
    page.wait_for_load_state()
    # the form comes back with what was typed and what is wrong (not a bare 400 page)
    assert "expires: 'soon' is neither a duration (30d, 12h) nor a time" in page.inner_text(
        ".error-line"
    )
    assert page.input_value("input[name=user]") == "www-data"
    assert page.input_value("input[name=reason]") == "web team said so"
    page.fill("input[name=expires]", "30d")
    page.click("form.allow button[type=submit]")
    page.wait_for_load_state()
    message = page.inner_text("main")
    assert "refused a broad exception" in message and "would have hidden" in message
    with sqlite3.connect(server.db) as conn:
        assert conn.execute(
            "SELECT count(*) FROM exceptions WHERE user = 'www-data'"
        ).fetchone() == (0,)
    assert page.input_value("input[name=path]") == ""  # still the form as typed
    page.check("input[name=broad]")
    page.click("form.allow button[type=submit]")
    page.wait_for_url(f"**/signals/{sid}?**")
    assert "exception #" in page.inner_text(".flash")
    page.goto(f"{server.url}/health")
    flagged = page.inner_text("#exceptions")
    assert "Broad exceptions in force" in flagged and "by ada: user www-data" in flagged
    page.goto(f"{server.url}/audit")
    rows = page.locator("table.audit tbody tr").all_inner_texts()
    assert any("ada" in row and "exception.add" in row for row in rows)
    with sqlite3.connect(server.db) as conn:
        assert conn.execute(
            "SELECT created_by, broad FROM exceptions WHERE user = 'www-data'"
        ).fetchone() == ("ada", 1)
    assert [p for p in watch.problems() if "400" not in p] == []


def test_the_home_page_says_learning_and_what_to_do(
    context: BrowserContext, tmp_path: Path
) -> None:
    """A new deployment's home page: "no data yet", then "Learning: 7/20 buckets" with
    the time left and what to do — not "0 signals in 0 groups" alone."""
    workdir = tmp_path / "learning"
    workdir.mkdir()
    with ServerProcess(workdir, tokens=()) as server:
        page = context.new_page()
        watch = Watch().attach(page)
        page.goto(f"{server.url}/")
        assert "No data yet." in page.inner_text("#learning")
        start = 1767225600  # 2026-01-01
        body = b"".join(
            socket_line(f"web-{n % 3}", start + n * 900 + 30, pid=700 + n, name="nginx", path="/usr/sbin/nginx")
            for n in range(7)
        )  # fmt: skip
        assert server.post(body, headers={}).status_code == 200
        with Store(server.db) as store:  # the scheduled run's fold, at the newest data
            detect_once(store, load_config(None, env={}).detect, start + 7 * 900)
        page.reload()
        said = page.inner_text("#learning")
        assert "Learning: 7/20 buckets of fleet history from 3 hosts" in said
        assert "no signal before 20 (about 3.2h of data to go)" in said
        assert "deploy the pack to the rest of the fleet" in said
        assert watch.problems() == []


def test_a_slack_messages_link_opens_its_signal_page(
    context: BrowserContext, server: ServerProcess
) -> None:
    """The `open:` link of the Slack message rarenet would send (`[server] public_url`
    set to this server) opens that very signal's page for a signed-in analyst."""
    sid = signal_id(server, "/usr/bin/bash")
    with Store(server.db) as store:
        message = slack_message(get_signal(store, sid), Links(server.url))["text"]
    opened = message.split("\n")[-1]
    assert opened.startswith("open: ")
    page, watch = signed_in(context, server, "ann")
    page.goto(opened.removeprefix("open: "))
    assert page.url == f"{server.url}/signals/{sid}"
    assert sid in page.inner_text("main") and "/usr/bin/bash" in page.inner_text("h1")
    assert watch.problems() == []


def test_a_signal_from_open_to_closed_as_a_false_positive_with_a_comment(
    context: BrowserContext, server: ServerProcess
) -> None:
    """Open → acknowledged → assigned → a comment → closed as a false positive; for an
    admin the exception form then opens prefilled for this binary on this host; the
    list and the JSON (a personal API token on /v1/signals) show the state."""
    sid = signal_id(server, "/tmp/.x/beacon")
    page, watch = signed_in(context, server, "ada")
    page.goto(f"{server.url}/signals/{sid}")
    assert page.inner_text("#triage-state") == "open"
    page.click("button#ack")
    page.wait_for_url("**done=acknowledged**")
    assert page.inner_text("#triage-state") == "acknowledged"
    page.select_option("form.assign select[name=assignee]", "ann")
    page.click("form.assign button[type=submit]")
    page.wait_for_url("**done=assigned**")
    assert page.inner_text("#triage-state") == "in progress (ann)"
    page.fill("form.comment textarea[name=text]", "the web team's health probe <b>x</b>")
    page.click("form.comment button[type=submit]")
    page.wait_for_url("**done=comment**")
    assert "ada" in page.inner_text("#comments") and "health probe <b>x</b>" in page.inner_text(
        "#comments"
    )
    page.fill("form.close input[name=comment]", "confirmed with the web team")
    page.click("form.close button[value=false_positive]")
    page.wait_for_url(f"**/signals/{sid}/allow?closed=false_positive")
    assert "Closed as a false positive" in page.inner_text(".flash")
    assert page.input_value("input[name=path]") == "/tmp/.x/beacon"
    assert page.input_value("input[name=host]") == host_of(server, sid)
    page.goto(f"{server.url}/signals?executable=beacon")
    assert "closed: false positive (ann)" not in page.inner_text("table.groups")
    assert "closed: false positive" in page.inner_text("table.groups")
    listed = requests.get(
        f"{server.url}/v1/signals",
        headers={"Authorization": f"Bearer {server.api_token('vic')}"},
        timeout=30,
    ).json()["signals"]
    mine = next(s for s in listed if s["id"] == sid)["triage"]
    assert (mine["state"], mine["resolution"], mine["assignee"], mine["comments"]) == (
        "closed", "false_positive", "ann", 2,
    )  # fmt: skip
    page.goto(f"{server.url}/signals/{sid}")
    assert "Close: true positive" not in page.inner_text(".actions")  # closed stays closed
    trail = page.inner_text("section.trail")
    for action in ("signal.acknowledge", "signal.assign", "signal.comment", "signal.close"):
        assert action in trail
    assert watch.problems() == []


def test_bulk_acknowledge_fifty_signals(context: BrowserContext, tmp_path: Path) -> None:
    """An analyst selects the 50 rows of the first page and acknowledges them at once;
    closed signals among them stay closed."""
    workdir = tmp_path / "bulk"
    workdir.mkdir()
    with Store(workdir / "rarenet.db") as store:
        ids = add_signals(store, 52, created_at=1768212000.0)
    with ServerProcess(workdir) as bulk:
        bulk.add_user("ann", "analyst")
        page, watch = signed_in(context, bulk, "ann")
        boxes = page.locator("input[type=checkbox][name=group]")
        assert boxes.count() == 50
        for n in range(50):
            boxes.nth(n).check()
        page.click("form#bulk button[value=acknowledge]")
        page.wait_for_url("**done=**")
        assert "acknowledge: 50 signal(s) changed" in page.inner_text(".flash")
        with Store(bulk.db) as store:
            states = dict(store.conn.execute("SELECT signal_id, state FROM signal_triage"))
        assert len(states) == 50 and set(states.values()) == {"acknowledged"}
        assert set(states) < set(ids)
        assert page.locator("table.groups .tag.triage").count() == 50
        assert watch.problems() == []


def test_inventory_pages_search_and_have_json_twins(
    context: BrowserContext, server: ServerProcess
) -> None:
    """Hosts, binaries (by any part of a path or name: `bas` finds /usr/bin/bash), the
    webhooks' delivery state, each with `?format=json`; an unknown host or binary says
    so and offers the search, with no empty plot."""
    page, watch = signed_in(context, server, "vic")
    page.goto(f"{server.url}/hosts")
    total = int(page.inner_text("#total-hosts"))
    page.fill("form.filters input[name=q]", "web-1")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**q=web-1**")
    names = page.locator("table.hosts tbody td:first-child a").all_inner_texts()
    assert names and all("web-1" in name for name in names) and len(names) < total
    page.goto(f"{server.url}/binaries?q=bas")
    paths = page.locator("table.binaries tbody td:first-child").all_inner_texts()
    assert "/usr/bin/bash" in paths and all("bas" in p for p in paths)
    page.goto(f"{server.url}/binaries?q=%25")  # a literal %, not "anything"
    assert page.inner_text("#total-binaries") == "0"
    page.goto(f"{server.url}/webhooks")
    assert "soc" in page.inner_text("table.webhooks") and "http" not in page.inner_text(
        "table.webhooks"
    )
    cookies = _cookies(context)
    hosts = requests.get(f"{server.url}/hosts?q=web-1&format=json", cookies=cookies, timeout=30)
    assert hosts.headers["content-type"] == "application/json"
    assert {h["host"] for h in hosts.json()["hosts"]} == set(names)
    found = requests.get(f"{server.url}/binaries?q=bas&format=json", cookies=cookies, timeout=30)
    assert any(b["path"] == "/usr/bin/bash" and b["hosts"] > 0 for b in found.json()["binaries"])
    hooks = requests.get(f"{server.url}/webhooks?format=json", cookies=cookies, timeout=30).json()
    assert [h["name"] for h in hooks["webhooks"]] == ["soc"]
    listed = requests.get(f"{server.url}/signals?format=json", cookies=cookies, timeout=30).json()
    assert listed["total_signals"] == sum(g["signals"] for g in listed["groups"])
    excepted = requests.get(f"{server.url}/exceptions?format=json", cookies=cookies, timeout=30)
    assert "exceptions" in excepted.json()
    flood = requests.post(
        f"{server.url}/signals/bulk", data=[("group", "a1")] * 300, cookies=cookies, timeout=30
    )
    assert flood.status_code == 413  # a form past its field cap is refused, never a 500
    page.goto(f"{server.url}/host?name=no-such-host")
    assert "Nothing is stored for this host" in page.inner_text("#unknown")
    assert page.locator("svg.plot").count() == 0
    page.click("#unknown a")
    page.wait_for_url("**/hosts?q=no-such-host")
    assert watch.problems() == []
