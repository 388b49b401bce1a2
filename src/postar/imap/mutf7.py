"""Modified UTF-7 mailbox names (RFC 3501 section 5.1.3), used before UTF8=ACCEPT/IMAP4rev2.

Printable US-ASCII stands for itself except "&", written "&-"; everything else is UTF-16BE in
modified BASE64 ("," for "/", no padding) between "&" and "-". Decoding is strict: only the
canonical form is accepted (RFC 3501: BASE64 "MUST NOT be used to represent any printing
US-ASCII character"; adjacent shifted runs and non-zero pad bits are non-canonical), so each
name has one spelling and two clients cannot make two mailboxes of one name.
"""

from __future__ import annotations

import base64
import binascii
import re

_B64_RE = re.compile(r"[A-Za-z0-9+,]*")


class MailboxNameError(ValueError):
    """A mailbox name that is not valid modified UTF-7."""


def _flush(pending: list[str], out: list[str]) -> None:
    if pending:
        raw = "".join(pending).encode("utf-16-be", "surrogatepass")
        out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
        pending.clear()


def encode(name: str) -> str:
    out: list[str] = []
    pending: list[str] = []
    for ch in name:
        if " " <= ch <= "~":
            _flush(pending, out)
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    _flush(pending, out)
    return "".join(out)


def decode(text: str) -> str:
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if not " " <= ch <= "~":
            raise MailboxNameError("8-bit or control character in a modified UTF-7 name")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise MailboxNameError('unterminated "&" shift')
        chunk = text[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if _B64_RE.fullmatch(chunk) is None or len(chunk) % 4 == 1:
            raise MailboxNameError("invalid modified BASE64")
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        try:
            raw = base64.b64decode(padded, validate=True)
            if len(raw) % 2:
                raise MailboxNameError("odd number of UTF-16 octets")
            out.append(raw.decode("utf-16-be"))
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise MailboxNameError("invalid UTF-16 in modified BASE64") from exc
    result = "".join(out)
    if encode(result) != text:
        raise MailboxNameError("not the canonical modified UTF-7 form")
    return result
