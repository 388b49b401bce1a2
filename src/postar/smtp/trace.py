"""Trace header fields added on receipt: Received (RFC 5321 4.4) and Return-Path (4.4, 4.1.1.2).

Pure functions: the caller passes everything, the time included, and gets header bytes back
ending in CRLF, ready to put in front of the message. Nothing the client chose reaches the
header unchecked: a HELO name that is not a domain or address literal is shown only inside a
comment, with the characters that could end the comment removed.

    Received: from mail.example.org (mail.example.org [192.0.2.7])
        by mx.example.net (Postar) with ESMTPS id 4ZxT2 (TLSv1.3 TLS_AES_256_GCM_SHA384 256 bits)
        for <bob@example.net>; Tue, 03 Nov 2026 10:00:00 +0000
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from postar.smtp.address import Mailbox, is_address_literal, is_domain

_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What the TLS layer negotiated, for the optional comment in Received."""

    version: str  # "TLSv1.3"
    cipher: str  # "TLS_AES_256_GCM_SHA384"
    bits: int | None = None


def with_protocol(*, esmtp: bool, tls: bool, authenticated: bool, smtputf8: bool = False) -> str:
    """The "with" value: RFC 3848 ESMTP/ESMTPS/ESMTPA/ESMTPSA, RFC 6531 3.7.3 UTF8SMTP..."""
    if smtputf8:
        base = "UTF8SMTP"  # RFC 6531 3.7.3: UTF8SMTP, UTF8SMTPA, UTF8SMTPS, UTF8SMTPSA
    elif esmtp:
        base = "ESMTP"
    else:
        return "SMTP"  # RFC 3848 has no S/A variants for HELO sessions
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def address_literal(ip: str) -> str:
    """RFC 5321 4.1.3: "[192.0.2.7]" or "[IPv6:2001:db8::7]"."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 6:
        return f"[IPv6:{addr.compressed}]"
    return f"[{addr}]"


def _comment_safe(text: str) -> str:
    # Inside a comment "(" ")" "\" would change its nesting or end it; CR LF would end the
    # header. RFC 5322 3.2.2: ctext is printable ASCII but those three.
    return "".join(c for c in text if c.isascii() and c.isprintable() and c not in "()\\")


def _fold(clauses: Sequence[str]) -> str:
    """Join clauses with spaces, folding before a clause that would pass 78 columns
    (RFC 5322 2.1.1 and 2.2.3: fold with CRLF followed by white space)."""
    lines = ["Received:"]
    for clause in clauses:
        if len(lines[-1]) + 1 + len(clause) > 78 and lines[-1] != "Received:":
            lines.append("\t" + clause)
        else:
            lines[-1] += " " + clause
    return "\r\n".join(lines) + "\r\n"


def received_header(
    *,
    helo: str | None,
    client_ip: str,
    client_hostname: str | None,
    server_hostname: str,
    protocol: str,
    timestamp: datetime,
    recipients: Sequence[Mailbox] = (),
    queue_id: str | None = None,
    tls: TLSInfo | None = None,
    server_comment: str | None = "Postar",
) -> bytes:
    """The Received field of RFC 5321 4.4 (Time-stamp-line), as bytes with CRLF.

    `client_hostname` is the verified reverse DNS name, if any. The "for" clause names the
    recipient only when there is exactly one: with several it would tell each recipient
    about the others (RFC 5321 7.2 on Bcc).
    """
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must carry a time zone")
    literal = address_literal(client_ip)
    # TCP-info = address-literal / ( Domain FWS address-literal )
    tcp_info = (
        f"{client_hostname} {literal}"
        if client_hostname and is_domain(client_hostname)
        else literal
    )
    if helo is not None and (is_domain(helo) or is_address_literal(helo)):
        from_part = f"from {helo} ({tcp_info})"
    else:
        # Extended-Domain needs a Domain or address literal; a missing or bogus HELO is
        # replaced by the address literal and shown, defanged, in the comment.
        shown = f" helo={_comment_safe(helo)}" if helo else ""
        from_part = f"from {literal} ({tcp_info}{shown})"
    clauses = [from_part, f"by {server_hostname}"]
    if server_comment:
        clauses[-1] += f" ({_comment_safe(server_comment)})"
    clauses.append(f"with {protocol}")
    if queue_id:
        if not all(c in _ATEXT for c in queue_id):
            raise ValueError("queue id must be an RFC 5322 atom")
        clauses.append(f"id {queue_id}")
    if tls is not None:
        bits = f" {tls.bits} bits" if tls.bits else ""
        clauses.append(f"({_comment_safe(tls.version)} {_comment_safe(tls.cipher)}{bits})")
    if len(recipients) == 1:
        clauses.append(f"for <{recipients[0]}>")
    clauses[-1] += ";"
    clauses.append(format_datetime(timestamp))  # RFC 5322 3.3 date-time
    return _fold(clauses).encode("utf-8")  # UTF-8 only with SMTPUTF8 (RFC 6532)


def return_path_header(reverse_path: Mailbox | None) -> bytes:
    """RFC 5321 4.4: the final delivery adds Return-Path with the MAIL FROM path; "<>" for
    the null reverse-path of bounces."""
    return f"Return-Path: <{reverse_path if reverse_path is not None else ''}>\r\n".encode()
