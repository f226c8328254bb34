"""The console's parts without a browser: inert text, filters, the allow form, sessions,
redirect targets, grouping and paging on a real store, and the headers and cookie of a
real `rarenet serve` without tokens (loopback only)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from support.serve_process import ServerProcess

from rarenet.baseline.access.audit import cli_principal
from rarenet.baseline.config import load_config
from rarenet.baseline.console import pages, views
from rarenet.baseline.console.inert import MAX_SHOWN, inert
from rarenet.baseline.console.render import binary_anchor, render
from rarenet.baseline.console.session import Sessions
from rarenet.baseline.console.web import _local, exception_from_form
from rarenet.baseline.detect.exceptions import Exception_, add_exception, list_exceptions
from rarenet.baseline.errors import InputError
from rarenet.baseline.store import Store


def test_inert_shows_invisible_and_direction_characters() -> None:
    assert inert("evil\u202etxt.exe") == "evil\\u202etxt.exe"
    assert inert("a\x1b[31mb\x00c\x7f") == "a\\x1b[31mb\\x00c\\x7f"
    assert inert("zero\u200bwidth\ufeff\u2066x\u2069") == "zero\\u200bwidth\\ufeff\\u2066x\\u2069"
    assert inert("tag\U000e0041") == "tag\\U000e0041"
    assert inert("tab\tand\nnewline stay") == "tab\tand\nnewline stay"
    assert inert("caf\udce9") == "caf\ufffd"  # a lone surrogate (undecodable byte) is replaced
    long = inert("x" * (MAX_SHOWN + 10))
    assert long.startswith("x" * MAX_SHOWN) and long.endswith("(+10 characters)")
    assert inert(42) == "42"


def test_templates_escape_every_value() -> None:
    html = render("error.html", session=None, status=400, message='<img src=x onerror="1">\u202e')
    assert "<img" not in html and "&lt;img src=x onerror=&#34;1&#34;&gt;\\u202e" in html


def test_binary_anchor_is_a_safe_fragment() -> None:
    anchor = binary_anchor('/tmp/"><script>')
    assert anchor.startswith("binary-") and anchor[7:].isalnum() and len(anchor) == 19


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ({"state": "bogus"}, "state"),
        ({"ack": "maybe"}, "ack"),
        ({"min_score": "high"}, "min_score"),
        ({"min_score": "101"}, "min_score"),
        ({"since": "yesterday-ish"}, "since"),
        ({"before": "soon"}, "before"),
        ({"host": "h" * 201}, "host"),
    ],
)
def test_bad_filters_name_the_parameter(query: dict[str, str], where: str) -> None:
    with pytest.raises(InputError) as caught:
        views.SignalFilter.parse(query)
    assert caught.value.where == where


def test_filters_round_trip_through_the_query_string() -> None:
    filters = views.SignalFilter.parse(
        {
            "state": "dead",
            "host": "web",
            "min_score": "60",
            "since": "2026-01-08T00:00:00Z",
            "ack": "open",
        }
    )
    assert filters.since == 1767830400 and filters.min_score == 60
    again = views.SignalFilter.parse(filters.query())
    assert again == filters
    older = filters.query(after=views.Cursor(1767830400.25, "3f2a~b").text)
    assert views.SignalFilter.parse(older).after == views.Cursor(1767830400.25, "3f2a~b")
    assert "after" not in views.SignalFilter.parse(older).query(after="")


@pytest.mark.parametrize("raw", ["12", "x~g", "nan~g", "5~", "~g", "5~" + "g" * 300])
def test_a_cursor_that_is_not_a_place_in_the_list_is_refused_by_name(raw: str) -> None:
    with pytest.raises(InputError) as caught:
        views.SignalFilter.parse({"after": raw})
    assert caught.value.where == "after"


def _walk(store: Store, filters: views.SignalFilter, per_page: int) -> list[list[str]]:
    """Every page from the newest, following the "older" cursor (bounded)."""
    pages: list[list[str]] = []
    for _ in range(100):
        page = views.signals_page(store, filters, per_page=per_page)
        pages.append([g.id for g in page.groups])
        if page.older is None:
            return pages
        filters = replace(filters, after=page.older, before=None)
    raise AssertionError("the list did not end")


@pytest.mark.parametrize("filtered", ["none", "host", "score"])
def test_keyset_pages_cover_every_group_once_with_ties_and_new_signals(
    tmp_path: Path, filtered: str
) -> None:
    with Store(tmp_path / "r.db") as store:
        for g in range(23):  # groups of 4 share a time: ties are broken by the group id
            _signal(store, f"s{g:03d}", "web-1", f"/tmp/x{g}", f"g{g:03d}", 5000.0 + g // 4)
        filters = views.SignalFilter(
            host="web" if filtered == "host" else "",
            min_score=50 if filtered == "score" else None,
        )
        first = views.signals_page(store, filters, per_page=5)
        # a signal arriving between pages goes on top: the pages read on do not shift
        _signal(store, "late", "web-1", "/tmp/late", "glate", 9000.0)
        rest = _walk(store, replace(filters, after=first.older), per_page=5)
        pages = [[g.id for g in first.groups], *rest]
        seen = [gid for ids in pages for gid in ids]
        assert sorted(seen) == [f"g{g:03d}" for g in range(23)] and len(seen) == 23
        assert [len(ids) for ids in pages] == [5, 5, 5, 5, 3]
        assert _walk(store, filters, per_page=5)[0][0] == "glate"


def test_a_score_filter_alone_counts_as_any_other_filter(tmp_path: Path) -> None:
    """The score filter reads groups by index (their highest score); its rows and totals
    are those of the general filtered read, signal for signal."""
    with Store(tmp_path / "r.db") as store:
        for g in range(12):  # group g: g % 4 + 1 signals scoring 40, 60, 80, 100 …
            for i in range(g % 4 + 1):
                _signal(store, f"s{g:02d}{i}", f"web-{i % 2}", f"/tmp/x{g}", f"g{g:02d}",
                        1000.0 + g * 10 + i, score=40 + 20 * i)  # fmt: skip
        for cut in (0, 55, 75, 95, 101):
            fast = views.signals_page(store, views.SignalFilter(min_score=cut))
            general = views.signals_page(store, views.SignalFilter(min_score=cut, host="web"))
            assert views.SignalFilter(min_score=cut).score_only
            assert not views.SignalFilter(min_score=cut, host="web").score_only
            assert (fast.total_signals, fast.total_groups) == (
                general.total_signals, general.total_groups,
            )  # fmt: skip
            rows = {(g.id, g.signals, g.hosts, g.max_score, tuple(m.id for m in g.members))
                    for g in fast.groups}  # fmt: skip
            assert rows == {(g.id, g.signals, g.hosts, g.max_score, tuple(m.id for m in g.members))
                            for g in general.groups}  # fmt: skip


@pytest.mark.parametrize("kind", ["rollout", "host"])
def test_a_signal_page_says_what_is_counted_on_it_not_alone(tmp_path: Path, kind: str) -> None:
    """A rollout's one signal has no other signal in its group and its further hosts
    counted on it: the page says both, never "alone" beside "one signal for the whole
    rollout"."""
    with Store(tmp_path / "r.db") as store:
        _signal(store, "s1", "web-1", "/opt/vector/bin/vector", "s1", 1_767_571_200.0)
        store.conn.execute(
            "UPDATE signals SET suppressed_count = 7, document = json_set(document, '$.kind', ?) "
            "WHERE id = 's1'",
            (kind,),
        )
        view = pages.signal_view(store, load_config(None, env={}), "s1")
        html = render("signal.html", session=None, me=cli_principal(), view=view, trail=[],
                      flash="", webhooks=())  # fmt: skip
    group = html.split('<td id="group">', 1)[1].split("</td>", 1)[0]
    assert "alone" not in group and "no other signal; 7 candidates counted on this one" in group
    assert ("one signal for the whole rollout" in group) is (kind == "rollout")
    assert '<td id="peers">none: no host uses mostly the same paths' in html


def test_the_allow_form_becomes_an_exception() -> None:
    entry = exception_from_form(
        {"path": "/tmp/.x/*", "host": "web-0?", "port": "4444", "expires": "7d", "reason": "lab"},
        now=1000.0,
    )
    assert (entry.path_glob, entry.host, entry.port, entry.expires_at) == (
        "/tmp/.x/*", "web-0?", 4444, 1000 + 7 * 86400,
    )  # fmt: skip
    assert entry.name is None and entry.user is None  # empty fields match anything
    at = exception_from_form({"path": "/x", "expires": "2030-01-01T00:00:00Z", "reason": "r"}, 0)
    assert at.expires_at == 1893456000


@pytest.mark.parametrize(
    ("form", "where"),
    [
        ({"path": "/x"}, "reason"),
        ({"path": "/x", "reason": "r", "port": "http"}, "port"),
        ({"path": "/x", "reason": "r", "expires": "soon"}, "expires"),
        ({"path": "/x", "reason": "r" * 501}, "reason"),
    ],
)
def test_a_bad_allow_form_names_the_field(form: dict[str, str], where: str) -> None:
    with pytest.raises(InputError) as caught:
        exception_from_form(form, 0)
    assert caught.value.where == where


def test_sessions_expire_and_are_bounded() -> None:
    sessions = Sessions(ttl=60, limit=3)
    first = sessions.create(now=0)
    assert sessions.get(first.id, now=59) == first
    assert sessions.get(first.id, now=60) is None  # expired and dropped
    made = [sessions.create(now=100) for _ in range(4)]
    assert sessions.get(made[0].id, now=101) is None  # the oldest went first
    assert all(sessions.get(s.id, now=101) for s in made[1:])
    assert made[1].csrf_ok(made[1].csrf) and not made[1].csrf_ok(made[2].csrf)
    assert not made[1].csrf_ok(None) and not made[1].csrf_ok("")
    assert sessions.get(None) is None and sessions.get("x" * 500) is None
    sessions.end(made[1].id)
    assert sessions.get(made[1].id, now=101) is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/signals?host=a", "/signals?host=a"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("signals", "/"),
    ],
)
def test_login_redirects_stay_on_this_server(target: str, expected: str) -> None:
    assert _local(target) == expected


def _signal(
    store: Store, sid: str, host: str, path: str, group: str, created: float, score: float = 70
) -> None:
    document = {"reason": f"{path} on {host}", "kind": "host", "group": group}
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO signals (id, rule, host, name, path, bucket, created_at, score, "
            "initial_score, document, suppressed_count, group_id) "
            "VALUES (?, 'r', ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (sid, host, Path(path).name, path, int(created) // 900 * 900, created, score, score,
             orjson.dumps(document).decode(), group),
        )  # fmt: skip


def test_signals_are_grouped_and_paged(tmp_path: Path) -> None:
    with Store(tmp_path / "r.db") as store:
        for g in range(60):  # 60 groups, the first with 3 hosts
            for h in range(3 if g == 0 else 1):
                _signal(
                    store,
                    f"s{g:03d}{h}",
                    f"web-{h}",
                    f"/tmp/x{g}",
                    f"g{g:03d}",
                    1000.0 + g * 10 + h,
                )
        page = views.signals_page(store, views.SignalFilter())
        assert (page.total_signals, page.total_groups) == (62, 60)
        assert len(page.groups) == views.PAGE_GROUPS and page.has_more
        assert page.groups[0].id == "g059"  # newest first
        second = views.signals_page(store, views.SignalFilter(after=page.older))
        assert len(second.groups) == 10 and not second.has_more
        assert second.newer == views.Cursor(second.groups[0].latest, second.groups[0].id)
        back = views.signals_page(store, views.SignalFilter(before=second.newer))
        assert [g.id for g in back.groups] == [g.id for g in page.groups]
        assert back.newer is None and back.older == page.older
        first_group = second.groups[-1]
        assert (first_group.id, first_group.signals, first_group.hosts) == ("g000", 3, 3)
        assert [m.host for m in first_group.members] == ["web-2", "web-1", "web-0"]
        only = views.signals_page(store, views.SignalFilter(host="web-2"))
        assert [g.id for g in only.groups] == ["g000"] and only.groups[0].signals == 1
        assert views.acknowledge(store, "s0000", 5.0) and not views.acknowledge(store, "s0000", 6.0)
        with pytest.raises(InputError, match="no signal 'nope'"):
            views.acknowledge(store, "nope", 5.0)
        with pytest.raises(InputError, match="verdict must be one of benign, attack"):
            views.acknowledge(store, "s0001", 5.0, verdict="maybe")
        assert views.acknowledge(store, "s0002", 5.0, verdict="benign")
        assert (
            views.verdict_of(store, "s0002") == "benign"
            and views.verdict_of(store, "s0000") is None
        )
        acked = views.signals_page(store, views.SignalFilter(ack="acknowledged"))
        assert acked.total_signals == 2 and acked.groups[0].lead.acknowledged
        assert views.signals_page(store, views.SignalFilter(ack="open")).total_signals == 60


@pytest.mark.slow
def test_without_tokens_the_first_visit_opens_a_session(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, tokens=()) as server:
        page = requests.get(f"{server.url}/", timeout=30)
        assert page.status_code == 200 and '<span id="total-signals">0</span> signals' in page.text
        cookie = page.headers["set-cookie"]
        assert "rarenet_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        headers = page.headers
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
        login = requests.get(f"{server.url}/login", timeout=30, allow_redirects=False)
        assert login.status_code == 200  # no user yet: it says how to make the first admin
        assert "rarenet users add NAME --role admin" in login.text
        assert "anonymous · read-only" in page.text  # no named user: reading only
        assert "no console users yet: make the first admin with" in server.output()
        health = requests.get(f"{server.url}/health", timeout=30)
        assert "learning: 0/20 buckets" in health.text
        # Even without tokens a state change needs the session's CSRF token.
        refused = requests.post(f"{server.url}/logout", cookies=page.cookies, timeout=30)
        assert refused.status_code == 403


@pytest.mark.parametrize(
    ("history", "schedule", "said"),
    [
        ({"days_on_host_before": 0, "days_at_least": False, "first_used_on_host": None}, None,
         "first use on this host (memory: a year)"),
        ({"days_on_host_before": 32, "days_at_least": True,
          "first_used_on_host": "2026-01-01T02:00:00Z"},
         {"every": "monthly", "occurrence": 4}, "used on this host on 32+ day(s) since "
         "2026-01-01T02:00:00Z; recurs monthly, occurrence 4"),
        (None, None, "not asked"),
    ],
)  # fmt: skip
def test_a_signal_page_answers_new_or_on_a_schedule(
    tmp_path: Path, history: Any, schedule: Any, said: str
) -> None:
    """The investigation guide's "history of execution": the page says what the long
    memory knew of this binary on this host (docs/scoring.md "Schedules")."""
    with Store(tmp_path / "r.db") as store:
        _signal(store, "s1", "db-1", "/usr/bin/pgbackrest", "s1", 1_767_571_200.0)
        store.conn.execute(
            "UPDATE signals SET document = json_set(document, '$.explanation', json(?)) "
            "WHERE id = 's1'",
            (json.dumps({"history": history, "schedule": schedule}),),
        )
        view = pages.signal_view(store, load_config(None, env={}), "s1")
        html = render("signal.html", session=None, me=cli_principal(), view=view, trail=[],
                      flash="", webhooks=())  # fmt: skip
    assert html.split('<td id="history">', 1)[1].split("</td>", 1)[0] == said


@pytest.mark.parametrize(
    ("user", "said"),
    [
        ({"name": "www-data", "ran_it_before": True, "usual": ["www-data"]},
         "— ran it on this host before"),
        ({"name": "www-data", "ran_it_before": False, "usual": ["root", "backup"]},
         "— a first for this user here; usual: root, backup"),
    ],
)  # fmt: skip
def test_a_signal_page_says_whether_the_user_ran_it_before(
    tmp_path: Path, user: dict[str, Any], said: str
) -> None:
    with Store(tmp_path / "r.db") as store:
        _signal(store, "s1", "web-1", "/usr/bin/perl", "s1", 1_767_571_200.0)
        store.conn.execute(
            "UPDATE signals SET document = json_set(document, '$.explanation', json(?)) "
            "WHERE id = 's1'",
            (json.dumps({"user": user}),),
        )
        view = pages.signal_view(store, load_config(None, env={}), "s1")
        html = render("signal.html", session=None, me=cli_principal(), view=view, trail=[],
                      flash="", webhooks=())  # fmt: skip
    assert html.split('<td id="user">', 1)[1].split("</td>", 1)[0].endswith(said)


def test_the_exceptions_page_searches_every_field_and_reason(tmp_path: Path) -> None:
    with Store(tmp_path / "e.db") as store:
        add_exception(store, Exception_(0, path_glob="/opt/agent/*", reason="our 100% agent"))
        add_exception(store, Exception_(0, host="db-0?", path_glob="/usr/bin/borg",
                                        reason="nightly backups"))  # fmt: skip
        assert [e["id"] for e in list_exceptions(store, "agent")] == [1]
        assert [e["id"] for e in list_exceptions(store, "db-0")] == [2]  # the host glob
        assert [e["id"] for e in list_exceptions(store, "%")] == [1]  # a literal %
        assert [e["id"] for e in list_exceptions(store, "")] == [1, 2]
        found = list_exceptions(store, "backup")
    html = render("exceptions.html", session=None, me=cli_principal(), entries=found, now=0,
                  query="backup")  # fmt: skip
    assert "/usr/bin/borg" in html and "/opt/agent" not in html and 'value="backup"' in html
