"""Crash safety: SIGKILL `rarenet signals deliver` mid-delivery, run it again — every
signal arrives, duplicates carry the same Idempotency-Key, body and signature."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from support.deliver_helpers import add_signals, states
from support.deliver_receiver import Reply, receiving

from rarenet.baseline.deliver.signing import verify
from rarenet.baseline.store import Store

pytestmark = pytest.mark.slow


def deliver(db: Path, toml: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rarenet",
            "signals",
            "deliver",
            "--db",
            str(db),
            "--config",
            str(toml),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "rarenet.db"
    with Store(db) as store:
        ids = add_signals(store, 30, created_at=time.time())
    with receiving(lambda _n, _s: Reply(delay=0.1)) as receiver:
        toml = tmp_path / "rarenet.toml"
        toml.write_text(f'[[webhooks]]\nurl = "{receiver.url}"\nname = "siem"\nsecret = "k"\n')
        first = deliver(db, toml)
        deadline = time.monotonic() + 30
        while len(receiver.requests) < 10:
            assert time.monotonic() < deadline and first.poll() is None, "no progress"
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)  # a request is in flight (the receiver waits 0.1 s)
        first.communicate()
        assert first.returncode == -signal.SIGKILL
        arrived_before = len(receiver.requests)
        assert arrived_before < len(ids)

        second = deliver(db, toml)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, (out, err)

    bodies: dict[str, set[bytes]] = defaultdict(set)
    signatures: dict[str, set[str]] = defaultdict(set)
    for seen in receiver.requests:
        bodies[seen.key].add(seen.body)
        signatures[seen.key].add(seen.headers["x-rarenet-signature"])
        assert verify("k", seen.body, seen.headers["x-rarenet-signature"])
    assert sorted(bodies) == sorted(ids)  # every signal arrived
    assert all(len(b) == 1 for b in bodies.values())  # duplicates: same key → same body
    assert all(len(s) == 1 for s in signatures.values())
    assert len(receiver.requests) > len(ids)  # the interrupted one was sent again
    with Store(db) as store:
        assert set(states(store, "siem").values()) == {"delivered"}
