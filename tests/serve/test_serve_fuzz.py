"""Fuzz the running server from its own OpenAPI document: no 5xx, no crash."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from support.serve_process import METRICS_TOKEN, TOKEN, ServerProcess

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 60  # per operation; the whole test stays well under a minute


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(Path(tmp_path_factory.mktemp("fuzz")), max_body="64KiB") as running:
        yield running


def operations(url: str) -> list[tuple[str, st.SearchStrategy[schemathesis.Case]]]:
    """Every operation of the served document, with positive and negative cases (data
    that breaks the schema: wrong types, missing parameters, odd bodies)."""
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
        found.append((operation.label, strategy))
    return found


def test_no_server_errors_from_the_openapi_document(server: ServerProcess) -> None:
    found = operations(server.url)
    # (schemathesis leaves out the document's own path, /openapi.json)
    assert {label.split()[1] for label, _ in found} == {
        "/v1/ingest", "/v1/snapshot", "/v1/signals", "/healthz", "/metrics",
    }  # fmt: skip
    for label, strategy in found:

        @given(case=strategy)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
                case.call_and_validate(
                    base_url=server.url, headers=headers, checks=[not_a_server_error], timeout=30
                )

        call()
        assert server.proc is not None and server.proc.poll() is None, f"died during {label}"
    assert server.get("/healthz").status_code == 200
    metrics_auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    posts = sum(
        float(line.split()[-1])
        for line in server.get("/metrics", headers=metrics_auth).text.splitlines()
        if line.startswith("rarenet_ingest_requests_total{")
    )
    assert posts >= MAX_EXAMPLES, "the fuzzer hardly reached POST /v1/ingest"
