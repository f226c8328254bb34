"""`rarenet serve` as a real subprocess on a free loopback port, for the serve tests
and the serve benchmark. Output goes to files (a full pipe would stall the server)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import requests

TOKEN = "s3cret-token-0123456789"  # [ingest] tokens
METRICS_TOKEN = "metrics-token-0123456789"  # [server] metrics_tokens (with tokens)
SNAPSHOT_TOKEN = "snapshot-token-0123456789"  # [server] snapshot_tokens (scoped=True)
SHARD_TOKEN = "shard-token-0123456789"  # [detect] shard_token (scoped=True)
PASSWORD = "correct horse battery"  # of every user `add_user` makes
_LISTENING = re.compile(rb"listening on (http://\S+)")


class ServerProcess:
    """One `python -m rarenet serve --port 0` with its own rarenet.toml and store."""

    def __init__(
        self,
        workdir: Path,
        *,
        tokens: tuple[str, ...] = (TOKEN,),
        max_body: str = "1MiB",
        extra_toml: str = "",
        ingest_toml: str = "",
        args: tuple[str, ...] = (),
        new_session: bool = False,
        scoped: bool = False,
        max_ingest_lag: str = "0",
    ) -> None:
        self.workdir = workdir
        self.new_session = new_session  # own process group: signal it like Ctrl-C / systemd
        self.db = workdir / "rarenet.db"
        self.config = workdir / "rarenet.toml"
        token_list = ", ".join(f'"{t}"' for t in tokens)
        # Each purpose its own secret: metrics with any tokens; snapshot and shard too
        # when `scoped` (otherwise hosts' snapshot reads use the ingest token, as in
        # older configs).
        server = f'metrics_tokens = ["{METRICS_TOKEN}"]\n' if tokens else ""
        # The tests post data from January 2026: an ingest lag judged against the wall
        # clock would fail /healthz whenever a run comes after a post. Off unless a test
        # is about it (tests/detect/test_late.py).
        server += f'max_ingest_lag = "{max_ingest_lag}"\n'
        detect = ""
        if scoped:
            server += f'snapshot_tokens = ["{SNAPSHOT_TOKEN}"]\n'
            detect = f'shard_token = "{SHARD_TOKEN}"\n'
        extra_toml = _merge_section(extra_toml, "server", server)
        extra_toml = _merge_section(extra_toml, "detect", detect)
        self.config.write_text(
            f'[store]\npath = "{self.db}"\n\n[ingest]\ntokens = [{token_list}]\n'
            f'max_body = "{max_body}"\n{ingest_toml}\n\n{extra_toml}\n'
        )
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "rarenet", "serve", "--config", str(self.config),
            "--port", "0", *self.args,
        ]  # fmt: skip

    def start(self, timeout: float = 60) -> ServerProcess:
        self.starts += 1
        self.out = self.workdir / f"serve-{self.starts}.out"
        self.err = self.workdir / f"serve-{self.starts}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                env=env,
                start_new_session=self.new_session,
            )
        deadline = time.monotonic() + timeout
        while True:
            found = _LISTENING.search(self.out.read_bytes())
            if found:
                self.url = found.group(1).decode()
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not start: {self.output()}")
            time.sleep(0.05)
        return self

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}", **extra}

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("headers", self.headers())
        return requests.get(self.url + path, timeout=30, **kw)

    def post(self, body: bytes, **kw: Any) -> requests.Response:
        kw.setdefault("headers", self.headers())
        kw.setdefault("timeout", 60)
        return requests.post(self.url + "/v1/ingest", data=body, **kw)

    def add_user(self, name: str, role: str, password: str = PASSWORD) -> None:
        """A console user made with the real CLI on this server's store."""
        subprocess.run(
            [sys.executable, "-m", "rarenet", "users", "add", name, "--role", role,
             "--password-stdin", "--config", str(self.config)],
            input=f"{password}\n".encode(), check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def api_token(self, user: str) -> str:
        """A personal API token of `user`, made with the real CLI."""
        made = subprocess.run(
            [sys.executable, "-m", "rarenet", "tokens", "add", "--user", user, "--json",
             "--config", str(self.config)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return str(orjson.loads(made.stdout)["token"])

    def metric(self, name: str, labels: str = "") -> float:
        """One sample's value from /metrics (0 if absent)."""
        text = self.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self, how: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(how)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Teardown: never leave a server behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc is not None and self.new_session:
            with contextlib.suppress(ProcessLookupError):  # children of its own group
                os.killpg(self.proc.pid, signal.SIGKILL)

    def children(self) -> list[int]:
        """Pids of the server's child processes (each thread lists the ones it started:
        the detection child is started by a scheduler thread)."""
        assert self.proc is not None
        found: set[int] = set()
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that just ended
                found.update(int(pid) for pid in (task / "children").read_text().split())
        return sorted(found)

    def peak_rss_mib(self) -> float:
        """VmHWM of the server process (peak resident set)."""
        assert self.proc is not None
        return _vm_hwm(self.proc.pid)

    def worker_peak_rss_mib(self) -> list[float]:
        """VmHWM of each child process (the parse workers)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [_vm_hwm(int(pid)) for pid in children.split()]

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _merge_section(toml: str, section: str, lines: str) -> str:
    """`toml` with `lines` added to its `[section]` (made when absent)."""
    if not lines:
        return toml
    header = f"[{section}]\n"
    if header in toml:
        return toml.replace(header, header + lines, 1)
    return f"{toml}\n{header}{lines}"


def _vm_hwm(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else 0.0
