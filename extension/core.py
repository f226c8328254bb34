"""Talking to osquery core's extension manager: one fresh, bounded connection per call.

Never the SDK's shared `ExtensionClient`: the watchdog's pings, registration and every
table's `query()` each open their own UNIX-socket connection with a socket timeout, so a
slow query cannot stall a ping and a hung core cannot hang a table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from osquery.extensions.ExtensionManager import Client
from osquery.extensions.ttypes import InternalExtensionInfo
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TException
from thrift.transport import TSocket, TTransport

SDK_VERSION = "5.0.0"
MIN_SDK_VERSION = "1.8.0"


class CoreError(RuntimeError):
    """Core could not be reached or answered with an error status."""


class CoreRefused(CoreError):
    """Core answered, with an error status (e.g. SQL it cannot run)."""


@contextlib.contextmanager
def connect(path: str, timeout: float) -> Iterator[Any]:
    """An ExtensionManager client on a new connection to `path`, closed on exit."""
    sock = TSocket.TSocket(unix_socket=path)
    sock.setTimeout(max(1, int(timeout * 1000)))
    transport = TTransport.TBufferedTransport(sock)
    try:
        transport.open()
    except TTransport.TTransportException as exc:
        transport.close()
        raise CoreError(f"cannot connect to osquery at {path}: {exc}") from None
    try:
        yield Client(TBinaryProtocol(transport))
    except (TException, OSError) as exc:
        raise CoreError(f"osquery at {path}: {type(exc).__name__}: {exc}") from None
    finally:
        transport.close()


def ping(path: str, timeout: float) -> bool:
    try:
        with connect(path, timeout) as client:
            return int(client.ping().code) == 0
    except CoreError:
        return False


def registered(path: str, uuid: int, name: str, timeout: float) -> bool | None:
    """Whether core at `path` lists extension `uuid` as `name`; None when core cannot
    be reached. False means a different core is there now (osqueryd restarted its
    worker between two checks): it has never heard of this process."""
    try:
        with connect(path, timeout) as client:
            extensions = client.extensions() or {}
    except CoreError:
        return None
    info = extensions.get(uuid)
    return info is not None and info.name == name


def query(path: str, sql: str, timeout: float) -> list[dict[str, str]]:
    """Rows of `sql` run by core (all values strings); CoreError on failure."""
    with connect(path, timeout) as client:
        response = client.query(sql)
    if response.status is None or response.status.code != 0:
        message = response.status.message if response.status else "no status"
        raise CoreRefused(f"osquery refused the query: {message}")
    return list(response.response or [])


def register(
    path: str,
    name: str,
    version: str,
    routes: Mapping[str, Mapping[str, list[dict[str, str]]]],
    timeout: float,
) -> int:
    """Register with core; the uuid it assigns (CoreError when refused)."""
    info = InternalExtensionInfo(
        name=name, version=version, sdk_version=SDK_VERSION, min_sdk_version=MIN_SDK_VERSION
    )
    with connect(path, timeout) as client:
        result = client.registerExtension(info, dict(routes))
    if result.code != 0:
        raise CoreError(f"osquery refused to register extension {name!r}: {result.message}")
    return int(result.uuid)


def deregister(path: str, uuid: int, timeout: float) -> None:
    with contextlib.suppress(CoreError), connect(path, timeout) as client:
        client.deregisterExtension(uuid)
