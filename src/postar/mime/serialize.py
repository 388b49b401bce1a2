"""Store a ParsedMessage compactly and read it back, so FETCH never parses MIME again.

The format is JSON of positional lists (not dicts with repeated keys): a BODYSTRUCTURE of a few
parts costs a few hundred bytes. FORMAT is stored with it; a change of layout bumps it, and the
store migrates rows written in an older layout.
"""

from __future__ import annotations

import json
from typing import Any

from postar.mime.structure import Address, BodyPart, Envelope, ParsedMessage

FORMAT = 1


def _addr_out(addrs: tuple[Address, ...]) -> list[list[str | None]]:
    return [[a.name, a.adl, a.mailbox, a.host] for a in addrs]


def _addr_in(rows: list[list[str | None]]) -> tuple[Address, ...]:
    return tuple(Address(*row) for row in rows)


def _env_out(env: Envelope | None) -> list[Any] | None:
    if env is None:
        return None
    return [
        env.date,
        env.subject,
        _addr_out(env.from_),
        _addr_out(env.sender),
        _addr_out(env.reply_to),
        _addr_out(env.to),
        _addr_out(env.cc),
        _addr_out(env.bcc),
        env.in_reply_to,
        env.message_id,
    ]


def _env_in(row: list[Any] | None) -> Envelope | None:
    if row is None:
        return None
    return Envelope(
        date=row[0],
        subject=row[1],
        from_=_addr_in(row[2]),
        sender=_addr_in(row[3]),
        reply_to=_addr_in(row[4]),
        to=_addr_in(row[5]),
        cc=_addr_in(row[6]),
        bcc=_addr_in(row[7]),
        in_reply_to=row[8],
        message_id=row[9],
    )


def _part_out(p: BodyPart) -> list[Any]:
    return [
        p.start,
        p.body_start,
        p.end,
        p.type,
        p.subtype,
        [list(kv) for kv in p.params],
        p.id,
        p.description,
        p.encoding,
        p.md5,
        p.disposition,
        [list(kv) for kv in p.disposition_params],
        list(p.language),
        p.location,
        p.lines,
        [_part_out(c) for c in p.children],
        _part_out(p.message) if p.message is not None else None,
        _env_out(p.message_envelope),
    ]


def _part_in(row: list[Any]) -> BodyPart:
    return BodyPart(
        start=row[0],
        body_start=row[1],
        end=row[2],
        type=row[3],
        subtype=row[4],
        params=tuple((k, v) for k, v in row[5]),
        id=row[6],
        description=row[7],
        encoding=row[8],
        md5=row[9],
        disposition=row[10],
        disposition_params=tuple((k, v) for k, v in row[11]),
        language=tuple(row[12]),
        location=row[13],
        lines=row[14],
        children=[_part_in(c) for c in row[15]],
        message=_part_in(row[16]) if row[16] is not None else None,
        message_envelope=_env_in(row[17]),
    )


def dumps(parsed: ParsedMessage, *, with_search_text: bool = False) -> bytes:
    """Serialise the structure. Search text goes to the full-text index, not here, unless asked."""
    doc: list[Any] = [
        FORMAT,
        parsed.size,
        _env_out(parsed.envelope),
        _part_out(parsed.root),
        list(parsed.defects),
        parsed.extra,
    ]
    if with_search_text:
        doc += [parsed.search_headers, parsed.search_body]
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes) -> ParsedMessage:
    doc = json.loads(data)
    if not isinstance(doc, list) or doc[0] != FORMAT:
        raise ValueError(f"unknown parsed-message format {doc[0] if doc else None!r}")
    env = _env_in(doc[2])
    assert env is not None
    parsed = ParsedMessage(
        size=doc[1],
        envelope=env,
        root=_part_in(doc[3]),
        defects=tuple(doc[4]),
        extra=doc[5],
    )
    if len(doc) > 6:
        parsed.search_headers, parsed.search_body = doc[6], doc[7]
    return parsed
