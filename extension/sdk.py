"""The one adapter between rarenet's tables and osquery's Thrift API.

osquery-python's plugin layer (TablePlugin, ExtensionManager, start_extension) has
quirks this module exists to contain:

* it turns `None` into the string "None" and leaves missing columns out — here every
  row has every declared column, `None` becomes "", bools "1"/"0", all values strings;
* it needs `generate` to return a list (it indexes rows) — here any iterable is
  materialised into a list of dicts;
* an exception in `generate`, a malformed `context` JSON, or an unknown action escapes
  as a Thrift `TApplicationException` (its unknown-action path even builds an invalid
  `ExtensionResponse`) — here every failure is an `ExtensionResponse` with status 1 and
  a message;
* its plugins are process-wide singletons (`Singleton`, class-level `_plugins`), so tests
  leak into each other — here a `Registry` is an ordinary object with `reset()`;
* `start_extension` shares one Thrift client between the watchdog and everything else
  and ends with `os._exit` — server.py wires the generated `Extension.Processor` itself
  and every call to core opens its own connection (core.py).

Only the generated Thrift types (`osquery.extensions.*`) are used from the SDK.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from osquery.extensions.Extension import Iface
from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus

from rarenet.extension.wire import encode_rows

log = logging.getLogger("rarenet.extension")

TEXT, INTEGER, BIGINT, DOUBLE = "TEXT", "INTEGER", "BIGINT", "DOUBLE"
EQUALS = 2  # osquery's ConstraintOperator EQUALS in the context JSON


class ContextError(ValueError):
    """A `context` osquery sent that cannot be read."""


@dataclass(frozen=True)
class QueryContext:
    """The parts of osquery's query context a table can use."""

    equals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # column → = values
    columns_used: frozenset[str] | None = None

    def equal(self, column: str) -> tuple[str, ...]:
        return self.equals.get(column, ())


class Table(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def columns(self) -> Sequence[tuple[str, str]]: ...

    def generate(self, context: QueryContext) -> Iterable[Mapping[str, Any]]: ...


def parse_context(raw: str | None) -> QueryContext:
    """osquery's context JSON → `QueryContext`; `ContextError` if it is not JSON or not
    an object. Constraint shapes this code does not understand are ignored (osquery
    applies every constraint again to the rows it gets, so ignoring one is safe)."""
    if raw is None or raw == "":
        return QueryContext()
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise ContextError(f"malformed context JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ContextError("malformed context: not a JSON object")
    equals: dict[str, tuple[str, ...]] = {}
    constraints = document.get("constraints")
    for item in constraints if isinstance(constraints, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        terms = item.get("list")
        for term in terms if isinstance(terms, list) else ():
            if not isinstance(term, dict) or str(term.get("op")) != str(EQUALS):
                continue
            expr = term.get("expr")
            if isinstance(expr, str | int | float) and not isinstance(expr, bool):
                equals.setdefault(item["name"], ())
                equals[item["name"]] += (str(expr),)
    used = document.get("colsUsed")
    columns_used = (
        frozenset(c for c in used if isinstance(c, str)) if isinstance(used, list) else None
    )
    return QueryContext(equals, columns_used)


def cell(value: Any) -> str:
    """A row value as osquery wants it: always a string, never "None"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}" if value == value else ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def status(code: int, message: str, uuid: int | None = None) -> ExtensionStatus:
    return ExtensionStatus(code=code, message=message, uuid=uuid)


def error(message: str) -> ExtensionResponse:
    return ExtensionResponse(status=status(1, message), response=[])


class Registry:
    """The tables an extension offers. Not a singleton: tests make their own or reset."""

    def __init__(self, tables: Iterable[Table] = ()) -> None:
        self._tables: dict[str, Table] = {}
        for table in tables:
            self.add(table)

    def add(self, table: Table) -> None:
        if table.name in self._tables:
            raise ValueError(f"table {table.name!r} is already registered")
        self._tables[table.name] = table

    def reset(self) -> None:
        self._tables.clear()

    def table(self, name: str) -> Table | None:
        return self._tables.get(name)

    def routes(self) -> dict[str, dict[str, list[dict[str, str]]]]:
        """The registry broadcast to core in registerExtension: table → column routes."""
        return {"table": {name: column_routes(t) for name, t in self._tables.items()}}


def column_routes(table: Table) -> list[dict[str, str]]:
    return [{"id": "column", "name": n, "type": t, "op": "0"} for n, t in table.columns]


class Handler(Iface):  # type: ignore[misc]  # the generated Thrift interface is untyped
    """osquery's Extension service (ping, call, shutdown) over a `Registry`."""

    def __init__(
        self,
        registry: Registry,
        on_shutdown: Callable[[], None] = lambda: None,
        deadline: float | None = None,
        encoded: bool = False,
    ) -> None:
        self.registry = registry
        self.on_shutdown = on_shutdown
        self.deadline = deadline  # seconds a generate may take before an error answer
        self.encoded = encoded  # rows as wire bytes (extension/wire.py) instead of dicts
        self.calls = 0
        self._workers = Workers(2) if deadline is not None else None

    def ping(self) -> ExtensionStatus:
        return status(0, "OK")

    def shutdown(self) -> None:
        log.info("core requested shutdown")
        self.on_shutdown()

    def call(self, registry: str, item: str, request: Mapping[str, str]) -> ExtensionResponse:
        self.calls += 1
        try:
            return self._call(registry, item, request or {})
        except Exception as exc:  # never let an exception reach Thrift
            log.exception("call %s/%s failed", registry, item)
            return error(f"{registry}/{item}: internal error: {type(exc).__name__}: {exc}")

    def _call(self, registry: str, item: str, request: Mapping[str, str]) -> ExtensionResponse:
        if registry != "table":
            return error(f"unknown registry {registry!r}: this extension offers tables only")
        table = self.registry.table(item)
        if table is None:
            return error(f"unknown table {item!r}")
        action = request.get("action")
        if action == "columns":
            return ExtensionResponse(status=status(0, "OK"), response=column_routes(table))
        if action != "generate":
            return error(
                f"unknown action {action!r} for table {item!r} (expected generate or columns)"
            )
        try:
            context = parse_context(request.get("context"))
        except ContextError as exc:
            return error(f"{item}: {exc}")
        rows = self._generate(table, context)
        if isinstance(rows, ExtensionResponse):
            return rows
        return ExtensionResponse(status=status(0, "OK"), response=rows)

    def _generate(self, table: Table, context: QueryContext) -> Any:
        def run() -> Any:
            rows = table.generate(context)
            if self.encoded:
                return encode_rows([name for name, _ in table.columns], rows, cell)
            return materialise(table, rows)

        if self._workers is None or self.deadline is None:
            return run()
        future = self._workers.submit(run)
        try:
            return future.result(timeout=self.deadline)
        except concurrent.futures.TimeoutError:
            # osquery has its answer: a call still queued must not run later and hold a
            # worker from the calls that come after (a burst while core was slow would
            # otherwise fail the next healthy calls too)
            future.cancel()
            return error(f"{table.name}: generate took longer than {self.deadline:g}s")
        except Exception as exc:
            log.exception("generate %s failed", table.name)
            return error(f"{table.name}: {type(exc).__name__}: {exc}")


class Workers:
    """A few long-lived daemon threads that run generate calls, so a call can be
    abandoned at its deadline (osquery gets an error status) and the process can still
    exit; long-lived threads also keep the allocator from spreading over new arenas."""

    def __init__(self, count: int) -> None:
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]]
        self._queue = queue.SimpleQueue()
        for index in range(count):
            threading.Thread(
                target=self._work, name=f"rarenet-generate-{index}", daemon=True
            ).start()

    def submit(self, job: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, job))
        return future

    def _work(self) -> None:
        while True:
            future, job = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)
            del future, job


def materialise(table: Table, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """A list of complete rows of strings (every declared column present)."""
    names = [name for name, _ in table.columns]
    return [{name: cell(row.get(name)) for name in names} for row in rows]
