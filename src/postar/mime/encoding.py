"""Content-Transfer-Encoding decoding (RFC 2045 section 6), lenient, for IMAP BINARY and search.

IMAP BINARY (RFC 3516) hands a client the decoded octets of a part; a server that does not know
the part's encoding answers NO [UNKNOWN-CTE]. decode_body therefore raises UnknownEncoding for
an encoding it does not know, and never raises for damaged data in an encoding it knows.
"""

from __future__ import annotations

import binascii
import re

IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary", ""})
KNOWN_ENCODINGS = IDENTITY_ENCODINGS | {"base64", "quoted-printable"}

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_JUNK = bytes(b for b in range(256) if b not in _B64_ALPHABET)
_PADDING = re.compile(rb"=+")


class UnknownEncoding(ValueError):
    """The Content-Transfer-Encoding is not one we can decode (IMAP: [UNKNOWN-CTE])."""


def decode_base64(data: bytes) -> bytes:
    """Base64 that tolerates line lengths, junk characters, missing padding and chunks.

    RFC 2045 section 6.8: characters outside the alphabet are ignored. "=" ends a chunk: some
    senders concatenate separately encoded pieces ("QQ==QQ=="), so each is decoded alone.
    """
    cleaned = data.translate(None, _B64_JUNK)
    out: list[bytes] = []
    for chunk in _PADDING.split(cleaned) if b"=" in cleaned else (cleaned,):
        if len(chunk) % 4 == 1:
            # One lone sextet cannot make an octet; it is noise from a cut line.
            chunk = chunk[:-1]
        if not chunk:
            continue
        out.append(binascii.a2b_base64(chunk + b"=" * (-len(chunk) % 4)))
    return b"".join(out)


def decode_quoted_printable(data: bytes) -> bytes:
    """Quoted-printable per RFC 2045 section 6.7; a malformed "=" escape is kept literally."""
    # Rule 3: white space at the end of an encoded line was possibly added by a transport and
    # must be deleted, which also turns "= \r\n" into a soft line break.
    return binascii.a2b_qp(strip_line_end_space(data))


def strip_line_end_space(data: bytes) -> bytes:
    """Delete spaces and tabs before each CRLF or LF and at the very end.

    Line by line, so the work is linear: the regular expression this replaces
    ([ \t]+ followed by a line end) restarted at every blank of a run that ends in anything
    else, quadratic in the run (a 20,000-space run inside a line cost seconds of CPU).
    """
    lines = data.split(b"\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if i < last and line.endswith(b"\r"):
            if line.endswith((b" \r", b"\t\r")):
                lines[i] = line[:-1].rstrip(b" \t") + b"\r"
        elif line.endswith((b" ", b"\t")):
            lines[i] = line.rstrip(b" \t")
    return b"\n".join(lines)


def decode_body(data: bytes, encoding: str) -> bytes:
    """Decode a part body by its Content-Transfer-Encoding (case-insensitive).

    7bit, 8bit and binary (and an absent encoding, "") return the data unchanged. Raises
    UnknownEncoding for anything else, such as x-uuencode.
    """
    kind = encoding.strip().lower()
    if kind in IDENTITY_ENCODINGS:
        return bytes(data)
    if kind == "base64":
        return decode_base64(bytes(data))
    if kind == "quoted-printable":
        return decode_quoted_printable(bytes(data))
    raise UnknownEncoding(encoding)
