"""One evaluation: gather, score and decide once; every view renders from its values.

The rule (baseline/detect/rule.py) stores a signal's score, explanation and reason from
an `Evaluation`; `rarenet explain`, the console and the report ask `why`
(baseline/detect/why.py), which evaluates the same window over the same sources (a
single store, or host shards) and renders each finding with the same `describe`. So the
reason `explain` gives for a stored signal at the time of the run that raised it is
the stored reason, word for word (tests/detect/test_explain.py checks every signal of
simulated fleets, and explain over shards against one node).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rarenet.baseline.config import DetectSettings
from rarenet.baseline.detect.binary_users import (
    ask_users,
    people_among,
    with_people,
    with_users,
)
from rarenet.baseline.detect.decide import (
    ROLLOUT_SCORE,
    Decisions,
    Member,
    NewSignal,
    decide,
    group_sentence,
)
from rarenet.baseline.detect.destinations import (
    ask_destinations,
    first_connections,
    with_destinations,
)
from rarenet.baseline.detect.exceptions import Exception_
from rarenet.baseline.detect.explain import (
    explain,
    returning_json,
    returning_sentence,
    rollout_reason,
)
from rarenet.baseline.detect.features import (
    ESTABLISHED_SHARE,
    FleetContext,
    Gathered,
    gather_from,
    rollout_hosts,
)
from rarenet.baseline.detect.lineage import name_the_shell
from rarenet.baseline.detect.peer_evidence import ask_peers, with_peers
from rarenet.baseline.detect.recurring import use_histories, with_histories
from rarenet.baseline.detect.scoring import Scores, score
from rarenet.baseline.detect.source import PresenceSource
from rarenet.baseline.detect.suspects import Suspect, open_suspects
from rarenet.baseline.store import Store


@dataclass(frozen=True)
class Evaluation:
    """A window's candidates, their features, scores and the rule's verdicts."""

    gathered: Gathered
    scores: Scores
    decisions: Decisions
    settings: DetectSettings

    @property
    def span(self) -> int:
        return max(1, int(self.settings.bucket_span))


@dataclass(frozen=True)
class Described:
    """What a signal (or a finding that would be one) says: its score, the explanation
    document and the one-line reason."""

    score: float
    explanation: dict[str, Any]
    reason: str


def evaluate(
    store: Store,
    sources: Sequence[PresenceSource],
    settings: DetectSettings,
    buckets: list[int],
    exceptions: list[Exception_],
    *,
    queued: Sequence[int] | None = None,
    pick: Callable[[Gathered], set[int]] | None = None,
) -> Evaluation:
    """Gather `buckets` over `sources` (with `queued`: a catch-up step's queued hosts),
    score; for the candidates that could fire (and those picked) ask the long memory,
    the destinations and the peers, and score again with that evidence; decide against
    `store`'s signals. `pick(gathered)`: the candidates to
    decide whatever their score (explain's host and binary)."""
    span = max(1, int(settings.bucket_span))
    suspects = open_suspects(store.conn, exceptions)
    gathered = gather_from(
        sources, span, int(settings.history), buckets, settings.warmup_buckets, suspects, queued
    )
    scores = score(gathered.features)
    wanted = pick(gathered) if pick is not None else None
    could_fire = np.flatnonzero(gathered.warm & (scores.unrolled >= settings.threshold)).tolist()
    asked = [*could_fire, *(wanted or ())]
    histories = use_histories(gathered, asked, span, int(settings.memory))
    firsts = first_connections(gathered, asked)
    destinations = ask_destinations(gathered, firsts, span, int(settings.history))
    users = {i: first.user for i, first in firsts.items()}
    who = ask_users(gathered, asked, span, int(settings.history), users)
    people = people_among(gathered, firsts)
    peers = ask_peers(gathered, asked, span, int(settings.history), suspects, people)
    if histories or destinations or peers or who or people:
        gathered = with_users(with_histories(gathered, histories), who)
        gathered = with_people(gathered, people)
        gathered = with_peers(with_destinations(gathered, destinations), peers)
        scores = score(gathered.features)
    decisions = decide(
        store.conn, settings, gathered, scores, exceptions, gathered.detail, only=wanted
    )
    return Evaluation(gathered, scores, decisions, settings)


def describe(
    evaluation: Evaluation,
    i: int,
    *,
    rollout: bool,
    returning: Suspect | None,
    group: str | None,
    others: tuple[Member, ...],
) -> Described:
    """Candidate i as a signal: a rollout's one signal (score capped, its hosts in the
    last day counted exactly), a return to open signals, the group and the hosts named,
    and whether it keeps its binary a suspect."""
    gathered, scores, settings = evaluation.gathered, evaluation.scores, evaluation.settings
    span, history = evaluation.span, int(settings.history)
    cand = gathered.candidates[i]
    explanation, reason = explain(i, gathered, scores, settings.warmup_buckets)
    value = float(scores.score[i])
    if rollout:
        hosts = rollout_hosts(gathered.sources, span, history, cand.path, cand.bucket)
        explanation["rollout"] |= {"hosts_last_day": hosts, "hosts_last_day_at_least": False}
        reason = rollout_reason(cand.path, explanation)
        value = min(float(scores.evidenced[i]), ROLLOUT_SCORE)
    detail = gathered.detail(i)
    if detail is not None:
        reason = name_the_shell(reason, explanation, cand.name, detail.chain)
    if returning is not None:
        explanation["returning"] = returning_json(returning, cand.bucket)
        reason = f"{returning_sentence(returning, cand.bucket)}; {reason}"
    together = group_sentence(others)
    if together:
        reason = f"{reason}; {together}"
    explanation["group"] = {"id": group, "hosts": [member.as_json() for member in others]}
    explanation["keeps_suspect"] = keeps_suspect(
        rollout, gathered.fleet[cand.bucket], history, span
    )
    return Described(value, explanation, reason)


def describe_new(evaluation: Evaluation, new: NewSignal) -> Described:
    """A new signal of the evaluation, as the rule stores it."""
    return describe(
        evaluation,
        new.index,
        rollout=new.rollout,
        returning=new.returning,
        group=new.group,
        others=new.others,
    )


def keeps_suspect(rollout: bool, fleet: FleetContext, history: int, span: int) -> bool:
    """Whether a new signal makes its binary a suspect on its host (baseline/detect/
    suspects.py): not a rollout's one signal, and not while the fleet's baseline is
    younger than a day (a deployment's first day: every binary is new, and a signal says
    the fleet is still being learned, not that this binary is suspect)."""
    day = max(span, int(history * ESTABLISHED_SHARE))
    young = fleet.first_bucket is None or fleet.bucket - fleet.first_bucket < day
    return not rollout and not young
