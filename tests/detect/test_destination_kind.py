"""Every signal says what kind of address its connection went to (the investigation
guide's "internal or external?"): in the document, ECS, Slack, the CLI and explain."""

from __future__ import annotations

import pytest

from rarenet.baseline.deliver.examples import example_record
from rarenet.baseline.deliver.formats import ecs_document, native_document, slack_text
from rarenet.baseline.detect.destination import KINDS, destination_kind


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("203.0.113.7", "external"),  # documentation ranges stand for the internet
        ("8.8.8.8", "external"),
        ("2001:db8::7", "external"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("172.32.0.9", "external"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # shared address space (carrier NAT, Tailscale)
        ("fd12:3456::1", "private"),
        ("::ffff:10.1.2.3", "private"),
        ("127.0.0.53", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("", "none"),
        (None, "none"),
        ("/run/docker.sock", "none"),
        ("10.0.0.1\x1b[2J", "none"),
    ],
)
def test_destination_kinds(address: str | None, kind: str) -> None:
    assert destination_kind(address) == kind and kind in KINDS


def test_every_format_says_the_kind_and_old_documents_get_it_from_the_address() -> None:
    record = example_record(remote_address="10.20.30.40")
    assert native_document(record)["destination"]["kind"] == "private"
    assert ecs_document(record)["rarenet"]["destination_kind"] == "private"
    assert "connected to 10.20.30.40:4444 (private, no other host before) as www-data" in (
        slack_text(record)
    )
    stored_before = example_record()
    del stored_before.document["destination"]["kind"]
    assert native_document(stored_before)["destination"]["kind"] == "external"
