"""Header fields: splitting and unfolding, RFC 2047 encoded words, MIME parameters.

Everything here takes what mail really contains (LF-only line ends, lines without a colon, raw
UTF-8 or Latin-1 bytes, NUL bytes, broken encoded words) and returns a best reading. Nothing
raises on bad input: a header is data from a stranger, and one bad field must not stop delivery.
"""

from __future__ import annotations

import binascii
import re

from postar.mime.address import parse_address_list
from postar.mime.charset import decode_text

__all__ = [
    "decode_words",
    "field_value",
    "first_values",
    "parse_address_list",
    "parse_content_disposition",
    "parse_content_type",
    "parse_params",
    "split_fields",
]

# RFC 5322 section 3.6.8: a field name is printable US-ASCII except the colon. Obsolete syntax
# (section 4.5) allows white space before the colon, which is not part of the name.
_FIELD_NAME = re.compile(rb"[!-9;-~]+")


def _header_text(raw: bytes) -> str:
    """Header bytes as text: UTF-8 when valid (RFC 6532), else Latin-1 so every byte survives."""
    if b"\x00" in raw:
        # NUL is not allowed in a field body (RFC 5322 section 3.2.3 obs-utext aside) and cannot
        # travel in an IMAP quoted string; dropping it is what other servers do.
        raw = raw.replace(b"\x00", b"")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def split_fields(block: bytes) -> list[tuple[str, str]]:
    """Split a header block into (name, value) pairs, in order, values unfolded.

    RFC 5322 section 2.2.3: unfolding removes each line break that is followed by white space;
    the white space stays. The value has leading and trailing white space removed. Lines that
    are neither a field nor a continuation (an mbox "From " line, garbage) are skipped; a
    continuation before any field is skipped too. The name keeps its case.
    """
    fields: list[tuple[str, str]] = []
    name: str | None = None
    parts: list[bytes] = []

    def flush() -> None:
        if name is not None:
            value = _header_text(b"".join(parts))
            fields.append((name, value.strip(" \t\r\n")))

    for line in block.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            # The blank line ends the block; anything after it is not ours to read.
            if name is not None or fields:
                break
            continue
        if line[0] in b" \t":
            if name is not None:
                parts.append(line)
            continue
        colon = line.find(b":")
        if colon > 0:
            candidate = line[:colon].rstrip(b" \t")
            if _FIELD_NAME.fullmatch(candidate):
                flush()
                name = candidate.decode("ascii")
                parts = [line[colon + 1 :]]
                continue
        # Not a field: end the current one so its value does not swallow garbage.
        flush()
        name = None
        parts = []
    flush()
    return fields


def first_values(fields: list[tuple[str, str]]) -> dict[str, str]:
    """Each field's first value by lower-case name: one pass over the fields for a parser that
    looks up a dozen names, where field_value() would scan them all for each."""
    found: dict[str, str] = {}
    for key, value in fields:
        found.setdefault(key.lower(), value)
    return found


def field_value(fields: list[tuple[str, str]], name: str) -> str | None:
    """The value of the first field called name (case-insensitive), or None."""
    name = name.lower()
    for key, value in fields:
        if key.lower() == name:
            return value
    return None


# RFC 2047 section 2: =?charset?encoding?encoded-text?=. The charset may carry an RFC 2231
# section 5 language suffix. Encoded text may not contain "?" or white space; we accept a missing
# "?=" at the very end of the value only through the regular syntax, not by guessing.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_LINEAR_WS = re.compile(r"[ \t\r\n]+")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _decode_q(text: str) -> bytes:
    # RFC 2047 section 4.2: "_" is always 0x20 in the Q encoding; =XX is an octet. A bad escape
    # is kept as it stands rather than dropped.
    data = text.replace("_", " ").encode("latin-1", "replace")
    return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)


def _decode_b(text: str) -> bytes:
    data = re.sub(r"[^A-Za-z0-9+/]", "", text)
    if len(data) % 4 == 1:
        data = data[:-1]
    data += "=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return b""


def decode_words(value: str) -> str:
    """Decode the RFC 2047 encoded words in a header value into text.

    Adjacent encoded words in the same charset are joined as bytes before decoding, because
    senders split multi-byte characters across words; white space between two encoded words is
    dropped (RFC 2047 section 6.2). Encoded words glued to other text or inside quotes are decoded
    too, as mail readers do. Unknown charsets fall back (see charset.decode_text).
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            out.append(decode_text(bytes(pending), pending_charset))
            pending.clear()
            pending_charset = None

    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        charset, kind, text = match.groups()
        charset = charset.split("*", 1)[0].lower()
        if between and not (pending_charset is not None and _LINEAR_WS.fullmatch(between)):
            flush()
            out.append(between)
        decoded = _decode_b(text) if kind in "bB" else _decode_q(text)
        if pending_charset is not None and charset != pending_charset:
            flush()
        pending_charset = charset
        pending.extend(decoded)
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


# --- MIME parameters (RFC 2045 section 5.1, RFC 2231) -------------------------------------------

_TSPECIALS = set('()<>@,;:\\"/[]?=')


def _skip_comment(text: str, i: int) -> int:
    """Index after the (possibly nested) comment that opens at text[i]."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _read_quoted(text: str, i: int) -> tuple[str, int]:
    """The unquoted content of the quoted string opening at text[i], and the index after it."""
    out: list[str] = []
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), n


def _skip_cfws(text: str, i: int) -> int:
    n = len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            i = _skip_comment(text, i)
        else:
            break
    return i


def _read_token(text: str, i: int, stop: str) -> tuple[str, int]:
    start = i
    n = len(text)
    while i < n and text[i] not in stop and text[i] not in " \t\r\n(":
        i += 1
    return text[start:i], i


def _raw_params(text: str, i: int) -> list[tuple[str, str, bool]]:
    """(lower-case name, value, was_quoted) for each "; name=value" from text[i] on."""
    params: list[tuple[str, str, bool]] = []
    n = len(text)
    while i < n:
        i = _skip_cfws(text, i)
        if i >= n:
            break
        if text[i] == ";":
            i += 1
            continue
        name, i = _read_token(text, i, ";=")
        i = _skip_cfws(text, i)
        if i >= n or text[i] != "=":
            # "; junk ;" without a value: skip to the next parameter.
            semi = text.find(";", i)
            i = n if semi < 0 else semi + 1
            continue
        i = _skip_cfws(text, i + 1)
        if i < n and text[i] == '"':
            value, i = _read_quoted(text, i)
            quoted = True
        else:
            # Lenient: an unquoted value with spaces or tspecials ("name=my file.pdf") runs to
            # the next ";", as mail readers accept it.
            semi = text.find(";", i)
            end = n if semi < 0 else semi
            value = text[i:end].strip()
            i = end
            quoted = False
        if name:
            params.append((name.lower(), value, quoted))
    return params


_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_SECTION = re.compile(r"^(.*?)\*(\d+)(\*?)$")


def _percent_decode(value: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    return _PERCENT.sub(lambda m: bytes([int(m.group(1), 16)]), data)


def parse_params(text: str) -> tuple[tuple[str, str], ...]:
    """Parse a ";"-separated parameter list with RFC 2231 decoding; names lower-cased.

    RFC 2231 section 3 continuations (name*0, name*1, ...) are joined in numeric order; section 4
    extended values (name*=charset'lang'%XX) are percent-decoded and decoded from the charset of
    the first section. A parameter given twice keeps its first value (RFC 2045 section 5.1 makes
    repetition undefined; the first is what most readers show).
    """
    plain: dict[str, str] = {}
    order: list[str] = []
    # name -> {section: (value, extended)}
    sections: dict[str, dict[int, tuple[str, bool]]] = {}
    for name, value, quoted in _raw_params(text, 0):
        match = _SECTION.match(name)
        if match:
            base, number, star = match.group(1), int(match.group(2)), match.group(3)
            parts = sections.setdefault(base, {})
            if base not in order:
                order.append(base)
            parts.setdefault(number, (value, bool(star) and not quoted))
        elif name.endswith("*"):
            base = name[:-1]
            if base not in order:
                order.append(base)
            sections.setdefault(base, {}).setdefault(0, (value, not quoted))
        else:
            if name not in order:
                order.append(name)
            plain.setdefault(name, value)
    result: list[tuple[str, str]] = []
    for name in order:
        if name in sections:
            result.append((name, _join_sections(sections[name])))
        elif name in plain:
            result.append((name, plain[name]))
    return tuple(result)


def _join_sections(parts: dict[int, tuple[str, bool]]) -> str:
    charset: str | None = None
    data = bytearray()
    for index, number in enumerate(sorted(parts)):
        value, extended = parts[number]
        if extended:
            if index == 0:
                # RFC 2231 section 4: charset'language'value, only on the first section.
                pieces = value.split("'", 2)
                if len(pieces) == 3:
                    charset, _language, value = pieces
            data.extend(_percent_decode(value))
        else:
            data.extend(value.encode("utf-8", "surrogateescape"))
    if charset:
        return decode_text(bytes(data), charset)
    return decode_text(bytes(data), "utf-8")


def parse_content_type(value: str | None) -> tuple[str, str, tuple[tuple[str, str], ...]] | None:
    """(type, subtype, params) in lower case, or None when absent or syntactically invalid.

    RFC 2045 section 5.2: an invalid Content-Type is to be treated like a missing one, so the
    caller applies its default.
    """
    if value is None:
        return None
    i = _skip_cfws(value, 0)
    mtype, i = _read_token(value, i, "/;")
    i = _skip_cfws(value, i)
    if i >= len(value) or value[i] != "/" or not mtype:
        return None
    i = _skip_cfws(value, i + 1)
    subtype, i = _read_token(value, i, ";")
    if not subtype or any(c in _TSPECIALS for c in mtype + subtype):
        return None
    i = _skip_cfws(value, i)
    return mtype.lower(), subtype.lower(), parse_params(value[i:])


def parse_content_disposition(
    value: str | None,
) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """(disposition type in lower case, params) per RFC 2183; (None, ()) when absent or empty."""
    if value is None:
        return None, ()
    i = _skip_cfws(value, 0)
    kind, i = _read_token(value, i, ";")
    if not kind:
        return None, ()
    return kind.lower(), parse_params(value[i:])


def first_token(value: str | None) -> str | None:
    """The first token of a structured value, comments skipped (Content-Transfer-Encoding)."""
    if value is None:
        return None
    i = _skip_cfws(value, 0)
    token, _ = _read_token(value, i, ";")
    return token or None


def parse_language(value: str | None) -> tuple[str, ...]:
    """RFC 3282 Content-Language: a comma-separated list of tags, comments dropped."""
    if value is None:
        return ()
    tags: list[str] = []
    for item in value.split(","):
        i = _skip_cfws(item, 0)
        tag, _ = _read_token(item, i, ",")
        if tag:
            tags.append(tag)
    return tuple(tags)
