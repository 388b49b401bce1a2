"""Delivery status notifications: RFC 3464 multipart/report bounces, delay warnings, successes.

Who gets one, per RFC 3461 section 4.1 (NOTIFY): a recipient with NOTIFY=NEVER never causes a
DSN; without NOTIFY we act as for NOTIFY=FAILURE,DELAY (the implementation's choice the RFC
allows). RET=HDRS returns only the original header (text/rfc822-headers, RFC 6522); otherwise
the whole message (message/rfc822) unless it is big. Never sent to the null reverse-path (RFC
5321 section 6.1, RFC 3461 section 6.2): DSNs themselves travel with MAIL FROM:<>, so a
failing DSN cannot bounce again.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from postar.store.model import QueuedRecipient, QueueEntry

# Above this size only the header of the original is returned, whatever RET says: a bounce
# should not double a large message's traffic (Postfix does the same).
RETURN_FULL_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class RecipientStatus:
    recipient: QueuedRecipient
    action: str  # RFC 3464 2.3.3: failed | delayed | delivered | relayed
    status: str  # RFC 3463 enhanced status code, e.g. "5.1.1"
    diagnostic: str | None = None  # the remote reply, e.g. "550 5.1.1 unknown user"
    remote_mta: str | None = None


_NOTIFY_FOR_ACTION = {
    "failed": "FAILURE",
    "delayed": "DELAY",
    "delivered": "SUCCESS",
    "relayed": "SUCCESS",
}


def wants_notice(recipient: QueuedRecipient, action: str) -> bool:
    """RFC 3461 4.1: NOTIFY decides; absent means FAILURE,DELAY."""
    notify = set(recipient.notify) or {"FAILURE", "DELAY"}
    if "NEVER" in notify:
        return False
    return _NOTIFY_FOR_ACTION[action] in notify


def header_block(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw[: end + 2] if end >= 0 else raw


def _fold_safe(text: str) -> str:
    # Field values in the report must be single lines of printable text.
    return " ".join(text.split())


def build_dsn(
    *,
    reporting_mta: str,
    entry: QueueEntry,
    statuses: Sequence[RecipientStatus],
    original: bytes,
    now: float,
    retry_until: float | None = None,
) -> bytes:
    """A complete RFC 3464 message to entry.sender about `statuses` (all of one kind)."""
    kinds = {s.action for s in statuses}
    boundary = f"=_postar_{secrets.token_hex(12)}"
    date = format_datetime(datetime.fromtimestamp(now, UTC))
    if "failed" in kinds:
        subject = "Undelivered Mail Returned to Sender"
        intro = "Your message could not be delivered to one or more recipients."
    elif "delayed" in kinds:
        subject = "Delayed Mail (still being retried)"
        intro = "Your message has not been delivered yet; delivery is still being attempted."
    else:
        subject = "Successful Mail Delivery Report"
        intro = "Your message was delivered to the recipients below."
    human = [f"This is the mail system at {reporting_mta}.", "", intro, ""]
    for s in statuses:
        line = f"<{s.recipient.address}>: {s.action}"
        if s.diagnostic:
            line += f" ({_fold_safe(s.diagnostic)})"
        human.append(line)

    # RFC 3464 2.2: per-message fields, then a blank line before each recipient's block.
    report = [f"Reporting-MTA: dns; {reporting_mta}"]
    if entry.envid:
        report.append(f"Original-Envelope-Id: {_fold_safe(entry.envid)}")
    report.append(f"Arrival-Date: {format_datetime(datetime.fromtimestamp(entry.created, UTC))}")
    for s in statuses:
        report.append("")
        if s.recipient.orcpt:
            kind, _, addr = s.recipient.orcpt.partition(";")
            report.append(f"Original-Recipient: {kind}; {_fold_safe(addr)}")
        report.append(f"Final-Recipient: rfc822; {s.recipient.address}")
        report.append(f"Action: {s.action}")
        report.append(f"Status: {s.status}")
        if s.remote_mta:
            report.append(f"Remote-MTA: dns; {s.remote_mta}")
        if s.diagnostic:
            report.append(f"Diagnostic-Code: smtp; {_fold_safe(s.diagnostic)}")
        report.append(f"Last-Attempt-Date: {date}")
        if s.action == "delayed" and retry_until is not None:
            until = format_datetime(datetime.fromtimestamp(retry_until, UTC))
            report.append(f"Will-Retry-Until: {until}")

    headers_only = (
        entry.ret == "HDRS"
        or len(original) > RETURN_FULL_LIMIT
        or kinds
        <= {
            "delayed",
            "delivered",
            "relayed",
        }
    )
    if headers_only:
        returned_type = "text/rfc822-headers"
        returned = header_block(original)
    else:
        returned_type = "message/rfc822"
        returned = original if original.endswith(b"\r\n") else original + b"\r\n"
    cte = "7bit" if returned.isascii() else "8bit"

    def lines(items: list[str]) -> bytes:
        return "".join(f"{item}\r\n" for item in items).encode("utf-8")

    msg_id = f"<{secrets.token_hex(16)}@{reporting_mta}>"
    head = lines(
        [
            f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
            f"To: <{entry.sender}>",
            f"Subject: {subject}",
            f"Date: {date}",
            f"Message-ID: {msg_id}",
            "Auto-Submitted: auto-replied",  # RFC 3834 section 5: no auto-reply to this
            "MIME-Version: 1.0",
            "Content-Type: multipart/report; report-type=delivery-status;",
            f' boundary="{boundary}"',
        ]
    )
    return b"".join(
        [
            head,
            b"\r\nThis is a MIME-encapsulated message.\r\n\r\n",
            f"--{boundary}\r\n".encode(),
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
            lines(human),
            f"\r\n--{boundary}\r\n".encode(),
            b"Content-Type: message/delivery-status\r\n\r\n",
            lines(report),
            f"\r\n--{boundary}\r\n".encode(),
            f"Content-Type: {returned_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode(),
            returned,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
