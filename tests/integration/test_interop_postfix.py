"""Interoperation with Postfix from Debian's packages, both ways, on loopback.

- Postfix relays into Postar: a private Postfix instance with relayhost = [127.0.0.1]:<Postar's
  smtp port> takes a message by SMTP and its smtp(8) client hands it to Postar, which files it
  in bob's Inbox (read over POP3).
- Postar delivers to Postfix: Postar finds the Postfix instance through the loopback DNS server
  (MX, then mx_port), uses STARTTLS against Postfix's smtpd, and Postfix's virtual(8) writes the
  message into a Maildir; the DKIM signatures Postar added still verify there.
- Postar to a second Postar: tests/integration/test_outbound_delivery.py.

Skips when postfix is not installed, fails instead when CI is set (tests/support/postfix.py).
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
import trustme

from tests.support.dnsserver import LocalDNS
from tests.support.outbound import ALICE, pop3_messages, sender_server, submit, wait_until
from tests.support.postfix import PostfixInstance, require_postfix
from tests.support.server import DOMAIN, PostarServer

pytestmark = pytest.mark.integration

PF_DOMAIN = "pf.test"
PF_USER = f"carol@{PF_DOMAIN}"


@pytest.fixture(autouse=True)
def _postfix_available() -> None:
    require_postfix()


def _dump(pf: PostfixInstance, *servers: PostarServer) -> str:
    return "\n".join(
        ["postfix log:", pf.log()[-3000:]] + [f"postar log:\n{s.log()[-3000:]}" for s in servers]
    )


def test_postfix_relays_into_postar(tmp_path: Path) -> None:
    (tmp_path / "postar").mkdir()
    postar = PostarServer(tmp_path / "postar", roles=("smtp", "pop3"))
    postar.add_domain(DOMAIN)
    postar.add_user(f"bob@{DOMAIN}")
    postar.start()
    pf = PostfixInstance(relayhost=f"[127.0.0.1]:{postar.ports['smtp']}")
    try:
        pf.start()
        body = (
            f"From: Dave <dave@{PF_DOMAIN}>\r\nTo: bob@{DOMAIN}\r\nSubject: via postfix\r\n"
            "Message-ID: <pf1@pf.test>\r\n\r\nrelayed by Postfix\r\n.a leading dot\r\n"
        ).encode()
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=10) as smtp:
            assert smtp.sendmail(f"dave@{PF_DOMAIN}", [f"bob@{DOMAIN}"], body) == {}
        try:
            [got] = wait_until(
                lambda: pop3_messages(postar, f"bob@{DOMAIN}"), timeout=30, what="relay"
            )
        except AssertionError as exc:
            raise AssertionError(_dump(pf, postar)) from exc
        # Postfix's hop is in the trace, then Postar's; the body (dot included) is intact.
        assert b"Subject: via postfix" in got
        assert got.endswith(b"\r\n\r\nrelayed by Postfix\r\n.a leading dot\r\n")
        assert re.search(rb"Received: from postfix\.interop\.test", got), got[:800]
        assert b"Return-Path: <dave@pf.test>" in got
        assert "status=sent" in pf.log()
    finally:
        pf.stop()
        assert postar.stop() == 0


@pytest.fixture
def dns() -> Iterator[LocalDNS]:
    with LocalDNS() as server:
        server.add(PF_DOMAIN, "MX", (10, f"mx.{PF_DOMAIN}"))
        server.add(f"mx.{PF_DOMAIN}", "A", "127.0.0.1")
        yield server


def test_postar_delivers_to_postfix_over_starttls(tmp_path: Path, dns: LocalDNS) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert(f"mx.{PF_DOMAIN}")
    (tmp_path / "pf-tls").mkdir()
    cert_file, key_file = tmp_path / "pf-tls" / "cert.pem", tmp_path / "pf-tls" / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    pf = PostfixInstance(
        hostname=f"mx.{PF_DOMAIN}",
        mailboxes=(PF_USER,),
        tls_cert=cert_file,
        tls_key=key_file,
        # Postfix writes whether the inbound session used TLS into its Received header.
        extra="smtpd_tls_received_header = yes\n",
    )
    pf.start()
    sender = sender_server(tmp_path / "postar", dns, pf.port)
    try:
        sender.start()
        body = (
            f"From: Alice <{ALICE}>\r\nTo: {PF_USER}\r\nSubject: to postfix\r\n"
            "Message-ID: <o2@example.test>\r\n\r\nPostar to Postfix\r\n.dot line\r\n"
        ).encode()
        submit(sender, [PF_USER], body)
        try:
            [got] = wait_until(lambda: pf.messages(PF_USER), timeout=30, what="maildir")
        except AssertionError as exc:
            raise AssertionError(_dump(pf, sender)) from exc
        got = got.replace(b"\n", b"\r\n")  # virtual(8) stores LF line ends in the Maildir
        assert got.endswith(b"\r\n\r\nPostar to Postfix\r\n.dot line\r\n")
        assert b"(using TLS" in got  # our STARTTLS with Postfix's smtpd
        assert b"Delivered-To: carol@pf.test" in got
        # Loopback clients count as local to Postfix (local_header_rewrite_clients), so its
        # cleanup added the missing Date: the DKIM signatures must survive that
        # (queue/dkim.py ADDED_IN_TRANSIT) and verify against `postar dns`.
        assert re.search(rb"\r\nDate: ", got.split(b"\r\n\r\n", 1)[0])
        records: dict[bytes, bytes] = {}
        for line in sender.cli("dns", DOMAIN).splitlines():
            m = re.match(r"^(\S+) \d+ IN TXT (.*)$", line)
            if m:
                records[m.group(1).encode()] = "".join(
                    re.findall(r'"([^"]*)"', m.group(2))
                ).encode()
        signed = got[got.find(b"DKIM-Signature:") :]
        assert signed.count(b"DKIM-Signature:") == 2
        for i in range(2):
            assert dkim.DKIM(signed).verify(i, dnsfunc=lambda n, timeout=5: records.get(n))
        wait_until(lambda: "0 message(s) queued" in sender.cli("queue", "list"), what="empty")
    finally:
        assert sender.stop() == 0
        pf.stop()


def test_round_trip_postar_postfix_postar(tmp_path: Path, dns: LocalDNS) -> None:
    """Postar -> Postfix (MX) -> Postar (relayhost): both directions in one message's path,
    and a 5xx from Postfix comes back to the sender as a DSN."""
    (tmp_path / "b").mkdir()
    receiver = PostarServer(tmp_path / "b", roles=("smtp", "pop3"), hostname="mx.final.test")
    receiver.add_domain("final.test")
    receiver.add_user("erin@final.test")
    receiver.start()
    # Postfix relays everything for final.test to the receiving Postar; pf.test has no users,
    # so virtual(8)'s map refuses unknown recipients with 550 at RCPT.
    pf = PostfixInstance(
        hostname=f"mx.{PF_DOMAIN}",
        mailboxes=(PF_USER,),
        extra=(
            "relay_domains = final.test\ntransport_maps = texthash:$config_directory/transport\n"
        ),
    )
    (pf.etc / "transport").write_text(f"final.test smtp:[127.0.0.1]:{receiver.ports['smtp']}\n")
    dns.add("final.test", "MX", (10, f"mx.{PF_DOMAIN}"))
    sender = sender_server(tmp_path / "a", dns, pf.port)
    try:
        pf.start()
        sender.start()
        submit(sender, ["erin@final.test"], b"Subject: round trip\r\n\r\nthere and on\r\n")
        submit(sender, [f"nobody@{PF_DOMAIN}"], b"Subject: unknown\r\n\r\nbounce me\r\n")
        try:
            [got] = wait_until(
                lambda: pop3_messages(receiver, "erin@final.test"), timeout=30, what="round trip"
            )
            [dsn] = wait_until(lambda: pop3_messages(sender, ALICE), timeout=30, what="bounce")
        except AssertionError as exc:
            raise AssertionError(_dump(pf, sender, receiver)) from exc
        # Postfix (loopback counts as a local client) added Date, Message-ID and From.
        assert b"Subject: round trip\r\n" in got and got.endswith(b"\r\n\r\nthere and on\r\n")
        assert got.count(b"Received:") >= 3  # Postar, Postfix, Postar
        assert b"Action: failed" in dsn and b"Status: 5.1.1" in dsn
        assert b"Remote-MTA: dns; mx.pf.test" in dsn
    finally:
        assert sender.stop() == 0
        pf.stop()
        assert receiver.stop() == 0
