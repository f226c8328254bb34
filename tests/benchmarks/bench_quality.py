"""Detection quality per scenario family, rarenet beside two reference detectors:
3 seeds x 2 fleet sizes of `rarenet simulate --scenarios all` (7 days each), 3
held-out seeds at a third size that were never looked at while the rule was tuned, and
3 small, long-running fleets (16 hosts, 76 days: one host is 6 % of them); writes
docs/quality.md. The references and the scoring of every detector are in
tests/support/quality_eval.py (name-only rare, Elastic's keying; new terms on the executable).

Goals (issues 11 and 28): recall 1.0 on spreading implants (every host), on both hosts
of a twice-used tool, on never-seen and masquerading binaries, child-held shells and
attackers returning to a host; >= 0.9 on host novelty; <= 0.5 false signals per 100
host-days; each rollout <= 1 signal. Issue 29: the 60-host fleets replayed in arrival
order (laptops offline, attacks whose results arrive hours late, outages) keep every
family's recall and raise no more than 10 % more false signals. Issue 31: a scheduled
job (weekly, monthly, quarterly) raises no signal from its second run on.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from report import table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.quality_eval import (
    DETECTORS,
    FAMILIES,
    FleetQuality,
    Hit,
    measure,
    per_100_host_days,
    summarise,
)

from rarenet.baseline.units import parse_time

DOC = Path(__file__).resolve().parents[2] / "docs" / "quality.md"
SEEDS = (1, 2, 3)
SIZES = (60, 150)
HELD_OUT = (100, (11, 12, 13))  # a size and seeds never used while tuning the rule
SMALL = (16, (21, 22, 23), 76.0)  # small and long-running: hosts, seeds, days
LATE = 60  # the fleets of this size again, replayed in arrival order (issue 29)
LATE_TITLE = f"{LATE} hosts, in arrival order"
DAYS = 7.0


def _recall(caught: int, labelled: int) -> str:
    return f"{caught}/{labelled} ({caught / labelled:.2f})" if labelled else "—"


def _section(title: str, fleets: list[FleetQuality]) -> list[str]:
    summary = summarise(fleets)
    rows = [["family", *DETECTORS]]
    for family in FAMILIES:
        rows.append([family, *(_recall(*summary["recall"][(d, family)]) for d in DETECTORS)])
    rows.append(
        [
            "false signals (per 100 host-days)",
            *(f"{n} ({rate:.2f})" for n, rate in (summary["false"][d] for d in DETECTORS)),
        ]
    )
    rows.append(
        [
            "most signals for one rollout (JDK included)",
            *(str(summary["rollout_max"][d]) for d in DETECTORS),
        ]
    )
    rows.append(
        ["most signals for one new weekly job", *(str(summary["weekly_max"][d]) for d in DETECTORS)]
    )
    rows.append(
        [
            "most signals for one app users installed",
            *(str(summary["user-app_max"][d]) for d in DETECTORS),
        ]
    )
    rows.append(
        [
            f"scheduled jobs ({summary['scheduled_jobs']} host-jobs): signals at a first run "
            "/ from the second run on",
            *(" / ".join(map(str, summary["scheduled"][d])) for d in DETECTORS),
        ]
    )
    per_rollout = ["signals per rollout (rarenet)"]
    counts: dict[str, list[int]] = {}
    for fleet in fleets:
        for path, n in fleet.benign_signals("rarenet", "rollout").items():
            counts.setdefault(path, []).append(n)
    per_rollout.append(", ".join(f"`{p}` {c}" for p, c in sorted(counts.items())))
    false = ", ".join(
        f"seed {f.seed}: {f.false_signals('rarenet')} in {f.host_days:,.0f} host-days"
        for f in fleets
    )
    return [
        f"## {title}",
        "",
        f"{len(fleets)} fleets, {summary['host_days']:,.0f} host-days after warm-up. Recall is "
        "caught/labelled over all seeds.",
        "",
        table(rows),
        "",
        f"{per_rollout[0]}, as a list over the seeds: {per_rollout[1]}.",
        "",
        f"rarenet's false signals per fleet: {false}.",
        "",
    ]


def _measure_all(workdir: Path) -> dict[str, list[FleetQuality]]:
    """Every fleet, two at a time (2 cores; each fleet is CPU-bound Python)."""
    plan = {f"{size} hosts": [(size, seed) for seed in SEEDS] for size in SIZES}
    size, seeds = HELD_OUT
    plan[f"{size} hosts, held out"] = [(size, seed) for seed in seeds]
    small, small_seeds, small_days = SMALL
    days = dict.fromkeys(plan, DAYS)
    title = f"{small} hosts, {small_days:g} days"
    plan[title], days[title] = [(small, seed) for seed in small_seeds], small_days
    plan[LATE_TITLE], days[LATE_TITLE] = [(LATE, seed) for seed in SEEDS], DAYS
    for title in plan:
        (workdir / _folder(title)).mkdir()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        # the long fleets first: they take longest
        order = sorted(plan, key=lambda t: -days[t])
        runs = {
            title: [
                pool.submit(measure, n, days[title], seed, workdir / _folder(title),
                            title == LATE_TITLE)
                for n, seed in plan[title]
            ]
            for title in order
        }  # fmt: skip
        return {title: [run.result() for run in runs[title]] for title in plan}


def _folder(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title)


def _late_section(on_time: list[FleetQuality], late: list[FleetQuality]) -> list[str]:
    """The same fleets on time and in arrival order, per family and detector."""
    before, after = summarise(on_time), summarise(late)
    rows = [["family", *(f"{d}: on time → arrival order" for d in DETECTORS)]]
    for family in FAMILIES:
        rows.append(
            [
                family,
                *(
                    f"{_recall(*before['recall'][(d, family)])} → "
                    f"{_recall(*after['recall'][(d, family)])}"
                    for d in DETECTORS
                ),
            ]
        )
    rows.append(
        [
            "false signals",
            *(f"{before['false'][d][0]} → {after['false'][d][0]}" for d in DETECTORS),
        ]
    )
    lags = [
        doc["arrival"]["lag_seconds"]
        for fleet in late
        for doc in fleet.documents
        if any(fleet.detectors["rarenet"].matches(label, hit) for label in fleet.labels
               for hit in [_hit(doc)])
    ]  # fmt: skip
    late_caught = sum(lag > 3600 for lag in lags)
    return [
        "## Late data: the same fleets in arrival order",
        "",
        f"The {LATE}-host fleets above, replayed as the live service would receive them "
        "(`rarenet simulate --arrivals`, `rarenet backtest --arrivals`): developer laptops "
        "offline 1–12 h about once in three days, every second attack on a host that is "
        "offline around it (its results arrive 1–5 h late), a one-hour rarenet outage and "
        "a two-hour Fleet outage whose buffered results arrive afterwards. rarenet scores "
        'each host-bucket when its data arrives (docs/scoring.md "Late data"); the '
        "references, like Elastic's rules, analyse a bucket once, with the data that "
        "arrived within their 45-minute look-back.",
        "",
        table(rows),
        "",
        f"{late_caught} of rarenet's {len(lags)} true signals in arrival order came from "
        "data that arrived more than an hour after its bucket ended.",
        "",
    ]


def _hit(doc: dict[str, Any]) -> Any:

    return Hit(
        doc["host"]["name"],
        doc["process"]["name"],
        doc["process"]["executable"] or "",
        parse_time(doc["bucket"]["start"]),
    )


def _reading(everything: list[FleetQuality]) -> list[str]:
    """What the tables say, in sentences whose numbers come from this run."""
    summary = summarise(everything)
    worst_rollout = summary["rollout_max"]
    false = [doc for fleet in everything for doc in fleet.false_documents()]
    home = sum(d["process"]["executable"].startswith("/home/") for d in false)
    novelty = [d for d in false if d["explanation"]["decided_by"] == "host novelty"]
    sshd = sum(d["process"]["name"] == "sshd" for d in novelty)
    other = len(false) - home - len(novelty)
    rate = summary["false"]["rarenet"][1]
    bash = [
        d
        for fleet in everything
        for d in fleet.documents
        if d["process"]["name"] == "bash" and d["explanation"]["decided_by"] == "host novelty"
    ]
    young = sum(d["explanation"]["host"]["maturity"] < 1 for d in bash)
    fresh = sum(bool(d["explanation"]["host"]["fresh_destination"]) for d in bash)
    caught, labelled = summary["recall"][("rarenet", "host-novelty")]
    scheduled = summary["scheduled"]["rarenet"]
    jdk = [
        n
        for fleet in everything
        for path, n in fleet.benign_signals("rarenet", "rollout").items()
        if "java" in path
    ]
    return [
        "## Reading the tables",
        "",
        "* **spread**: name-only rare and new terms signal the first host of an implant and "
        "then go quiet (the name or path is no longer rare or new), so they miss most hosts "
        "reached later. rarenet keeps a path seen for less than a day at near-full rarity "
        "(its *tenure*) and suppresses per host, so every host is a signal in one group.",
        "* **repeat**: new terms cannot fire twice for one path; name-only rare fires again "
        "only while the name stays under 1 % of buckets. rarenet adds host novelty.",
        f"* **returning**: rarenet caught {_recall(*summary['recall'][('rarenet', 'returning')])} "
        "returns: a binary with an open signal stays a suspect on its host, so its first "
        "visit is neither habit nor fleet presence, and a return after a quiet day is a "
        'new signal in the first visit\'s group (docs/scoring.md "Returning attackers"). '
        "New terms never fires twice for a path; name-only rare fires again while the name "
        "stays under 1 % of buckets.",
        "* **masquerade**: a trusted name (sshd, kworker, curl) in /dev/shm or /var/tmp is "
        "routine by name, so name-only rare misses it by design; rarenet's path key and new "
        "terms see it.",
        f"* **host-novelty**: rarenet caught {caught} of {labelled} bash web shells; the "
        f"references catch none (a common name or path is never rare or new to them). "
        f"{young} of rarenet's {len(bash)} bash host-novelty signals came from hosts with "
        f"less than 3 days of their own history, {fresh} of them with a fresh destination "
        "(d: the shell holds a socket to an address no bash in the fleet used — "
        'docs/scoring.md "Shells and their destinations"); without d those score 60·m, '
        "under the threshold.",
        f"* **rollouts**: name-only rare and new terms signal every host of the first wave "
        f"(up to {worst_rollout['name-only rare']} and {worst_rollout['new terms (path)']} "
        f"signals for one program); rarenet raises at most {worst_rollout['rarenet']} per "
        f"rollout. The JDK upgrade, which reaches CI runners one by one over days, raised "
        f"{jdk} signals per fleet — at most one: its first runner's, later runners counted "
        "on it (an *upgrade*: a known program at a new package path in its first week); none "
        "where the new java talks to the repository the fleet's java already uses (a "
        "familiar destination quiets its first runner, and a rollout never signals louder "
        'than its hosts would: docs/scoring.md "Rollouts and lateral spread").'
        f"* **scheduled jobs**: rarenet raised {scheduled[0]} signals at a host's first run "
        f"of a job and {scheduled[1]} from its second run on ({summary['scheduled_jobs']} "
        "host-jobs): the long memory recognises a weekly, monthly or quarterly run from the "
        "second one, and a familiar destination or a peer's routine often quiets the first "
        '(docs/scoring.md "Schedules", "Peers"). Name-only rare signals '
        f"{summary['scheduled']['name-only rare'][1]} later runs; new terms fires once per "
        "path for the whole fleet.",
        f"* **apps users install**: at most {summary['user-app_max']['rarenet']} signal(s) "
        "for one app across a fleet (new terms: "
        f"{summary['user-app_max']['new terms (path)']}, a new path per developer's home): "
        'an app\'s first workstation is judged on its own ("newly installed?" for /opt, '
        "quiet where it talks where the fleet talks); a later workstation where a person starts "
        "it in its first week is counted on that signal, or a peer that runs it speaks for it "
        '(docs/scoring.md "Apps people install").'
        f"* **false signals**: rarenet {rate:.2f} per 100 host-days over all fleets (goal "
        f"{FALSE_GOAL} on every fleet), beside {summary['false']['name-only rare'][1]:.2f} for name-only rare and "
        f"{summary['false']['new terms (path)'][1]:.2f} for new terms, whose counts exclude "
        f"their signals of benign scenario programs. rarenet's {len(false)}: never-seen tools "
        f"users installed in their home directories, {home} (score 88; the references raise "
        f"these too); host novelty — a binary common on some hosts used for the first time "
        f"on a mature one — {len(novelty)} (`sshd` accepting a first session: {sshd}); "
        f"other, {other}.{_lower_false(summary)}",
        _where_a_reference_wins(summary),
        "",
    ]


def _where_a_reference_wins(summary: dict[str, Any]) -> str:
    """The rows where a reference detector does better than rarenet, and why."""
    ours = summary["scheduled"]["rarenet"][0]
    fewer = {
        d: summary["scheduled"][d][0] for d in DETECTORS[1:] if summary["scheduled"][d][0] < ours
    }
    if not fewer:
        return (
            "* **where a reference beats rarenet**: nowhere in these fleets — no reference "
            "catches more of any family, and none raises fewer signals on any benign row."
        )
    named = " and ".join(f"{d} ({n})" for d, n in fewer.items())
    return (
        f"* **where a reference beats rarenet**: a scheduled job's first runs — {named} "
        f"against rarenet's {ours}. They fire once per name or path for the whole fleet, so a "
        "job reaching six hosts one by one costs them one signal, and rarenet up to one per "
        "host where no familiar destination or peer speaks for it. The same property is why "
        "they miss a spreading implant's later hosts and a repeated tool (the tables above); "
        "rarenet chooses to see each host."
    )


def _lower_false(summary: dict[str, Any]) -> str:
    """Where a reference raises fewer false signals than rarenet, the sentence saying why."""
    ours = summary["false"]["rarenet"][1]
    lower = [d for d in DETECTORS[1:] if summary["false"][d][1] < ours]
    if not lower:
        return ""
    return (
        f" {' and '.join(lower)} raise fewer: they fire once per name or path for the whole "
        "fleet (every host using it in that bucket, then never again), so a tool that users "
        "install on a second host on another day is not signalled again — which is also why "
        "they miss the second host of a repeated tool and most hosts of a spreading implant."
    )


def _late_goals(on_time: list[FleetQuality], late: list[FleetQuality]) -> list[str]:
    """Issue 29: in arrival order, rarenet's recall on every family as on time, and no
    more than 10 % more false signals."""
    before, after = summarise(on_time), summarise(late)
    missed = []
    for family in FAMILIES:
        if after["recall"][("rarenet", family)] != before["recall"][("rarenet", family)]:
            was, now = before["recall"][("rarenet", family)], after["recall"][("rarenet", family)]
            missed.append(f"{family} in arrival order: {_recall(*now)} (on time {_recall(*was)})")
    was, now = before["false"]["rarenet"][0], after["false"]["rarenet"][0]
    if now > 1.1 * was:
        missed.append(f"false signals in arrival order: {now} (on time {was})")
    return missed


def _goals(everything: list[FleetQuality], small: list[FleetQuality]) -> list[str]:
    """The goals that this run misses (empty: all met). The false-signal rate is judged
    on the fleets of issue 11; the small, long-running fleets' rate is an open goal
    (`_open_goals`, issue 31)."""
    summary: dict[str, Any] = summarise(everything)
    missed = []
    for family in ("spread", "repeat", "never-seen", "masquerade", "child-shell", "returning"):
        caught, labelled = summary["recall"][("rarenet", family)]
        if caught != labelled:
            missed.append(f"{family}: {caught}/{labelled}")
    caught, labelled = summary["recall"][("rarenet", "host-novelty")]
    if caught < 0.9 * labelled:
        missed.append(f"host-novelty: {caught}/{labelled}")
    rate = summarise([f for f in everything if all(f is not g for g in small)])["false"]["rarenet"][
        1
    ]
    if rate > 0.5:
        missed.append(f"false signals: {rate:.2f} per 100 host-days")
    if summary["rollout_max"]["rarenet"] > 1:
        missed.append(f"a rollout raised {summary['rollout_max']['rarenet']} signals")
    later = summary["scheduled"]["rarenet"][1]
    if later:
        missed.append(f"scheduled jobs raised {later} signals from their second run on")
    return missed


FALSE_GOAL = 0.3  # false signals per 100 host-days on every fleet (issue 31)


def _open_goals(everything: list[FleetQuality]) -> str:
    """Issue 31's goal, fleet by fleet: at most FALSE_GOAL false signals per 100
    host-days; the fleets over it, with their rates."""
    over = [
        f"{f.hosts} hosts seed {f.seed}: {per_100_host_days(f.false_signals('rarenet'), f.host_days):.2f}"
        for f in everything
        if per_100_host_days(f.false_signals("rarenet"), f.host_days) > FALSE_GOAL
    ]
    if not over:
        return f"none (every fleet at or under {FALSE_GOAL} false signals per 100 host-days)"
    return (
        f"at most {FALSE_GOAL} false signals per 100 host-days on every fleet: "
        f"{len(everything) - len(over)} of {len(everything)} fleets meet it; over it: "
        + ", ".join(over)
    )


def test_quality(tmp_path: Path) -> None:
    started = time.perf_counter()
    sections = _measure_all(tmp_path)
    seconds = time.perf_counter() - started
    late = sections.pop(LATE_TITLE)
    on_time = sections[f"{LATE} hosts"]
    everything = [fleet for fleets in sections.values() for fleet in fleets]
    small_fleets = sections[f"{SMALL[0]} hosts, {SMALL[2]:g} days"]
    missed = _goals(everything, small_fleets) + _late_goals(on_time, late)
    size, held = HELD_OUT
    small, small_seeds, small_days = SMALL
    lines = [
        "# Detection quality",
        "",
        "Written by `make bench` (tests/benchmarks/bench_quality.py) in one run: "
        f"`rarenet simulate --scenarios all --days {DAYS:g}` for seeds {', '.join(map(str, SEEDS))} "
        f"at {' and '.join(map(str, SIZES))} hosts, and for held-out seeds "
        f"{', '.join(map(str, held))} at {size} hosts (never looked at while the rule was "
        f"tuned), and `--days {small_days:g}` for seeds {', '.join(map(str, small_seeds))} at "
        f"{small} hosts (small and long-running), each backtested with default settings "
        "(15-minute buckets, 45-minute look-back every 15 minutes, threshold 50, 14-day history, "
        "20 warm-up buckets). Beside rarenet, on the same observations, two reference detectors "
        "written in a few lines each (tests/support/quality_eval.py): **name-only rare** — Elastic's "
        "keying for this rule: a process name seen in < 1 % of the earlier 15-minute buckets "
        "(after 20) signals every host using it in that bucket — and **new terms (path)**: the "
        "first bucket in 14 days in which an executable path appears anywhere signals every "
        "host using it then. All three get the same 24-hour suppression per host and key.",
        "",
        "Families (docs/scoring.md, baseline/simulate/families.py): never-seen system "
        "binaries (nc, socat, perl, gawk, openssl, telnet, a /tmp beacon); masquerade (a "
        "trusted name in a writable place); host-novelty (bash on a web server); spread (an "
        "implant in a hidden directory on 2–5 hosts across roles, hops 20 min–3 h); repeat "
        "(a classic tool used again on another host 1–3 days later); child-shell (`bash -c "
        "'exec 3<>/dev/tcp/…; sleep 600'`, the socket reported for `sleep`); returning (the "
        "same tool back on the same host after a quiet day, up to a week after a first "
        "visit: a dropper or masquerade in a volatile or hidden place, a system binary, the "
        "bash web shell). Benign: package "
        "rollouts in 3–5 waves within 20 h to 30–100 % of the hosts, new weekly jobs on "
        "several hosts at once, scheduled jobs (a weekly backup, a monthly log archive from "
        "/usr/local, a monthly borg backup, a quarterly certificate renewal) reaching up to "
        "6 hosts of some roles one by one over the run's first quarter, each host at its own "
        "weekday or day of the month and hour, apps developers install on 2–5 workstations "
        "each on its own day (zoom and obsidian in /opt, the JetBrains toolbox in a home "
        "directory), re-imaged hosts (new id, same role), "
        "user-installed tools in home directories, the classic agent rollout and a JDK path "
        "upgrade on CI runners. A signal is false when it matches no label and no benign "
        "scenario program; rollout, weekly-job and scheduled-job signals are counted on "
        "their own rows (a scheduled job's: at a host's first run / from its second run on).",
        "",
        *_section("All fleets", everything),
        *(line for title, fleets in sections.items() for line in _section(title, fleets)),
        *_late_section(on_time, late),
        *_reading(everything),
        f"Goals missed in this run: {'; '.join(missed) or 'none'}.",
        "",
        f"Goals still open: {_open_goals(everything)}.",
        "",
        f"Wall time of the whole benchmark (two fleets at a time): {seconds:.0f} s.",
        "",
    ]
    DOC.write_text("\n".join(lines))
    print("\n".join(lines))
    assert missed == []
