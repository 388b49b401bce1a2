"""Mail leaves: a real Postar relays to a second Postar and to scripted SMTP peers, finding
them through a DNS server the test runs on loopback. Bounded: every wait has a deadline."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from tests.support.dnsserver import LocalDNS
from tests.support.outbound import ALICE, REMOTE, pop3_messages, sender_server, submit, wait_until
from tests.support.server import DOMAIN, PostarServer, free_port
from tests.support.smtppeer import SMTPPeer

pytestmark = pytest.mark.integration


@pytest.fixture
def dns() -> Iterator[LocalDNS]:
    with LocalDNS() as server:
        server.add(REMOTE, "MX", (10, f"mx.{REMOTE}"))
        server.add(f"mx.{REMOTE}", "A", "127.0.0.1")
        yield server


def zone_txt(zone: str) -> dict[bytes, bytes]:
    """TXT records from `postar dns` output: name -> the strings joined."""
    out: dict[bytes, bytes] = {}
    for line in zone.splitlines():
        m = re.match(r"^(\S+) \d+ IN TXT (.*)$", line)
        if m:
            out[m.group(1).encode()] = "".join(re.findall(r'"([^"]*)"', m.group(2))).encode()
    return out


def test_delivers_to_second_postar_dkim_signed(tmp_path: Path, dns: LocalDNS) -> None:
    (tmp_path / "b").mkdir()
    receiver = PostarServer(tmp_path / "b", roles=("smtp", "pop3"), hostname=f"mx.{REMOTE}")
    receiver.add_domain(REMOTE)
    receiver.add_user(f"bob@{REMOTE}")
    receiver.start()
    sender = sender_server(tmp_path / "a", dns, receiver.ports["smtp"])
    sender.start()
    try:
        body = (
            f"From: Alice <{ALICE}>\r\nTo: bob@{REMOTE}\r\nSubject: outbound\r\n"
            "Message-ID: <o1@example.test>\r\n\r\nacross servers\r\n.with a dot\r\n"
        ).encode()
        submit(sender, [f"bob@{REMOTE}"], body)
        [got] = wait_until(lambda: pop3_messages(receiver, f"bob@{REMOTE}"), what="delivery")
        assert got.endswith(body)
        records = zone_txt(sender.cli("dns", DOMAIN))
        signed = got[got.find(b"DKIM-Signature:") :]
        assert signed.count(b"DKIM-Signature:") == 2  # rsa-sha256 and ed25519-sha256
        for i in range(2):
            assert dkim.DKIM(signed).verify(i, dnsfunc=lambda n, timeout=5: records.get(n))
        wait_until(lambda: "0 message(s) queued" in sender.cli("queue", "list"), what="empty")
    finally:
        assert sender.stop() == 0
        assert receiver.stop() == 0


def test_4xx_then_250_delivered_after_retry(tmp_path: Path, dns: LocalDNS) -> None:
    port = free_port()
    with SMTPPeer("127.0.0.1", port) as peer:
        peer.handler.rcpt_script[f"bob@{REMOTE}"] = ["451 4.7.1 greylisted", "250 OK"]
        sender = sender_server(tmp_path, dns, port, retry=2.0)
        sender.start()
        try:
            submit(sender, [f"bob@{REMOTE}"], b"Subject: retry\r\n\r\nlater\r\n")
            listing = wait_until(
                lambda: (out := sender.cli("queue", "list")) and "greylisted" in out and out,
                what="the first attempt",
            )
            assert "attempts=1" in str(listing)
            wait_until(lambda: peer.received, what="the retry")
            assert peer.received[0].content.endswith(b"Subject: retry\r\n\r\nlater\r\n")
            wait_until(lambda: "0 message(s) queued" in sender.cli("queue", "list"))
        finally:
            assert sender.stop() == 0


def test_5xx_gives_sender_a_dsn(tmp_path: Path, dns: LocalDNS) -> None:
    port = free_port()
    with SMTPPeer("127.0.0.1", port) as peer:
        peer.handler.rcpt_script[f"nobody@{REMOTE}"] = ["550 5.1.1 no such user here"]
        sender = sender_server(tmp_path, dns, port)
        sender.start()
        try:
            submit(sender, [f"nobody@{REMOTE}"], b"Subject: doomed\r\n\r\nbody\r\n")
            [dsn] = wait_until(lambda: pop3_messages(sender, ALICE), what="the bounce")
        finally:
            assert sender.stop() == 0
    assert peer.received == []
    assert b"multipart/report; report-type=delivery-status" in dsn
    assert b"Action: failed" in dsn and b"Status: 5.1.1" in dsn
    assert b"550 5.1.1 no such user here" in dsn
    assert b"Subject: doomed" in dsn  # the original comes back


def test_null_mx_bounces(tmp_path: Path, dns: LocalDNS) -> None:
    dns.add("nomail.test", "MX", (0, "."))
    sender = sender_server(tmp_path, dns, free_port())
    sender.start()
    try:
        submit(sender, ["x@nomail.test"], b"Subject: null mx\r\n\r\nbody\r\n")
        [dsn] = wait_until(lambda: pop3_messages(sender, ALICE), what="the bounce")
    finally:
        assert sender.stop() == 0
    assert b"Status: 5.1.10" in dsn


def test_queue_cli(tmp_path: Path, dns: LocalDNS) -> None:
    port = free_port()  # nobody listens yet: the message waits in the queue
    sender = sender_server(tmp_path, dns, port, retry=3600)
    sender.start()
    try:
        submit(sender, [f"bob@{REMOTE}", f"carol@{REMOTE}"], b"Subject: q\r\n\r\nbody\r\n")
        submit(sender, [f"dave@{REMOTE}"], b"Subject: q2\r\n\r\nbody\r\n")
        listing = str(
            wait_until(
                lambda: (
                    (out := sender.cli("queue", "list")) and out.count("attempts=1") == 2 and out
                ),
                what="two failed attempts",
            )
        )
        assert "2 message(s) queued" in listing and "last error:" in listing
        # The list is ordered by next try, which two failed attempts reach in either order;
        # entry ids follow submission order (bob and carol's message first).
        ids = sorted(int(line.split()[0]) for line in listing.splitlines() if "<" in line)
        shown = sender.cli("queue", "show", str(ids[0]))
        assert f"recipient: bob@{REMOTE}" in shown and f"recipient: carol@{REMOTE}" in shown
        assert "Subject: q" in shown and "attempts: 1" in shown
        assert "deleted" in sender.cli("queue", "delete", str(ids[1]))
        assert "1 message(s) queued" in sender.cli("queue", "list")
        # Hold (postsuper -h): untried even by a flush, until released.
        assert "1 message(s) held" in sender.cli("queue", "hold", "--all")
        assert "next=held" in sender.cli("queue", "list")
        assert "0 message(s) scheduled now" in sender.cli("queue", "flush")
        assert "1 message(s) released" in sender.cli("queue", "release", str(ids[0]))
        assert "next=held" not in sender.cli("queue", "list")
        assert "give one queue entry ID or --all" in sender.cli("queue", "hold", check=False)
        with SMTPPeer("127.0.0.1", port) as peer:
            assert "1 message(s) scheduled now" in sender.cli("queue", "flush")

            def flushed() -> bool:
                # The worker remembers a dead destination for 10 s; flush until it tries.
                if not peer.received:
                    sender.cli("queue", "flush")
                    time.sleep(1.0)
                return bool(peer.received)

            wait_until(flushed, timeout=30, what="delivery after flush")
        assert sorted(peer.received[0].recipients) == [f"bob@{REMOTE}", f"carol@{REMOTE}"]
        assert "0 message(s) queued" in sender.cli("queue", "list")
        assert sender.cli("queue", "retry", "999", check=False).count("no queue entry 999")
    finally:
        assert sender.stop() == 0
