"""SMTP: smtp-source (from the postfix package) against a target, counted at delivery.

A message counts when it is in the mailbox: for Postfix a file in the Maildir new/, for Postar
the MESSAGES count of IMAP STATUS (or POP3 STAT). smtp-source's own exit gives the accept rate.
Against smtp-sink only the accept rate exists: the ceiling of the generator on this machine.
"""

from __future__ import annotations

import imaplib
import poplib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.targets.base import PASSWORD, USERS, Target
from bench.workloads import SmtpCase

RCPT = USERS[0]


@dataclass
class SmtpResult:
    accepted_per_s: float
    delivered_per_s: float | None  # None against smtp-sink
    delivered: int
    note: str = ""


class Counter:
    """How many messages the target's mailbox holds, cheap enough to poll every few ms."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._imap: imaplib.IMAP4 | None = None
        self.fn: Callable[[], int] | None = None
        # POP3 fixes the maildrop at login, so each count is a new login (an argon2 hash on
        # the server): poll it slowly, or the counting would load the server it measures.
        self.interval = 0.02
        delivered = getattr(target, "delivered", None)
        if delivered is not None:
            self.fn = lambda: int(delivered(RCPT))
        elif "imap" in target.ports:
            self._imap = imaplib.IMAP4("127.0.0.1", target.ports["imap"], timeout=10)
            self._imap.login(RCPT, PASSWORD)
            self.fn = self._status
        elif "pop3" in target.ports:
            self.fn = self._stat
            self.interval = 0.25

    def _status(self) -> int:
        assert self._imap is not None
        typ, data = self._imap.status("INBOX", "(MESSAGES)")
        if typ != "OK" or not data or data[0] is None:
            raise RuntimeError(f"STATUS failed: {typ} {data!r}")
        raw = data[0] if isinstance(data[0], bytes) else b""
        return int(raw.rsplit(b"MESSAGES", 1)[1].strip(b" ()"))

    def _stat(self) -> int:
        p = poplib.POP3("127.0.0.1", self.target.ports["pop3"], timeout=10)
        try:
            p.user(RCPT)
            p.pass_(PASSWORD)
            return int(p.stat()[0])
        finally:
            p.quit()

    def count(self) -> int | None:
        return self.fn() if self.fn else None

    def close(self) -> None:
        if self._imap is not None:
            try:
                self._imap.logout()
            except (imaplib.IMAP4.error, OSError):
                pass


def run_case(
    target: Target, case: SmtpCase, message_file: Path, deadline_s: float, counter: Counter
) -> SmtpResult:
    base = counter.count()
    cmd = [
        "smtp-source",
        "-s", str(case.sessions),
        "-m", str(case.messages),
        "-F", str(message_file),
        "-f", "sender@client.test",
        "-t", RCPT,
        "-M", "client.test",
        f"127.0.0.1:{target.ports['smtp']}",
    ]  # fmt: skip
    t0 = time.monotonic()
    deadline = t0 + deadline_s
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    note = ""
    try:
        _, err = proc.communicate(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        note = f"smtp-source stopped at the {deadline_s:.0f} s deadline"
    t_accept = time.monotonic() - t0
    if proc.returncode not in (0, None) and not note:
        note = f"smtp-source: {err.decode(errors='replace').strip()[:160]}"
    accepted = case.messages / t_accept
    if base is None:  # smtp-sink: nothing to count
        return SmtpResult(accepted, None, case.messages, note)
    want = base + case.messages
    now = base
    while time.monotonic() < deadline:
        now = counter.count() or 0
        if now >= want:
            break
        time.sleep(counter.interval)
    t_deliver = time.monotonic() - t0
    got = now - base
    if got < case.messages:
        note = (note + "; " if note else "") + f"{got}/{case.messages} delivered by the deadline"
    return SmtpResult(accepted, got / t_deliver, got, note)
