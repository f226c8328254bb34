"""The end-to-end backtest's data (a simulated 100-host, 10-day fleet with attacks) and
its `rarenet backtest --json`, made in a background process: conftest starts it once per
run (in pytest-xdist's controller when `make test` runs workers) and runs
tests/detect/test_backtest_e2e.py last, so its ~1.5 minutes overlap the rest of the suite
instead of adding to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rarenet.baseline.simulate import SimulationSpec, simulate_to_path

WAIT = 1200.0  # seconds a test waits for the job before failing
DIR_VARIABLE = "E2E_BACKTEST_DIR"  # where the one background job of a run writes


def prepare(directory: Path) -> None:
    log = directory / "fleet.log.gz"
    labels = directory / "fleet.labels.jsonl"
    simulate_to_path(SimulationSpec(hosts=100, days=10, attacks=True, seed=1), log, labels)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}
    result = subprocess.run(
        [sys.executable, "-m", "rarenet", "backtest", "--labels", str(labels), "--json",
         str(log)],
        capture_output=True, env=env, cwd=directory, check=False,
    )  # fmt: skip
    (directory / "result.json").write_bytes(result.stdout)
    (directory / "stderr.txt").write_bytes(result.stderr)
    (directory / "exit.partial").write_text(str(result.returncode))
    (directory / "exit.partial").replace(directory / "exit")  # seen whole or not at all


def start(directory: Path) -> subprocess.Popen[bytes]:
    """`prepare(directory)` in a background process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}
    with (directory / "job.out").open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, __file__, str(directory)],
            env=env,
            cwd=directory,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait(directory: Path) -> Path:
    """The directory once its job finished successfully (AssertionError otherwise): the
    job writes `exit` last, whichever process started it."""
    deadline = time.monotonic() + WAIT
    exit_file = directory / "exit"
    while not exit_file.exists():
        assert time.monotonic() < deadline, "the e2e backtest job did not finish in time"
        assert directory.exists(), "the e2e backtest job's directory is gone"
        time.sleep(0.5)
    assert exit_file.read_text() == "0", (directory / "stderr.txt").read_text()
    return directory


if __name__ == "__main__":
    os.nice(5)  # the suite's timing-sensitive tests first, yet done before the suite ends
    prepare(Path(sys.argv[1]))
