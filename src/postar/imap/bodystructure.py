"""ENVELOPE and BODY/BODYSTRUCTURE from the stored parse (postar.mime.structure).

RFC 9051 section 7.5.2 and the body grammar of section 9:
  body-type-1part = (body-type-basic / body-type-msg / body-type-text) [SP body-ext-1part]
  body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
Media types, subtypes, encodings, parameter names and disposition types are sent upper case
as in the RFC's examples; values as stored.
"""

from __future__ import annotations

from postar.imap.strings import encode_nstring, encode_string
from postar.mime.structure import Address, BodyPart, Envelope


def _addresses(addrs: tuple[Address, ...], utf8: bool) -> bytes:
    # RFC 9051 7.5.2: an empty address list is NIL; addresses follow each other without SP.
    if not addrs:
        return b"NIL"
    out = bytearray(b"(")
    for a in addrs:
        out += (
            b"("
            + b" ".join(encode_nstring(v, utf8=utf8) for v in (a.name, a.adl, a.mailbox, a.host))
            + b")"
        )
    return bytes(out + b")")


def encode_envelope(env: Envelope, *, utf8: bool = False) -> bytes:
    # RFC 9051 7.5.2: absent or empty Sender and Reply-To take the value of From.
    sender = env.sender or env.from_
    reply_to = env.reply_to or env.from_
    fields = (
        encode_nstring(env.date, utf8=utf8),
        encode_nstring(env.subject, utf8=utf8),
        _addresses(env.from_, utf8),
        _addresses(sender, utf8),
        _addresses(reply_to, utf8),
        _addresses(env.to, utf8),
        _addresses(env.cc, utf8),
        _addresses(env.bcc, utf8),
        encode_nstring(env.in_reply_to, utf8=utf8),
        encode_nstring(env.message_id, utf8=utf8),
    )
    return b"(" + b" ".join(fields) + b")"


def _params(params: tuple[tuple[str, str], ...], utf8: bool) -> bytes:
    # body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
    if not params:
        return b"NIL"
    return (
        b"("
        + b" ".join(
            encode_string(k.upper(), utf8=utf8) + b" " + encode_string(v, utf8=utf8)
            for k, v in params
        )
        + b")"
    )


def _disposition(part: BodyPart, utf8: bool) -> bytes:
    # body-fld-dsp = "(" string SP body-fld-param ")" / nil
    if part.disposition is None:
        return b"NIL"
    return (
        b"("
        + encode_string(part.disposition.upper(), utf8=utf8)
        + b" "
        + _params(part.disposition_params, utf8)
        + b")"
    )


def _language(part: BodyPart, utf8: bool) -> bytes:
    # body-fld-lang = nstring / "(" string *(SP string) ")"
    if not part.language:
        return b"NIL"
    if len(part.language) == 1:
        return encode_string(part.language[0], utf8=utf8)
    return b"(" + b" ".join(encode_string(x, utf8=utf8) for x in part.language) + b")"


def _is_encapsulated(part: BodyPart) -> bool:
    # body-type-msg: message/rfc822, and message/global (RFC 9051 media-message)
    return (
        part.type == "message"
        and part.subtype in ("rfc822", "global")
        and part.message is not None
        and part.message_envelope is not None
    )


def encode_body(part: BodyPart, *, extensible: bool, utf8: bool = False, depth: int = 0) -> bytes:
    """BODYSTRUCTURE (extensible) or BODY (without extension data) of one part."""
    if depth > 100:  # a stored tree this deep is damaged; stop rather than recurse forever
        return b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0)'
    if part.is_multipart:
        children = b"".join(
            encode_body(ch, extensible=extensible, utf8=utf8, depth=depth + 1)
            for ch in part.children
        )
        if not children:  # 1*body: a multipart without parts is shown as one empty part
            children = b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0)'
        out = b"(" + children + b" " + encode_string(part.subtype.upper(), utf8=utf8)
        if extensible:
            # body-ext-mpart = body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP loc]]]
            out += b" " + b" ".join(
                (
                    _params(part.params, utf8),
                    _disposition(part, utf8),
                    _language(part, utf8),
                    encode_nstring(part.location, utf8=utf8),
                )
            )
        return out + b")"
    fields = [
        encode_string(part.type.upper(), utf8=utf8),
        encode_string(part.subtype.upper(), utf8=utf8),
        _params(part.params, utf8),
        encode_nstring(part.id, utf8=utf8),
        encode_nstring(part.description, utf8=utf8),
        encode_string(part.encoding.upper(), utf8=utf8),
        str(part.size).encode(),
    ]
    if _is_encapsulated(part):
        assert part.message is not None and part.message_envelope is not None
        fields.append(encode_envelope(part.message_envelope, utf8=utf8))
        fields.append(encode_body(part.message, extensible=extensible, utf8=utf8, depth=depth + 1))
        fields.append(str(part.lines).encode())
    elif part.type == "text":
        fields.append(str(part.lines).encode())
    if extensible:
        # body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]]
        fields += [
            encode_nstring(part.md5, utf8=utf8),
            _disposition(part, utf8),
            _language(part, utf8),
            encode_nstring(part.location, utf8=utf8),
        ]
    return b"(" + b" ".join(fields) + b")"
