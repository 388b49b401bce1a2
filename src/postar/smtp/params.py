"""ESMTP parameters of MAIL FROM and RCPT TO, and the xtext encoding of RFC 3461 section 4.

`parse_mail_params` and `parse_rcpt_params` take the text after the path and the extensions the
server offers, and return typed parameters or raise `ClientError` with the reply to send:
501 5.5.4 for a malformed value, 555 5.5.4 for a keyword we do not offer (RFC 5321 4.1.1.11),
552 5.3.4 for a declared SIZE over the limit (RFC 1870 section 6.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postar.smtp import replies
from postar.smtp.errors import ClientError

# RFC 5321 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_HEX = "0123456789ABCDEF"
ENVID_MAX = 100  # RFC 3461 4.4: ENVID at most 100 characters (encoded)
ORCPT_MAX = 500  # RFC 3461 4.2: ORCPT at most 500 characters (encoded)
NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})


@dataclass(frozen=True, slots=True)
class Extensions:
    """Which parameter-bearing extensions the server offers on this connection."""

    max_message_size: int  # 0: no fixed limit (RFC 1870 section 4)
    eightbitmime: bool
    smtputf8: bool
    dsn: bool
    auth: bool
    chunking: bool


@dataclass(frozen=True, slots=True)
class MailParams:
    size: int | None = None  # RFC 1870: declared message size
    body: str | None = None  # "7BIT" or "8BITMIME" (RFC 6152)
    smtputf8: bool = False  # RFC 6531 3.4
    ret: str | None = None  # RFC 3461 4.3: "FULL" or "HDRS"
    envid: str | None = None  # RFC 3461 4.4, xtext-decoded
    auth: str | None = None  # RFC 4954 5: xtext-decoded; "<>" when the submitter is unknown


@dataclass(frozen=True, slots=True)
class OriginalRecipient:
    """RFC 3461 4.2 ORCPT: an address type ("rfc822", "utf-8", ...) and the decoded address."""

    addr_type: str
    address: str


@dataclass(frozen=True, slots=True)
class RcptParams:
    notify: frozenset[str] | None = None  # RFC 3461 4.1; frozenset({"NEVER"}) or a subset
    orcpt: OriginalRecipient | None = None


def xtext_decode(text: str, utf8: bool = False) -> str:
    """RFC 3461 section 4: xchar is "!".."~" but "+" and "="; "+XX" is an octet in hex.

    With `utf8` (an SMTPUTF8 transaction) non-ASCII characters pass as themselves, which is
    what RFC 6533 3 allows in its utf-8-addr-unitext.
    """
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "+":
            pair = text[i + 1 : i + 3]
            # hexchar = "+" 2(%x30-39 / %x41-46): upper-case hex only
            if len(pair) != 2 or any(c not in _HEX for c in pair):
                raise ValueError("bad xtext hexchar")
            out.append(int(pair, 16))
            i += 3
            continue
        if ch == "=" or (ch.isascii() and not 33 <= ord(ch) <= 126):
            raise ValueError("bad xtext character")
        if not ch.isascii() and not utf8:
            raise ValueError("non-ASCII xtext")
        out += ch.encode("utf-8")
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("xtext does not decode to UTF-8") from exc


def xtext_encode(text: str) -> str:
    """The inverse of `xtext_decode`, for the client side and for tests."""
    out: list[str] = []
    for byte in text.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def _split(text: str) -> list[tuple[str, str | None]]:
    """RFC 5321 4.1.2 Mail-parameters = esmtp-param *(SP esmtp-param)."""
    params: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for word in text.split(" "):
        if not word:
            continue  # tolerate doubled spaces; real clients send them
        key, eq, value = word.partition("=")
        if not _KEYWORD.fullmatch(key):
            raise ClientError(replies.SYNTAX_ERROR_IN_PARAMETERS)
        # esmtp-value = 1*(%d33-60 / %d62-126), widened to UTF-8 by RFC 6531 3.3
        if eq and (not value or any(c.isascii() and not 33 <= ord(c) <= 126 for c in value)):
            raise ClientError(replies.SYNTAX_ERROR_IN_PARAMETERS)
        key = key.upper()  # RFC 5321 2.4: keywords are case-insensitive
        if key in seen:
            raise ClientError(replies.SYNTAX_ERROR_IN_PARAMETERS)
        seen.add(key)
        params.append((key, value if eq else None))
    return params


def _bad() -> ClientError:
    return ClientError(replies.SYNTAX_ERROR_IN_PARAMETERS)


def _unsupported() -> ClientError:
    return ClientError(replies.PARAMETER_NOT_IMPLEMENTED)


def parse_mail_params(text: str, ext: Extensions) -> MailParams:
    size: int | None = None
    body: str | None = None
    smtputf8 = False
    ret: str | None = None
    envid: str | None = None
    auth: str | None = None
    raw = _split(text)
    # SMTPUTF8 decides whether xtext values may carry UTF-8, so find it first.
    utf8_allowed = ext.smtputf8 and any(k == "SMTPUTF8" for k, _ in raw)
    for key, value in raw:
        if key == "SIZE":
            # RFC 1870 section 3: size-value = 1*20DIGIT
            if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
                raise _bad()
            size = int(value)
            if ext.max_message_size and size > ext.max_message_size:
                raise ClientError(replies.MESSAGE_TOO_BIG)  # RFC 1870 section 6.1
        elif key == "BODY":
            if value is None:
                raise _bad()
            kind = value.upper()
            if kind == "7BIT":
                body = kind
            elif kind == "8BITMIME":
                if not ext.eightbitmime:
                    raise _unsupported()
                body = kind  # RFC 6152 section 2
            elif kind == "BINARYMIME":
                raise _unsupported()  # RFC 3030 section 3: only when BINARYMIME is offered
            else:
                raise _bad()
        elif key == "SMTPUTF8":
            if not ext.smtputf8:
                raise _unsupported()
            if value is not None:  # RFC 6531 3.4: the parameter takes no value
                raise _bad()
            smtputf8 = True
        elif key == "RET" and ext.dsn:
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise _bad()  # RFC 3461 4.3
            ret = value.upper()
        elif key == "ENVID" and ext.dsn:
            if value is None or len(value) > ENVID_MAX:
                raise _bad()
            try:
                envid = xtext_decode(value, utf8_allowed)
            except ValueError:
                raise _bad() from None
        elif key == "AUTH" and ext.auth:
            if value is None:
                raise _bad()
            try:
                auth = xtext_decode(value, utf8_allowed)  # RFC 4954 section 5
            except ValueError:
                raise _bad() from None
        else:
            raise _unsupported()
    return MailParams(size, body, smtputf8, ret, envid, auth)


def parse_rcpt_params(text: str, ext: Extensions, utf8: bool) -> RcptParams:
    notify: frozenset[str] | None = None
    orcpt: OriginalRecipient | None = None
    for key, value in _split(text):
        if key == "NOTIFY" and ext.dsn:
            if value is None:
                raise _bad()
            items = [v.upper() for v in value.split(",")]
            # RFC 3461 4.1: "NEVER" alone, or a list of SUCCESS, FAILURE, DELAY
            never = items == ["NEVER"]
            listed = all(v in NOTIFY_VALUES for v in items) and len(set(items)) == len(items)
            if not (never or listed):
                raise _bad()
            notify = frozenset(items)
        elif key == "ORCPT" and ext.dsn:
            if value is None or len(value) > ORCPT_MAX:
                raise _bad()
            addr_type, semi, encoded = value.partition(";")
            # RFC 3461 4.2: orcpt-parameter = "ORCPT=" original-recipient-address;
            # original-recipient-address = addr-type ";" xtext, addr-type an RFC 822 atom
            if not semi or not encoded or not _KEYWORD.fullmatch(addr_type):
                raise _bad()
            try:
                address = xtext_decode(encoded, utf8)
            except ValueError:
                raise _bad() from None
            orcpt = OriginalRecipient(addr_type.lower(), address)
        else:
            raise _unsupported()
    return RcptParams(notify, orcpt)
