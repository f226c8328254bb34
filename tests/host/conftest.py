"""Fixtures of the host-side tests (collector, extension, live reverse shell): a network
namespace of their own to connect into, and children reaped whatever a test does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.netns import Child, NetnsUnavailable, VethNamespace, children, veth_namespace


@pytest.fixture(scope="module")
def veth_ns() -> Iterator[VethNamespace]:
    """A fresh veth namespace for the module; skips when this machine cannot make one."""
    try:
        with veth_namespace() as made:
            yield made
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespace tests: {exc}")


@pytest.fixture
def kids() -> Iterator[list[Child]]:
    """Children started by a test; all are stopped and reaped when it ends."""
    with children() as started:
        yield started
