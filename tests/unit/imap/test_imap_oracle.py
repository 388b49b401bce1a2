"""Our FETCH responses read back by a client written by someone else (imapclient, the test
oracle named in the team guide), and INTERNALDATE by the stdlib's imaplib."""

from __future__ import annotations

import imaplib
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from postar.imap.fetch import FetchItem, Section
from postar.imap.response import (
    BodySectionItem,
    BodyStructureItem,
    EnvelopeItem,
    FetchData,
    FlagsItem,
    InternalDateItem,
    NumberItem,
    ResponseEncoder,
)
from postar.mime.structure import Address, BodyPart, Envelope

response_parser = pytest.importorskip("imapclient.response_parser")

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n")


def as_imaplib_data(wire: bytes) -> list[bytes | tuple[bytes, bytes]]:
    """Split one FETCH response the way imaplib hands it to imapclient: "* n FETCH (" becomes
    "n (", literals become (text-up-to-the-literal-marker, literal-data) pairs, no final CRLF."""
    m = re.match(rb"\* (\d+) FETCH ", wire)
    assert m is not None and wire.endswith(b"\r\n")
    rest = m[1] + b" " + wire[m.end() : -2]
    out: list[bytes | tuple[bytes, bytes]] = []
    while (m := _LITERAL_AT_END.search(rest)) is not None:
        size = int(m[1])
        out.append((rest[: m.end() - 2], rest[m.end() : m.end() + size]))
        rest = rest[m.end() + size :]
    out.append(rest)
    return out


def test_imapclient_reads_our_fetch_response() -> None:
    env = Envelope(
        date="Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        subject='Jörg\'s "notes"',
        from_=(Address("Terry Gray", None, "gray", "cac.washington.edu"),),
        to=(Address(None, None, "imap", "cac.washington.edu"),),
        message_id="<B27397-0100000@cac.washington.edu>",
    )
    body = BodyPart(
        0,
        0,
        100,
        type="multipart",
        subtype="alternative",
        params=(("boundary", "b1"),),
        children=[
            BodyPart(0, 0, 10, params=(("charset", "utf-8"),), lines=1),
            BodyPart(0, 0, 20, subtype="html", lines=2, disposition="inline"),
        ],
    )
    message = b"Subject: x\r\n\r\nline one\r\nline two\r\n"
    response = FetchData(
        12,
        (
            NumberItem(FetchItem.UID, 4827),
            FlagsItem(("\\Seen", "$Forwarded")),
            InternalDateItem(
                datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7)))
            ),
            NumberItem(FetchItem.RFC822_SIZE, len(message)),
            NumberItem(FetchItem.MODSEQ, 12121231000),
            EnvelopeItem(env),
            BodyStructureItem(body, extensible=True),
            BodySectionItem(Section(), message),
        ),
    )
    parsed = response_parser.parse_fetch_response(
        as_imaplib_data(ResponseEncoder().encode(response)), normalise_times=False
    )
    data = parsed[4827]  # imapclient keys by UID when present
    assert data[b"SEQ"] == 12
    assert data[b"FLAGS"] == (b"\\Seen", b"$Forwarded")
    assert data[b"INTERNALDATE"] == datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7))
    )
    assert data[b"RFC822.SIZE"] == len(message)
    assert data[b"MODSEQ"] == (12121231000,)
    envelope = data[b"ENVELOPE"]
    assert envelope.subject == 'Jörg\'s "notes"'.encode()
    assert envelope.from_[0].mailbox == b"gray" and envelope.from_[0].name == b"Terry Gray"
    assert envelope.sender == envelope.from_  # RFC 9051: absent Sender is From
    assert envelope.message_id == b"<B27397-0100000@cac.washington.edu>"
    structure = data[b"BODYSTRUCTURE"]
    assert structure.is_multipart
    parts, subtype = structure[0], structure[1]
    assert subtype == b"ALTERNATIVE" and len(parts) == 2
    assert parts[1][:2] == (b"TEXT", b"HTML")
    assert data[b"BODY[]"] == message


def test_imaplib_reads_our_internaldate() -> None:
    wire = ResponseEncoder().encode(FetchData(1, (InternalDateItem(0.0),)))
    assert imaplib.Internaldate2tuple(wire) is not None
    when = datetime(2024, 3, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    wire = ResponseEncoder().encode(FetchData(1, (InternalDateItem(when),)))
    parsed = imaplib.Internaldate2tuple(wire)
    assert parsed is not None and time.mktime(parsed) == when.timestamp()
