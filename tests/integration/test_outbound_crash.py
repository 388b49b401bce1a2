"""The sender killed (SIGKILL) mid-delivery loses nothing: at most one duplicate."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsserver import LocalDNS
from tests.support.outbound import REMOTE, sender_server, submit, wait_until
from tests.support.server import free_port
from tests.support.smtppeer import SMTPPeer

pytestmark = pytest.mark.integration


@pytest.fixture
def dns() -> Iterator[LocalDNS]:
    with LocalDNS() as server:
        server.add(REMOTE, "A", "127.0.0.1")  # no MX: the implicit MX (RFC 5321 5.1)
        yield server


def test_killed_during_data_delivers_after_restart(tmp_path: Path, dns: LocalDNS) -> None:
    port = free_port()
    body = b"Subject: crash\r\n\r\nmust arrive\r\n"
    with SMTPPeer("127.0.0.1", port) as peer:
        peer.handler.data_delay = 30.0  # the peer has the message but has not said 250
        sender = sender_server(tmp_path, dns, port)
        sender.start()
        try:
            submit(sender, [f"bob@{REMOTE}"], body)
            wait_until(lambda: peer.received, what="the first copy")
            sender.kill()  # before the 250: the queue still holds the entry
            assert "1 message(s) queued" in sender.cli("queue", "list")
            sender.start()
            wait_until(lambda: len(peer.received) >= 2, what="the redelivery")
            wait_until(lambda: "0 message(s) queued" in sender.cli("queue", "list"))
            time.sleep(1.5)  # a third copy would show up by now
        finally:
            assert sender.stop() == 0
    copies = [r.content for r in peer.received]
    assert len(copies) == 2 and all(c.endswith(body) for c in copies)
