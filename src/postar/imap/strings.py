"""Wire forms of IMAP strings in responses: atom, quoted, literal, literal8 and NIL.

RFC 9051 section 4.3: a quoted string cannot carry CR, LF or NUL; before UTF8=ACCEPT or
IMAP4rev2 it carries 7-bit text only (RFC 3501 section 4.3), so anything else goes as a literal.
A NUL can travel only in a literal8 (RFC 3516 section 4.1), and only in BINARY responses.
"""

from __future__ import annotations

import functools
import re

# RFC 9051 ATOM-CHAR: any CHAR except atom-specials "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]".
_ATOM_RE = re.compile(rb"[!#$&'+-\[^-z|}~]+")
# ASTRING-CHAR = ATOM-CHAR / resp-specials ("]").
_ASTRING_RE = re.compile(rb"[!#$&'+-\[\]^-z|}~]+")
# flag-keyword is an atom; system and extension flags are "\" atom; "\*" is for PERMANENTFLAGS.
_FLAG_RE = re.compile(rb"\\?[!#$&'+-\[^-z|}~]+|\\\*")


def is_atom(data: bytes) -> bool:
    return _ATOM_RE.fullmatch(data) is not None


def is_astring_atom(data: bytes) -> bool:
    return _ASTRING_RE.fullmatch(data) is not None


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def can_quote(data: bytes, *, utf8: bool) -> bool:
    """Whether `data` may travel as a quoted string (RFC 9051 QUOTED-CHAR, RFC 6855 section 3)."""
    if b"\r" in data or b"\n" in data or b"\x00" in data:
        return False
    if data.isascii():
        return True
    if not utf8:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_quoted(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal_prefix(length: int, *, binary: bool = False) -> bytes:
    """The "{n}" CRLF (or "~{n}" CRLF for literal8) that precedes n octets of literal data."""
    return (b"~{%d}\r\n" if binary else b"{%d}\r\n") % length


def encode_string(value: str | bytes, *, utf8: bool) -> bytes:
    data = _as_bytes(value)
    if can_quote(data, utf8=utf8):
        return encode_quoted(data)
    # RFC 3516 section 4.2: NUL forces literal8; callers only pass NUL for BINARY data.
    return literal_prefix(len(data), binary=b"\x00" in data) + data


def encode_nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    if value is None:
        return b"NIL"
    return encode_string(value, utf8=utf8)


def encode_astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    data = _as_bytes(value)
    # "NIL" as an atom would read as nil where an nstring is also possible; quote it.
    if is_astring_atom(data) and data.upper() != b"NIL":
        return data
    return encode_string(data, utf8=utf8)


# A mailbox has few distinct flags and FETCH FLAGS repeats them for every message.
@functools.lru_cache(maxsize=4096)
def encode_flag(flag: str) -> bytes:
    data = flag.encode("ascii", "replace")
    if _FLAG_RE.fullmatch(data) is None:
        raise ValueError(f"not a flag: {flag!r}")
    return data


def sanitize_text(text: str) -> bytes:
    """resp-text: TEXT-CHARs only, so a message never breaks the line (RFC 9051 text)."""
    data = text.encode("utf-8", "replace")
    return data.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\x00", b" ")
