"""Received and Return-Path (RFC 5321 4.4, RFC 3848 protocol names)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from postar.smtp.address import Mailbox
from postar.smtp.trace import TLSInfo, received_header, return_path_header, with_protocol

WHEN = datetime(2026, 11, 3, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("esmtp", "tls", "auth", "utf8", "name"),
    [
        (False, False, False, False, "SMTP"),
        (True, False, False, False, "ESMTP"),
        (True, True, False, False, "ESMTPS"),
        (True, False, True, False, "ESMTPA"),
        (True, True, True, False, "ESMTPSA"),
        (True, True, True, True, "UTF8SMTPSA"),
    ],
)
def test_with_protocol(esmtp: bool, tls: bool, auth: bool, utf8: bool, name: str) -> None:
    assert with_protocol(esmtp=esmtp, tls=tls, authenticated=auth, smtputf8=utf8) == name


def test_received_with_one_recipient_names_it() -> None:
    header = received_header(
        helo="mail.example.org",
        client_ip="192.0.2.7",
        client_hostname="mail.example.org",
        server_hostname="mx.example.net",
        protocol="ESMTPS",
        timestamp=WHEN,
        recipients=[Mailbox("bob", "example.net")],
        queue_id="4ZxT2",
        tls=TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256),
    )
    assert header == (
        b"Received: from mail.example.org (mail.example.org [192.0.2.7])\r\n"
        b"\tby mx.example.net (Postar) with ESMTPS id 4ZxT2\r\n"
        b"\t(TLSv1.3 TLS_AES_256_GCM_SHA384 256 bits) for <bob@example.net>;\r\n"
        b"\tTue, 03 Nov 2026 10:00:00 +0000\r\n"
    )


def test_received_with_several_recipients_has_no_for_clause() -> None:
    header = received_header(
        helo="c.example.org",
        client_ip="2001:db8::7",
        client_hostname=None,
        server_hostname="mx.example.net",
        protocol="ESMTP",
        timestamp=WHEN.astimezone(timezone(timedelta(hours=1))),
        recipients=[Mailbox("a", "example.net"), Mailbox("b", "example.net")],
    )
    assert b" for " not in header
    assert header.startswith(b"Received: from c.example.org ([IPv6:2001:db8::7]) by mx")
    assert header.endswith(b"; Tue, 03 Nov 2026 11:00:00 +0100\r\n")


def test_bogus_helo_is_defanged_into_a_comment() -> None:
    header = received_header(
        helo="evil)(\\injected;",
        client_ip="192.0.2.9",
        client_hostname=None,
        server_hostname="mx.example.net",
        protocol="SMTP",
        timestamp=WHEN,
    )
    assert header.startswith(b"Received: from [192.0.2.9] ([192.0.2.9] helo=evilinjected;)")


def test_received_needs_an_aware_timestamp_and_an_atom_id() -> None:
    common = {
        "helo": "c",
        "client_ip": "192.0.2.1",
        "client_hostname": None,
        "server_hostname": "mx",
        "protocol": "SMTP",
    }
    with pytest.raises(ValueError):
        received_header(**common, timestamp=datetime(2026, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        received_header(**common, timestamp=WHEN, queue_id="a b")  # type: ignore[arg-type]


def test_return_path() -> None:
    assert return_path_header(Mailbox("a", "example.org")) == b"Return-Path: <a@example.org>\r\n"
    assert return_path_header(None) == b"Return-Path: <>\r\n"
