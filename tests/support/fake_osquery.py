"""A fake osquery core for extension tests: the real Thrift protocol over UNIX sockets.

Behaves like osqueryd's extension manager where an extension can tell:

* an `ExtensionManager` Thrift server on a UNIX socket at path P, one thread per
  connection;
* `registerExtension` answers a random uint16 uuid; a second extension with the same
  name, one whose tables collide with core's, or one whose SDK version is below 1.7.7
  (osquery's kSDKVersionChanges) is refused with a non-zero status;
* core reaches the extension at `P.<uuid>`, opening a fresh connection for every ping
  and call (a watcher pings each extension every `ping_interval` and forgets one that
  stops answering, as osquery does);
* `query(sql)` runs on SQLite tables created from osquery's schema (tests/support/data),
  filled with fixture rows; values come back as strings, NULL as "";
* `deregisterExtension`, `extensions`, `options`, `getQueryColumns`;
* `stop()` removes the socket: the extension's watchdog must notice and exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from osquery.extensions import Extension, ExtensionManager
from osquery.extensions.ttypes import (
    ExtensionResponse,
    ExtensionStatus,
    InternalExtensionInfo,
)
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from support.osquery_schema import create_tables, osquery_schema

logging.getLogger("thrift").setLevel(logging.CRITICAL)  # its connect errors are expected here


class FakeCore(ExtensionManager.Iface):  # type: ignore[misc]
    def __init__(
        self,
        path: str,
        ping_interval: float = 0.2,
        query_delay: float = 0.0,
        refuse_json: bool = False,
    ) -> None:
        self.path = path
        self.refuse_json = refuse_json  # an osquery whose SQLite lacks JSON functions
        self.ping_interval = ping_interval
        self.query_delay = query_delay  # seconds each query() sleeps (a slow core)
        schema = osquery_schema()
        self.db = create_tables(sqlite3.connect(":memory:", check_same_thread=False), schema)
        self.tables = set(schema)
        self.lock = threading.Lock()
        self.extensions_by_uuid: dict[int, tuple[InternalExtensionInfo, dict[str, Any]]] = {}
        self.queries: list[str] = []
        self.refused: list[str] = []
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()

    # -- fixture data ----------------------------------------------------------------------

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        with self.lock:
            for row in rows:
                names = ", ".join(f'"{k}"' for k in row)
                marks = ", ".join("?" for _ in row)
                self.db.execute(
                    f'INSERT INTO "{table}" ({names}) VALUES ({marks})', list(row.values())
                )
            self.db.commit()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeCore:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        for target in (self._accept, self._watch):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Core goes away: stop answering, remove the socket."""
        self._stopped.set()
        for thread in self._threads:
            thread.join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self.lock:
            for conn in list(self._conns):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def close(self) -> None:
        self.stop()
        self.db.close()

    def __enter__(self) -> FakeCore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        assert self._listener is not None
        processor = ExtensionManager.Processor(self)
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(processor, conn), daemon=True)
            thread.start()

    def _serve(self, processor: Any, conn: socket.socket) -> None:
        with self.lock:
            self._conns.add(conn)
        conn.settimeout(30)
        sock = TSocket.TSocket()
        sock.setHandle(conn)
        transport = TTransport.TBufferedTransport(sock)
        protocol = TBinaryProtocol(transport)
        try:
            while not self._stopped.is_set():
                processor.process(protocol, protocol)
        except (TTransport.TTransportException, OSError):
            pass
        finally:
            with self.lock:
                self._conns.discard(conn)
            transport.close()

    def _watch(self) -> None:
        failures: dict[int, int] = {}
        while not self._stopped.wait(self.ping_interval):
            for uuid in list(self.extensions_by_uuid):
                try:
                    ok = self.extension(uuid, timeout=1).ping().code == 0
                except Exception:
                    ok = False
                failures[uuid] = 0 if ok else failures.get(uuid, 0) + 1
                if failures[uuid] >= 3:  # osquery forgets an extension that stops answering
                    self.extensions_by_uuid.pop(uuid, None)

    # -- the ExtensionManager service (what the extension calls) -----------------------------

    def ping(self) -> ExtensionStatus:
        return ExtensionStatus(code=0, message="OK")

    def call(self, registry: str, item: str, request: dict[str, str]) -> ExtensionResponse:
        return ExtensionResponse(
            status=ExtensionStatus(code=1, message="core plugins are not routed by this fake"),
            response=[],
        )

    def shutdown(self) -> None:
        return None

    def extensions(self) -> dict[int, InternalExtensionInfo]:
        return {uuid: info for uuid, (info, _) in self.extensions_by_uuid.items()}

    def options(self) -> dict[str, Any]:
        return {}

    def registerExtension(
        self, info: InternalExtensionInfo, registry: dict[str, Any]
    ) -> ExtensionStatus:
        with self.lock:
            if not _version_at_least("1.7.7", info.sdk_version or ""):  # kSDKVersionChanges
                self.refused.append(info.name)
                return ExtensionStatus(code=1, message="Incompatible extension SDK version")
            if any(i.name == info.name for i, _ in self.extensions_by_uuid.values()):
                self.refused.append(info.name)
                return ExtensionStatus(code=1, message="Duplicate extension registered")
            for table in (registry or {}).get("table", {}):
                if table in self.tables:
                    self.refused.append(info.name)
                    return ExtensionStatus(code=1, message=f"Duplicate registry item: {table}")
            uuid = random.randint(1, 65535)  # a uint16, as osquery's RouteUUID
            while uuid in self.extensions_by_uuid:
                uuid = random.randint(1, 65535)
            self.extensions_by_uuid[uuid] = (info, registry)
        return ExtensionStatus(code=0, message="OK", uuid=uuid)

    def deregisterExtension(self, uuid: int) -> ExtensionStatus:
        if self.extensions_by_uuid.pop(uuid, None) is None:
            return ExtensionStatus(code=1, message="No extension UUID registered")
        return ExtensionStatus(code=0, message="OK")

    def query(self, sql: str) -> ExtensionResponse:
        if self.query_delay:
            time.sleep(self.query_delay)
        with self.lock:
            self.queries.append(sql)
            if self.refuse_json and "json_" in sql:
                return ExtensionResponse(
                    status=ExtensionStatus(code=1, message="no such function: json_group_array"),
                    response=[],
                )
            try:
                cursor = self.db.execute(sql)
                names = [d[0] for d in cursor.description or ()]
                rows = [
                    {n: "" if v is None else str(v) for n, v in zip(names, row, strict=True)}
                    for row in cursor.fetchall()
                ]
            except sqlite3.Error as exc:
                return ExtensionResponse(
                    status=ExtensionStatus(code=1, message=str(exc)), response=[]
                )
        return ExtensionResponse(status=ExtensionStatus(code=0, message="OK"), response=rows)

    def getQueryColumns(self, sql: str) -> ExtensionResponse:
        with self.lock:
            try:
                cursor = self.db.execute(f"SELECT * FROM ({sql}) LIMIT 0")
            except sqlite3.Error as exc:
                return ExtensionResponse(
                    status=ExtensionStatus(code=1, message=str(exc)), response=[]
                )
            names = [d[0] for d in cursor.description or ()]
        return ExtensionResponse(
            status=ExtensionStatus(code=0, message="OK"), response=[{n: "TEXT"} for n in names]
        )

    # -- core → extension (a fresh connection per call, as osquery) ---------------------------

    @contextlib.contextmanager
    def _client(self, uuid: int, timeout: float) -> Iterator[Any]:
        sock = TSocket.TSocket(unix_socket=f"{self.path}.{uuid}")
        sock.setTimeout(int(timeout * 1000))
        transport = TTransport.TBufferedTransport(sock)
        transport.open()
        try:
            yield Extension.Client(TBinaryProtocol(transport))
        finally:
            transport.close()

    def extension(self, uuid: int, timeout: float = 5.0) -> _OneShot:
        return _OneShot(self, uuid, timeout)

    def uuid_of(self, name: str) -> int | None:
        for uuid, (info, _) in list(self.extensions_by_uuid.items()):
            if info.name == name:
                return uuid
        return None

    def wait_for(self, name: str, timeout: float = 15.0) -> int:
        """The uuid of extension `name` once it is registered and answers a ping."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            uuid = self.uuid_of(name)
            if uuid is not None:
                with contextlib.suppress(Exception):
                    if self.extension(uuid, timeout=1).ping().code == 0:
                        return uuid
            time.sleep(0.05)
        raise TimeoutError(f"extension {name!r} did not register within {timeout}s")

    def generate(
        self,
        uuid: int,
        table: str,
        context: Mapping[str, Any] | str | None = None,
        timeout: float = 10,
    ) -> ExtensionResponse:
        request = {"action": "generate"}
        if context is not None:
            request["context"] = context if isinstance(context, str) else json.dumps(context)
        return self.extension(uuid, timeout).call("table", table, request)


def _version_at_least(least: str, version: str) -> bool:
    """osquery's versionAtLeast: dotted numbers compared in order (junk is refused)."""
    try:
        have = [int(part) for part in version.split(".")]
    except ValueError:
        return False
    return have >= [int(part) for part in least.split(".")]


class _OneShot:
    """Each method opens its own connection to the extension, calls, and closes."""

    def __init__(self, core: FakeCore, uuid: int, timeout: float) -> None:
        self.core, self.uuid, self.timeout = core, uuid, timeout

    def __getattr__(self, method: str) -> Any:
        def invoke(*args: Any) -> Any:
            with self.core._client(self.uuid, self.timeout) as client:
                return getattr(client, method)(*args)

        return invoke


def equals(column: str, value: Any, affinity: str = "TEXT") -> dict[str, Any]:
    """osquery's context JSON for `WHERE column = value`."""
    return {
        "constraints": [
            {"name": column, "list": [{"op": 2, "expr": str(value)}], "affinity": affinity}
        ]
    }


def socket_rows(
    count: int, *, names: Sequence[tuple[str, str]] = (), start_pid: int = 1000
) -> dict[str, list[dict[str, Any]]]:
    """Fixture rows for `count` remote sockets spread over processes (osquery's tables).

    `names` are (name, path) pairs given to the processes in turn; the default is a mix
    of common binaries. Also one loopback socket and one LISTEN socket the pack query drops.
    """
    binaries = list(names) or [
        ("nginx", "/usr/sbin/nginx"),
        ("curl", "/usr/bin/curl"),
        ("sshd", "/usr/sbin/sshd"),
        ("python3", "/usr/bin/python3.11"),
    ]
    processes = [
        {
            "pid": 1,
            "name": "systemd",
            "path": "/usr/lib/systemd/systemd",
            "cmdline": "/sbin/init",
            "cwd": "/",
            "uid": 0,
            "parent": 0,
        }
    ]
    sockets = []
    per_process = 20
    pids = max(1, (count + per_process - 1) // per_process)
    for i in range(pids):
        pid = start_pid + i
        name, path = binaries[i % len(binaries)]
        processes.append(
            {
                "pid": pid,
                "name": name,
                "path": path,
                "cmdline": f"{path} --worker {i}",
                "cwd": "/",
                "uid": 33 if i % 2 else 0,
                "parent": 1,
            }
        )
    for n in range(count):
        pid = start_pid + n // per_process
        sockets.append(
            {
                "pid": pid, "fd": 10 + n % per_process, "socket": 100000 + n, "family": 2, "protocol": 6,
                "local_address": "10.0.0.5", "local_port": 40000 + n % 20000,
                "remote_address": f"93.184.{n // 250 % 250}.{n % 250}", "remote_port": 443,
                "state": "ESTABLISHED", "net_namespace": 4026531840, "path": "",
            }
        )  # fmt: skip
    sockets.append(
        {"pid": start_pid, "fd": 3, "socket": 99, "family": 2, "protocol": 6, "local_address": "127.0.0.1", "local_port": 5000, "remote_address": "127.0.0.1", "remote_port": 6000, "state": "ESTABLISHED", "net_namespace": 4026531840}
    )  # fmt: skip
    sockets.append(
        {"pid": start_pid, "fd": 4, "socket": 98, "family": 2, "protocol": 6, "local_address": "0.0.0.0", "local_port": 80, "remote_address": "0.0.0.0", "remote_port": 0, "state": "LISTEN", "net_namespace": 4026531840}
    )  # fmt: skip
    return {
        "processes": processes,
        "process_open_sockets": sockets,
        "users": [{"uid": 0, "username": "root"}, {"uid": 33, "username": "www-data"}],
        "listening_ports": [
            {"pid": start_pid, "port": 80, "protocol": 6, "family": 2, "address": "0.0.0.0"}
        ],
    }


def fill(core: FakeCore, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    for table, items in rows.items():
        core.insert(table, items)
