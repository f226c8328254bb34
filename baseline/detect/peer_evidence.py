"""Peers as evidence: a program its host's peers use routinely is weak evidence on a
new peer (docs/scoring.md "Peers").

Asked, like the long memory, only of candidates at or above the threshold, and only for
programs a person or a package put on the host (destinations.py `may_vouch`: a home
directory or a package-managed path; never a shell, a script interpreter, a dual-use
network tool or a writable or hidden place). A peer counts when it has no open signal
for that path and used it over `PEER_OCCASIONS` half-days of the window (peers.py
`routine_peer`): the backup job another database host runs, the app the other
developers' workstations use. The same binary new to a host *and* to its peers stays
strong — and bash holding a socket on a web server is never asked.

An app a person runs (the candidate's first connection is a login account's:
lineage.py `started_by_a_person`) needs less: a peer without an open signal that ran it
at all in the window (`APP_OCCASIONS`). The third developer to install Obsidian is not
the first; the first is still judged on its own, and a root or service process on a
server still needs a peer's routine.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from rarenet.baseline.detect.destinations import may_vouch
from rarenet.baseline.detect.peers import (
    APP_OCCASIONS,
    PEER_OCCASIONS,
    PeerUse,
    asked,
    routine_peer,
    weights_over,
)
from rarenet.baseline.detect.scoring import indicator
from rarenet.baseline.detect.suspects import Suspects

if TYPE_CHECKING:
    from rarenet.baseline.detect.features import Gathered


def ask_peers(
    gathered: Gathered,
    asked_for: Iterable[int],
    span: int,
    history: int,
    suspects: Suspects,
    people: AbstractSet[int] = frozenset(),
) -> dict[int, PeerUse]:
    """Per candidate index in `asked_for` that a peer's routine may speak for: the most
    alike peer that uses its path routinely (for those in `people`, started by a login
    account: that uses it at all), where there is one."""
    feats = gathered.features
    wanted = [
        i
        for i in sorted(set(asked_for))
        if gathered.candidates[i].path
        and np.nan_to_num(feats.path_hosts[i]) >= 1
        and may_vouch(gathered.candidates[i].name, gathered.candidates[i].path)
    ]
    if not wanted:
        return {}
    cands = [gathered.candidates[i] for i in wanted]
    answers = asked(gathered.sources, span, history, [[c.host, c.path, [c.bucket]] for c in cands])
    paths = sorted({p for answer in answers for _, profile in answer[0] for p in profile})
    buckets = [c.bucket for c in cands]
    fleet_hosts = max(float(gathered.fleet[b].hosts) for b in buckets)
    weights = weights_over(
        gathered.sources, span, min(buckets) - history, max(buckets), fleet_hosts, paths
    )
    found: dict[int, PeerUse] = {}
    for i, cand, answer in zip(wanted, cands, answers, strict=True):
        if not answer[1]:  # more other hosts use it than peers are sought among
            continue
        left_out = {s.host for s in suspects.on_key("path", cand.path)} | {cand.host}
        least = APP_OCCASIONS if i in people else PEER_OCCASIONS
        peer = routine_peer(answer, cand.host, cand.path, 0, left_out, weights, least)
        if peer is not None:
            found[i] = peer
    return found


def with_peers(gathered: Gathered, found: dict[int, PeerUse]) -> Gathered:
    """`gathered` with q = 1 where a peer's routine speaks for the candidate."""
    if not found:
        return gathered
    features = replace(gathered.features, peer_routine=indicator(len(gathered.candidates), found))
    return replace(gathered, features=features, peer_uses=found)
