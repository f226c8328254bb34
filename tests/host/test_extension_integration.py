"""The extension process against a fake osquery core, through real Thrift on UNIX sockets.

Every test runs twice: the module (`python -m rarenet.extension`) and the built single file
`rarenet.ext` run by an isolated interpreter (`-I -S`: no site-packages, so everything
it needs must be inside the file). Processes are killed in teardown; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_osquery import FakeCore, equals, fill, socket_rows
from support.snapshot_server import SnapshotServer, snapshot_doc

from rarenet.extension.zipapp import SHEBANG, build

SOCKETS = 50


@pytest.fixture(scope="session")
def ext_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("ext") / "rarenet.ext")


@pytest.fixture(params=["module", "rarenet.ext"])
def launcher(request: pytest.FixtureRequest, ext_file: Path) -> list[str]:
    if request.param == "module":
        return [sys.executable, "-m", "rarenet.extension"]
    return [sys.executable, "-I", "-S", str(ext_file)]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="rn-", dir="/tmp"))  # UNIX paths ≤ 107 bytes
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def core(sock_dir: Path) -> Iterator[FakeCore]:
    fake = FakeCore(str(sock_dir / "osquery.em"))
    fill(
        fake,
        socket_rows(SOCKETS, names=[("nginx", "/usr/sbin/nginx"), ("beacon", "/tmp/.x/beacon")]),
    )
    fake.start()
    yield fake
    fake.close()


class Extension:
    """One extension process; always killed and reaped."""

    def __init__(
        self, argv: list[str], socket: str, env: dict[str, str], cwd: Path, *flags: str
    ) -> None:
        self.log = cwd / f"ext-{time.monotonic_ns()}.log"
        self._log = self.log.open("wb")
        command = [
            *argv,
            "--socket",
            socket,
            "--timeout",
            "3",
            "--interval",
            "1",
            "--verbose",
            *flags,
        ]
        self.proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=self._log, stderr=self._log)

    def wait(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Any]:
    started: list[Extension] = []

    def start(
        argv: list[str], socket: str, env: dict[str, str] | None = None, *flags: str
    ) -> Extension:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("RARENET_")}
        environ.update(env or {})
        ext = Extension(argv, socket, environ, tmp_path, *flags)
        started.append(ext)
        return ext

    yield start
    for ext in started:
        ext.kill()


@pytest.fixture
def snapshot_env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot_doc()))
    return {
        "RARENET_EXTENSION_SNAPSHOT_PATH": str(path),
        "RARENET_EXTENSION_CACHE_DIR": str(tmp_path / "cache"),
    }


@pytest.fixture
def registered(
    core: FakeCore, launcher: list[str], spawn: Any, snapshot_env: dict[str, str]
) -> tuple[Extension, int]:
    """The extension started against `core` with a snapshot, once it registered:
    (its process, its uuid)."""
    ext = spawn(launcher, core.path, snapshot_env)
    return ext, core.wait_for("rarenet")


def wait_until(check: Any, timeout: float = 10, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError("condition not met in time")


def scored(core: FakeCore, uuid: int, context: Any = None) -> list[dict[str, str]]:
    """generate once the snapshot is loaded (the first refresh runs in the background)."""

    def ready() -> list[dict[str, str]] | None:
        response = core.generate(uuid, "unusual_network_activity", context)
        assert response.status.code == 0, response.status.message
        rows: list[dict[str, str]] = response.response
        return rows if rows and rows[0]["snapshot_version"] == "1" else None

    result: list[dict[str, str]] = wait_until(ready)
    return result


# -- registration, columns, generate --------------------------------------------------------


@pytest.mark.slow
def test_registers_and_generates(core: FakeCore, registered: tuple[Extension, int]) -> None:
    _, uuid = registered
    assert 1 <= uuid <= 65535 and os.path.exists(f"{core.path}.{uuid}")
    info, registry = core.extensions_by_uuid[uuid]
    assert info.name == "rarenet"
    assert set(registry["table"]) == {"unusual_network_activity", "network_baseline"}
    routes = registry["table"]["unusual_network_activity"]
    types = {route["name"]: route["type"] for route in routes}
    assert types["pid"] == "INTEGER" and types["anomaly_score"] == "INTEGER"
    assert types["reason"] == "TEXT" and types["snapshot_age"] == "BIGINT"
    columns = core.extension(uuid).call("table", "network_baseline", {"action": "columns"})
    assert columns.status.code == 0 and columns.response == registry["table"]["network_baseline"]

    rows = scored(core, uuid)
    assert len(rows) == SOCKETS  # the loopback and LISTEN fixture sockets are not pack rows
    assert all(set(row) == set(types) for row in rows)
    beacon = [r for r in rows if r["name"] == "beacon"]
    assert beacon and all(
        r["anomaly_score"] == "100" and "never seen" in r["reason"] for r in beacon
    )
    nginx = [r for r in rows if r["name"] == "nginx"]
    assert nginx and all(int(r["anomaly_score"]) < 25 and r["fleet_hosts"] == "150" for r in nginx)
    assert all("None" not in value for row in rows for value in row.values())

    # constraints: pushed down to core's query (validated) and honoured
    one = scored(core, uuid, equals("pid", 1001, "INTEGER"))
    assert {r["pid"] for r in one} == {"1001"} and len(one) == 20
    assert core.queries[-1].endswith("WHERE pid = 1001)")
    named = scored(core, uuid, equals("name", "beacon"))
    assert {r["name"] for r in named} == {"beacon"}
    nothing = core.generate(uuid, "unusual_network_activity", equals("name", "x' OR '1'='1"))
    assert nothing.status.code == 0 and nothing.response == []
    assert core.queries[-1].endswith("WHERE name = 'x'' OR ''1''=''1')")

    baseline = core.generate(uuid, "network_baseline")
    assert baseline.status.code == 0 and [r["name"] for r in baseline.response] == ["bash", "nginx"]
    bash = core.generate(uuid, "network_baseline", equals("path", "/usr/bin/bash"))
    assert [r["hosts"] for r in bash.response] == ["20"]


@pytest.mark.slow
def test_bad_calls_get_a_status_and_the_extension_lives(
    core: FakeCore, registered: tuple[Extension, int]
) -> None:
    ext, uuid = registered
    client = core.extension(uuid)
    cases = [
        (("table", "unusual_network_activity", {"action": "generate", "context": "{oops"}), "malformed context JSON"),
        (("table", "unusual_network_activity", {"action": "explode"}), "unknown action 'explode'"),
        (("table", "no_such_table", {"action": "generate"}), "unknown table"),
        (("logger", "rarenet", {"action": "log"}), "unknown registry"),
    ]  # fmt: skip
    for args, message in cases:
        response = client.call(*args)
        assert response.status.code == 1 and message in response.status.message
    assert client.ping().code == 0
    assert ext.proc.poll() is None


# -- lifecycle ------------------------------------------------------------------------------


@pytest.mark.slow
def test_ping_and_shutdown(core: FakeCore, registered: tuple[Extension, int]) -> None:
    ext, uuid = registered
    assert core.extension(uuid).ping().code == 0
    core.extension(uuid).shutdown()
    assert ext.wait(10) == 0
    assert not os.path.exists(f"{core.path}.{uuid}")
    assert core.uuid_of("rarenet") is None  # deregistered itself


@pytest.mark.slow
def test_sigterm_exits_cleanly_and_deregisters(
    core: FakeCore, registered: tuple[Extension, int]
) -> None:
    ext, uuid = registered
    ext.proc.send_signal(signal.SIGTERM)
    assert ext.wait(10) == 0
    assert core.uuid_of("rarenet") is None and not os.path.exists(f"{core.path}.{uuid}")


@pytest.mark.slow
def test_exits_when_core_goes_away(core: FakeCore, registered: tuple[Extension, int]) -> None:
    ext, _ = registered
    core.stop()
    started = time.monotonic()
    assert ext.wait(10) == 1
    assert time.monotonic() - started < 6  # --interval 1, --timeout 3
    assert "went away" in ext.stderr()


@pytest.mark.slow
def test_exits_when_core_restarts_between_two_checks(
    sock_dir: Path, launcher: list[str], spawn: Any, snapshot_env: dict[str, str]
) -> None:
    """osqueryd's watchdog restarts its worker (and extension manager) in well under
    --interval: pings to the new core succeed, but it has never heard of this extension."""
    path = str(sock_dir / "osquery.em")
    first = FakeCore(path).start()
    ext = spawn(launcher, path, snapshot_env)
    first.wait_for("rarenet")
    first.close()
    with FakeCore(path) as second:
        assert ext.wait(10) == 1
        assert "restarted and no longer knows extension rarenet" in ext.stderr()
        assert second.uuid_of("rarenet") is None


@pytest.mark.slow
def test_duplicate_registration_is_refused(
    core: FakeCore, launcher: list[str], spawn: Any, snapshot_env: dict[str, str]
) -> None:
    first = spawn(launcher, core.path, snapshot_env)
    uuid = core.wait_for("rarenet")
    second = spawn(launcher, core.path, snapshot_env)
    assert second.wait(15) == 1
    assert "Duplicate extension registered" in second.stderr()
    assert core.refused == ["rarenet"]
    assert first.proc.poll() is None and core.extension(uuid).ping().code == 0


@pytest.mark.slow
def test_no_core_exits_within_timeout(sock_dir: Path, launcher: list[str], spawn: Any) -> None:
    ext = spawn(launcher, str(sock_dir / "absent.em"))
    assert ext.wait(10) == 1
    assert "cannot reach osquery" in ext.stderr()


@pytest.mark.slow
def test_a_core_without_json_functions_gets_the_plain_query(
    sock_dir: Path, launcher: list[str], spawn: Any, snapshot_env: dict[str, str]
) -> None:
    with FakeCore(str(sock_dir / "old.em"), refuse_json=True) as old:
        fill(old, socket_rows(SOCKETS))
        spawn(launcher, old.path, snapshot_env)
        uuid = old.wait_for("rarenet")
        rows = scored(old, uuid)
        assert len(rows) == SOCKETS and {r["state"] for r in rows} == {"ESTABLISHED"}
        assert "json_group_array" in old.queries[0] and old.queries[-1].startswith(
            "SELECT\n  s.pid"
        )


@pytest.mark.slow
def test_a_slow_core_query_is_answered_from_proc_within_the_deadline(
    sock_dir: Path, launcher: list[str], spawn: Any, snapshot_env: dict[str, str]
) -> None:
    """Core takes 6 s to answer; the table gives up on it after half of its 3 s deadline
    (--timeout 3) and answers from this host's /proc, every time (it was a race between
    two equal 3 s limits, an error or an answer)."""
    with FakeCore(str(sock_dir / "slow.em"), query_delay=6) as slow:
        spawn(launcher, slow.path, snapshot_env)
        uuid = slow.wait_for("rarenet")
        for _ in range(2):
            started = time.monotonic()
            response = slow.generate(uuid, "unusual_network_activity")
            assert time.monotonic() - started < 3, response.status
            assert response.status.code == 0, response.status.message


# -- snapshot problems over Thrift ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "No such file"),
        ("{corrupt", "not JSON"),
        (json.dumps(snapshot_doc(version=2)), "unsupported snapshot version 2"),
    ],
)
def test_snapshot_missing_corrupt_or_wrong_version(
    core: FakeCore,
    launcher: list[str],
    spawn: Any,
    tmp_path: Path,
    content: str | None,
    expected: str,
) -> None:
    path = tmp_path / "snapshot.json"
    if content is not None:
        path.write_text(content)
    spawn(launcher, core.path, {"RARENET_EXTENSION_SNAPSHOT_PATH": str(path),
                                "RARENET_EXTENSION_CACHE_DIR": str(tmp_path / "cache")})  # fmt: skip
    uuid = core.wait_for("rarenet")

    def refused() -> list[dict[str, str]] | None:
        rows: list[dict[str, str]] = core.generate(uuid, "unusual_network_activity").response
        return rows if expected in rows[0]["reason"] else None

    rows = wait_until(refused)
    assert len(rows) == SOCKETS
    assert all(r["anomaly_score"] == "" and r["reason"].startswith("no snapshot:") for r in rows)
    assert core.generate(uuid, "network_baseline").response == []


@pytest.mark.slow
def test_a_hanging_snapshot_server_does_not_stall_generate(
    core: FakeCore, launcher: list[str], spawn: Any, tmp_path: Path
) -> None:
    with SnapshotServer(json.dumps(snapshot_doc()).encode()) as server:
        server.delay = 8
        spawn(launcher, core.path, {"RARENET_EXTENSION_SNAPSHOT_URL": server.url,
                                    "RARENET_EXTENSION_TOKEN": "tok",
                                    "RARENET_EXTENSION_CACHE_DIR": str(tmp_path / "cache")})  # fmt: skip
        uuid = core.wait_for("rarenet")
        wait_until(lambda: server.requests, timeout=5)
        started = time.monotonic()
        response = core.generate(uuid, "unusual_network_activity")
        assert time.monotonic() - started < 2
        assert response.status.code == 0 and len(response.response) == SOCKETS
        assert response.response[0]["reason"].startswith("no snapshot")


@pytest.mark.slow
def test_bad_settings_are_reported_in_rows(core: FakeCore, launcher: list[str], spawn: Any) -> None:
    spawn(launcher, core.path, {"RARENET_EXTENSION_REFRESH": "often"})
    uuid = core.wait_for("rarenet")
    rows = core.generate(uuid, "unusual_network_activity").response
    assert (
        "configuration error: $RARENET_EXTENSION_REFRESH: 'often' is not a duration"
        in rows[0]["reason"]
    )


# -- the built file -------------------------------------------------------------------------


def test_built_file_is_what_osquery_autoloads(ext_file: Path) -> None:
    data = ext_file.read_bytes()
    assert data.startswith(SHEBANG) and SHEBANG == b"#!/usr/bin/env python3\n"
    assert stat.S_IMODE(ext_file.stat().st_mode) == 0o755
    with zipfile.ZipFile(ext_file) as archive:
        names = archive.namelist()
    assert "__main__.py" in names and "rarenet/extension/main.py" in names
    assert [n for n in names if n.startswith("rarenet/") and "/extension/" not in n] == [
        "rarenet/__init__.py"
    ]
    assert "osquery/extensions/Extension.py" in names and "thrift/transport/TSocket.py" in names
    assert not [
        n
        for n in names
        if n.startswith(("baseline/", "extension/", "rarenet/baseline/", "tests/", "numpy/"))
        or n.endswith(".so")
    ]
    assert build(ext_file.with_name("again.ext")).read_bytes() == data  # reproducible


def test_built_file_runs_through_its_shebang_and_takes_only_osquery_flags(ext_file: Path) -> None:
    if shutil.which("python3") is None:
        pytest.skip("no python3 on PATH for the shebang")
    shown = subprocess.run([str(ext_file), "--help"], capture_output=True, timeout=30, check=False)
    assert shown.returncode == 0 and b"--socket" in shown.stdout and b"--interval" in shown.stdout
    refused = subprocess.run(
        [sys.executable, "-I", "-S", str(ext_file), "--config", "x"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 2 and b"unrecognized arguments: --config" in refused.stderr
    pure = subprocess.run(
        [sys.executable, "-I", "-S", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import rarenet.extension.main, thrift.protocol.TBinaryProtocol; "
         "import importlib.util as u; print(u.find_spec('thrift.protocol.fastbinary'), 'numpy' in sys.modules)",
         str(ext_file)],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert pure.returncode == 0, pure.stderr
    assert pure.stdout.split() == [b"None", b"False"]
