"""Which header fields the DKIM signature covers (RFC 6376 5.4): absent Date and Message-ID
are left out of h=, so an MTA that adds them on the way does not break the signature."""

from __future__ import annotations

from pathlib import Path

import dkim

from postar.queue.dkim import Signer, create_keys, headers_to_sign

BARE = b"From: a@example.org\r\nTo: b@remote.test\r\nSubject: s\r\n\r\nbody\r\n"
DATED = b"Date: Fri, 27 Nov 2026 00:00:00 +0000\r\nMessage-ID: <m@example.org>\r\n" + BARE


def verifier(tmp_path: Path) -> tuple[Signer, dict[bytes, bytes]]:
    keys = create_keys(tmp_path, "example.org")
    return Signer(tmp_path), {f"{k.record_name}.".encode(): k.record_value.encode() for k in keys}


def test_headers_to_sign() -> None:
    assert b"date" not in headers_to_sign(BARE) and b"message-id" not in headers_to_sign(BARE)
    assert b"cc" in headers_to_sign(BARE)  # still guarded against being added
    assert {b"date", b"message-id"} <= set(headers_to_sign(DATED))


def test_date_added_in_transit_keeps_signatures_valid(tmp_path: Path) -> None:
    signer, records = verifier(tmp_path)
    signed = signer.sign_headers(BARE, "a@example.org") + BARE
    # What Postfix's cleanup (or a submission server, RFC 6409 8.2) adds to a bare message.
    later = signed.replace(b"\r\n\r\n", b"\r\nDate: Sat, 28 Nov 2026 00:00:00 +0000\r\n\r\n", 1)
    for i in range(2):
        assert dkim.DKIM(later).verify(i, dnsfunc=lambda n, timeout=5: records.get(n))


def test_a_changed_date_breaks_the_signature(tmp_path: Path) -> None:
    signer, records = verifier(tmp_path)
    signed = signer.sign_headers(DATED, "a@example.org") + DATED
    assert dkim.DKIM(signed).verify(0, dnsfunc=lambda n, timeout=5: records.get(n))
    forged = signed.replace(b"27 Nov 2026", b"01 Jan 2030")
    assert not dkim.DKIM(forged).verify(0, dnsfunc=lambda n, timeout=5: records.get(n))
