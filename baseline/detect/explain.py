"""Why a candidate scored what it did, in numbers and in one sentence."""

from __future__ import annotations

import math
from typing import Any

from rarenet.baseline.detect.features import Gathered, rollout_cap, routine_cap
from rarenet.baseline.detect.lineage import lives_off_the_land
from rarenet.baseline.detect.peers import PEER_OCCASIONS, PeerUse
from rarenet.baseline.detect.scoring import HABIT_WEIGHT, NOVELTY_WEIGHT, Scores
from rarenet.baseline.detect.suspects import Suspect
from rarenet.baseline.units import format_age, format_time
from rarenet.extension.locations import Location, classify, package_managed


def _when(bucket: float | int | None) -> str | None:
    """A bucket start as a time; None when never seen (NaN)."""
    if bucket is None or math.isnan(bucket):
        return None
    return format_time(int(bucket))


def explain(
    index: int, gathered: Gathered, scores: Scores, warmup: int
) -> tuple[dict[str, Any], str]:
    """The explanation document and a one-line reason for candidate `index`."""
    cand = gathered.candidates[index]
    feats = gathered.features
    fleet = gathered.fleet[cand.bucket]
    r_path = float(scores.rarity_path[index])
    r_name = float(scores.rarity_name[index])
    novelty = float(scores.novelty[index])
    familiarity = float(scores.familiarity[index])
    rollout = float(scores.rollout[index])
    rarity_part = (
        float(scores.rarity[index]) * (1 - HABIT_WEIGHT * familiarity) * float(scores.weight[index])
    )
    if NOVELTY_WEIGHT * novelty > rarity_part:
        decided = "host novelty"
    else:
        decided = "path" if cand.path and r_path >= r_name else "name"
    baseline_age = cand.bucket - fleet.first_bucket if fleet.first_bucket is not None else 0
    cap = routine_cap(fleet)
    explanation: dict[str, Any] = {
        "decided_by": decided,
        "fleet": {
            "host_buckets": fleet.host_buckets,
            "hosts": fleet.hosts,
            "history_buckets": fleet.buckets,
            "warmup_buckets": warmup,
            "baseline_since": _when(fleet.first_bucket),
            "baseline_age": format_age(baseline_age),
            "day_covered": round(_cover(feats.baseline_cover, index), 3),
        },
        "name": {
            "value": cand.name,
            "host_buckets": int(feats.name_host_buckets[index]),
            "hosts": int(feats.name_hosts[index]),
            "hosts_at_least": int(feats.name_hosts[index]) >= cap,
            "first_seen": _when(gathered.name_first_bucket[index]),
            "rarity": round(r_name, 3),
        },
        "path": None,
        "host": {
            "buckets_with_binary": int(feats.host_path_buckets[index]),
            "maturity": round(float(feats.host_maturity[index]), 3),
            "familiarity": round(familiarity, 3),
            "novelty": round(novelty, 3),
            "known_in_fleet": round(float(feats.known[index]), 3),
            # looked up only where it can matter: on a host not yet mature (else None)
            "fresh_destination": (
                bool(feats.fresh_destination[index]) if feats.host_maturity[index] < 1 else None
            ),
        },
        "location": {
            "class": classify(cand.path).value,
            "weight": round(float(scores.weight[index]), 3),
        },
        "rollout": {
            "hosts_last_day": int(feats.recent_hosts[index]),
            "hosts_last_day_at_least": int(feats.recent_hosts[index]) >= rollout_cap(fleet),
            "hosts_in_bucket": int(feats.wave_hosts[index]),
            "established": round(float(feats.established[index]), 3),
            "package_managed": package_managed(cand.path),  # where it runs from
            "may_roll_out": bool(feats.package_managed[index]),  # p: never for a shell
            "first_week": bool(feats.adopting[index]),
            "upgrade": bool(scores.upgrade[index]),
            "app": bool(scores.app[index]),
            "discount": round(rollout, 3),
        },
        "parts": {
            "rarity": round(float(scores.rarity[index]), 3),
            "after_habit_and_location": round(rarity_part, 3),
            "host_novelty": round(NOVELTY_WEIGHT * novelty, 3),
        },
        "history": None,
        "destination": None,
        "user": None,
        "schedule": None,
        "score": float(scores.score[index]),
        "score_without_rollout": float(scores.unrolled[index]),
    }
    history = gathered.histories.get(index)
    recurring = None if history is None else history.recurring
    explanation["history"] = None if history is None else history.as_json()
    known = gathered.destinations.get(index)
    explanation["destination"] = None if known is None else known.as_json()
    if known is not None and known.evidence:
        explanation["destination"]["discount"] = round(float(scores.familiar[index]), 3)
    user = gathered.users.get(index)
    explanation["user"] = None if user is None else user.as_json()
    peer = gathered.peer_uses.get(index)
    explanation["peer_routine"] = None
    if peer is not None:
        explanation["peer_routine"] = {
            "host": peer.host,
            "similarity": peer.similarity,
            "half_days": peer.occasions,
            "routine": peer.occasions >= PEER_OCCASIONS,
            "discount": round(float(scores.peers[index]), 3),
        }
    if recurring is not None:
        explanation["schedule"] = recurring.as_json() | {
            "discount": round(float(scores.schedule[index]), 3)
        }
    if cand.path:
        explanation["path"] = {
            "value": cand.path,
            "host_buckets": int(feats.path_host_buckets[index]),
            "hosts": int(feats.path_hosts[index]),
            "hosts_at_least": int(feats.path_hosts[index]) >= cap,
            "first_seen": _when(gathered.path_first_bucket[index]),
            "last_seen": _when(gathered.path_last_bucket[index]),
            "rarity": round(r_path, 3),
        }
    explanation["newly_installed"] = newly_installed(decided, explanation)
    reason = _reason(cand.host, cand.name, cand.path, decided, explanation)
    if recurring is not None:
        reason = f"{reason}; {recurring.sentence()}: scored as routine"
    if known is not None and known.evidence:
        reason = f"{reason}; {known.sentence()}: a fresh install?"
    if peer is not None:
        reason = f"{reason}; {_peer_sentence(peer)}"
    return explanation, reason


def _peer_sentence(peer: PeerUse) -> str:
    """The reason's words for a peer's use that weakened the evidence."""
    alike = f"its peer {peer.host} ({peer.similarity:g} alike)"
    if peer.occasions >= PEER_OCCASIONS:
        return f"{alike} uses it routinely (over {peer.occasions} half-days): weak evidence here"
    days = "half-day" if peer.occasions == 1 else "half-days"
    return (
        f"{alike} runs it too (over {peer.occasions} {days}) and a person runs it here: "
        "an app people install?"
    )


def newly_installed(decided: str, exp: dict[str, Any]) -> bool:
    """A new program (its name rare too) at a package-managed path first seen in the
    fleet within a day — not a shell, a script interpreter or a dual-use network tool,
    which are on every host and only now talk: most likely just installed
    (docs/scoring.md "Fresh installs")."""
    name = exp["name"]["value"]
    return (
        decided in ("path", "name")
        and bool(exp["path"])
        and exp["rollout"]["may_roll_out"]
        and exp["rollout"]["established"] < 1
        and exp["name"]["rarity"] >= 0.5
        and not lives_off_the_land(name)
    )


def _cover(cover: Any, index: int) -> float:
    """y of candidate `index` (1 when the features carry none)."""
    return 1.0 if cover is None else float(cover[index])


def _reason(host: str, name: str, path: str, decided: str, exp: dict[str, Any]) -> str:
    fleet = exp["fleet"]
    window = f"{fleet['host_buckets']:,} fleet host-buckets over {fleet['baseline_age']}"
    if decided == "host novelty":
        key = exp["path"] or exp["name"]
        own = exp["host"]
        if own["maturity"] >= 1:
            history = "which has a mature history of its own"
        else:
            history = f"which has {own['maturity']:.0%} of a mature host's history"
        shell = ""
        if own["fresh_destination"]:
            shell = f"; the shell holds a socket to an address no {name} in the fleet used before"
        return (
            f"{name} ({path or 'path unknown'}) is used on {_hosts(key)} of the fleet "
            f"but never before on {host}, {history}{shell}"
        )
    key = exp[decided]
    label = key["value"]
    if key["host_buckets"] == 0:
        seen = f"never seen in {window}"
    else:
        seen = f"seen in only {key['host_buckets']:,} of {window}, on {_hosts(key)}"
    extra = ""
    if decided == "path" and exp["name"]["rarity"] < 0.5:
        doubt = (
            "an upgrade, or a masquerade?" if exp["rollout"]["package_managed"] else "masquerade?"
        )
        extra = f"; the name {name} itself is common ({_hosts(exp['name'])}): {doubt}"
    if exp["location"]["class"] == Location.VOLATILE.value:
        extra += "; runs from a volatile or hidden location"
    if exp["fleet"]["day_covered"] < 1 and exp["rollout"]["may_roll_out"]:
        extra += (
            f"; the fleet's baseline covers {exp['fleet']['baseline_age']} of its first day "
            "(a daily job may not have run yet)"
        )
    if exp["newly_installed"]:
        first = exp["path"]["first_seen"]
        since = f"first seen in the fleet {first}" if first else "first seen in this bucket"
        return f"newly installed? {label} on {host}: {since}, {seen}{extra}"
    return f"{label} on {host}: {seen}{extra}"


def rollout_reason(path: str, exp: dict[str, Any]) -> str:
    """The reason of a rollout's one signal: which path, on how many hosts."""
    roll = exp["rollout"]
    if roll.get("app") and not roll["upgrade"]:
        hosts = _hosts(exp["path"])
        return (
            f"an app people install? {path} is a new package-managed program a person runs "
            f"here, already on {hosts} in its first week: one signal for the whole "
            "install, later hosts are counted on it"
        )
    if roll["upgrade"]:
        name, hosts = exp["name"]["value"], _hosts(exp["path"])
        return (
            f"rollout? {path} is a new package-managed path of the known program {name}, "
            f"already on {hosts} (an upgrade reaching hosts one by one): one signal for the "
            "whole rollout, later hosts are counted on it"
        )
    count = roll["hosts_last_day"]
    hosts = f"{count}+" if roll["hosts_last_day_at_least"] else str(count)
    at_once = roll["hosts_in_bucket"]
    wave = f", {at_once} in this bucket" if at_once > 1 else ""
    return (
        f"rollout? new package-managed binary {path} on {hosts} hosts within a day{wave}: "
        "one signal for the whole rollout, later hosts are counted on it"
    )


def returning_json(suspect: Suspect, bucket: int) -> dict[str, Any]:
    """What a return's explanation says about the open signals it comes back to."""
    return {
        "signal": suspect.latest_signal,
        "at": format_time(suspect.latest),
        "ago": format_age(bucket - suspect.latest),
        "first_signal": suspect.first_signal,
        "since": format_time(suspect.since),
        "open_signals": suspect.signals,
        "group": suspect.group,
    }


def returning_sentence(suspect: Suspect, bucket: int) -> str:
    """ "returning: this binary raised signal 3f2a… on this host 3.0d ago (still open)"."""
    count = suspect.signals
    more = "" if count == 1 else f", {count} open signals since {format_time(suspect.since)}"
    return (
        f"returning: this binary raised signal {suspect.latest_signal[:12]} on this host "
        f"{format_age(bucket - suspect.latest)} ago (still open{more})"
    )


def _hosts(key: dict[str, Any]) -> str:
    count = key["hosts"]
    if key.get("hosts_at_least"):
        return f"{count}+ hosts"
    return f"{count} host" + ("" if count == 1 else "s")
