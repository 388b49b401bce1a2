"""ENVELOPE and BODYSTRUCTURE for every message of the SpamAssassin corpus (issue 3): our
encoder never fails on real, messy MIME, and an independent IMAP parser (imapclient's) reads
every answer back with the structure we stored."""

from __future__ import annotations

import re

import pytest

from postar.imap.bodystructure import encode_body, encode_envelope
from postar.mime import parse_message
from postar.mime.structure import BodyPart
from tests.support.corpus import require_corpus

response_parser = pytest.importorskip("imapclient.response_parser")


def _leaves(part: BodyPart) -> int:
    if part.children:
        return sum(_leaves(c) for c in part.children)
    return 1


def _parsed_leaves(node: object) -> int:
    # imapclient gives a multipart as a BodyData whose first item is a list of children.
    if isinstance(node, tuple | list) and node and isinstance(node[0], list):
        return sum(_parsed_leaves(child) for child in node[0])
    return 1


def _as_imaplib(line: bytes) -> list[bytes | tuple[bytes, bytes]]:
    """Split a response with literals ({n}CRLF data) the way imaplib delivers it."""
    out: list[bytes | tuple[bytes, bytes]] = []
    pos = 0
    for match in re.finditer(rb"\{(\d+)\}\r\n", line):
        if match.start() < pos:
            continue  # inside an earlier literal's data
        start = match.end()
        data = line[start : start + int(match.group(1))]
        out.append((line[pos : match.start()] + match.group(0)[:-2], data))
        pos = start + len(data)
    out.append(line[pos:])
    return out


def test_every_corpus_message_encodes_and_reads_back() -> None:
    paths = require_corpus()
    assert len(paths) > 6000
    for path in paths:
        raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        parsed = parse_message(raw, with_text=False)
        envelope = encode_envelope(parsed.envelope)
        structure = encode_body(parsed.root, extensible=True)
        # imapclient reads fetch data as imaplib hands it over: "1 (...)".
        line = b"1 (ENVELOPE " + envelope + b" BODYSTRUCTURE " + structure + b")"
        try:
            fetched = response_parser.parse_fetch_response(_as_imaplib(line))
        except Exception as exc:  # the oracle's own error type varies by version
            raise AssertionError(f"{path.name}: imapclient cannot parse {line[:300]!r}") from exc
        data = fetched[1]
        assert data[b"ENVELOPE"].subject == (
            parsed.envelope.subject.encode("utf-8", "surrogateescape")
            if parsed.envelope.subject is not None
            else None
        ), path.name
        assert _parsed_leaves(data[b"BODYSTRUCTURE"]) == _leaves(parsed.root), path.name
