"""POP3 downloads that read ahead, against a real server with Python's poplib.

A RETR (or TOP) of the message after the previous one reads the bodies of that and the next
small messages in one store call and answers the following RETRs from them; anything else
is streamed from the store. The maildrop mixes both: runs of tiny messages (the count bound
ends a read-ahead), runs of large ones (the byte bound ends it), messages over RETR_CHUNK
and over inline_body_max (files, streamed), lines starting with ".", and one message without
a final line break (put in by IMAP APPEND: SMTP DATA always ends with CRLF). Whatever the
order of the commands, every answer must be the message as delivered, with only the server's
trace fields in front. Each test runs with bodies stored in the database (the default) and
with every body a file (inline_body_max = 0, where read-ahead finds nothing to read).
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import smtplib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from postar.pop3.server import READ_AHEAD_BYTES, READ_AHEAD_COUNT, RETR_CHUNK
from postar.store.sqlite.base import INLINE_BODY_MAX
from tests.support.mailclients import (
    ALICE,
    BOB,
    SOCKET_TIMEOUT,
    pop3_session,
    raw_of,
    running_server,
    strip_trace,
)
from tests.support.server import PASSWORD, PostarServer

pytestmark = pytest.mark.integration

COUNT = 80
TINY_UP_TO = 40  # messages 1 to 40 are small: a read-ahead of them ends at READ_AHEAD_COUNT
NO_FINAL_NEWLINE = 37  # the message number of the one put in by IMAP APPEND
OVER_CHUNK = 45  # 64 KiB + 1 as sent: larger than RETR_CHUNK and inline_body_max
LARGE = 62  # 300 KB: streamed in several chunks; those between the two pass READ_AHEAD_BYTES
LINE = 76  # characters a line: poplib refuses lines over 2048


@dataclass(frozen=True)
class Sent:
    number: int  # its message number in the maildrop
    raw: bytes  # as sent
    by_smtp: bool  # else by IMAP APPEND (no trace fields)

    @property
    def as_read(self) -> bytes:
        """What poplib's lines give back after the trace fields: a last line without a line
        break comes back with the CRLF the server put before the terminator."""
        return self.raw if self.raw.endswith(b"\r\n") else self.raw + b"\r\n"

    @property
    def header(self) -> bytes:
        """The header and the blank line after it: TOP n 0 (RFC 1939 section 7)."""
        return self.raw[: self.raw.index(b"\r\n\r\n") + 4]

    def top(self, lines: int) -> bytes:
        """TOP n lines, as poplib's lines give it back."""
        body_lines = self.as_read[len(self.header) :].split(b"\r\n")[:-1]
        return self.header + b"".join(line + b"\r\n" for line in body_lines[:lines])


def message(number: int, size: int, *, dots: bool) -> bytes:
    """A message of exactly size bytes whose every line names it, so that a mix-up shows."""
    head = (
        f"From: sender@remote.test\r\nTo: {ALICE}\r\nSubject: read-ahead {number}\r\n"
        f"Message-ID: <read-ahead-{number}@remote.test>\r\n\r\n"
    ).encode()
    lines = [f"first line of message {number}".encode()]
    if dots:
        # RFC 1939 section 3: each goes out with one more "."; a lone "." line included.
        lines += [b".", b"..", f".dot line of {number}".encode(), b". ."]
    text = b"\r\n".join(lines) + b"\r\n"
    n = 0
    while len(head) + len(text) < size:
        line = f"{number:03d}:{n:05d} ".encode() + b"abcdefghijklmnopqrstuvwxyz" * 3
        text += line[: LINE - 2] + b"\r\n"
        n += 1
    raw = head + text
    if len(raw) > size:
        raw = raw[: size - 2]
        # No bare CR: the cut may not fall inside a CRLF.
        raw = (raw[:-1] + b"x" if raw.endswith(b"\r") else raw) + b"\r\n"
    assert len(raw) == size, "size too small for the header"
    return raw


def planned_size(number: int) -> int:
    if number == OVER_CHUNK:
        return RETR_CHUNK + 1
    if number == LARGE:
        return 300_000
    if number <= TINY_UP_TO:
        # Tiny and small: 32 messages come to well under the byte bound.
        return [180, 4096, 900, 2000][number % 4]
    # Larger ones: a run of 32 passes the byte bound (and a few are near RETR_CHUNK).
    return [4096, 30_000, 12_000, 60_000, 900, 20_000][number % 6]


def planned_messages() -> list[Sent]:
    out = []
    for number in range(1, COUNT + 1):
        dots = number % 3 == 0 or number in (OVER_CHUNK, LARGE)
        raw = message(number, planned_size(number), dots=dots)
        if number == NO_FINAL_NEWLINE:
            raw += b".a last line starting with a dot, and no line break"
        out.append(Sent(number, raw, by_smtp=number != NO_FINAL_NEWLINE))
    return out


def put_in(server: PostarServer, plan: list[Sent], users: list[str]) -> None:
    """Each message in order to each user's INBOX: by SMTP, or by IMAP APPEND."""
    smtp = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=SOCKET_TIMEOUT)
    try:
        for sent in plan:
            if sent.by_smtp:
                refused = smtp.sendmail("sender@remote.test", users, sent.raw)
                assert not refused, refused
                continue
            for user in users:
                imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=SOCKET_TIMEOUT)
                try:
                    imap.login(user, PASSWORD)
                    typ, _ = imap.append("INBOX", None, None, sent.raw)
                    assert typ == "OK"
                finally:
                    imap.logout()
    finally:
        smtp.quit()


@dataclass(frozen=True)
class Mailhost:
    server: PostarServer
    plan: list[Sent]
    inline_body_max: int


@pytest.fixture(scope="module", params=[INLINE_BODY_MAX, 0], ids=["rows-and-files", "all-files"])
def mailhost(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mailhost]:
    """A server whose alice and bob each hold the planned maildrop. alice's is left as it
    is by every test (RSET before QUIT); bob's is the one deleted from."""
    limit = int(request.param)
    extra = "" if limit == INLINE_BODY_MAX else f"[store]\ninline_body_max = {limit}\n"
    plan = planned_messages()
    with running_server(tmp_path_factory.mktemp("read-ahead"), extra) as server:
        put_in(server, plan, [ALICE, BOB])
        yield Mailhost(server, plan, limit)


# ---- checking what came back -----------------------------------------------------------------
def check_retr(pop: poplib.POP3, sent: Sent) -> None:
    resp, lines, _octets = pop.retr(sent.number)
    check_message(resp, lines, sent)


def check_message(resp: bytes, lines: list[bytes], sent: Sent) -> None:
    got = raw_of(lines)
    fields, rest = strip_trace(got)
    assert rest == sent.as_read, f"message {sent.number}: {describe(sent.as_read, rest)}"
    # Return-Path and Received of ours in front of what came by SMTP; nothing before APPEND's.
    assert [f.split(b":")[0] for f in fields] == (
        [b"Return-Path", b"Received"] if sent.by_smtp else []
    )
    # RFC 1939 section 7: the octet count is the maildrop's size, that of the stored bytes.
    stored = got if sent.raw.endswith(b"\r\n") else got[:-2]
    assert resp == b"+OK %d octets" % len(stored), sent.number


def describe(expected: bytes, got: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), None)
    at = min(len(expected), len(got)) if at is None else at
    return (
        f"{len(got)} bytes for {len(expected)}, first difference at {at}: "
        f"expected {expected[at : at + 40]!r}, got {got[at : at + 40]!r}"
    )


def check_top(pop: poplib.POP3, sent: Sent, lines: int) -> None:
    resp, got_lines, _octets = pop.top(sent.number, lines)
    assert resp == b"+OK Top of message follows"
    fields, rest = strip_trace(raw_of(got_lines))
    assert rest == sent.top(lines), f"TOP {sent.number} {lines}: {describe(sent.top(lines), rest)}"
    assert len(fields) == (2 if sent.by_smtp else 0)


def sizes_of(pop: poplib.POP3) -> dict[int, int]:
    _resp, listing, _octets = pop.list()
    return {int(n): int(size) for n, size in (line.split() for line in listing)}


def uidls_of(pop: poplib.POP3) -> dict[int, bytes]:
    _resp, listing, _octets = pop.uidl()
    return {int(n): uid for n, uid in (line.split() for line in listing)}


# ---- the maildrop ----------------------------------------------------------------------------
def test_the_maildrop_mixes_rows_and_files(mailhost: Mailhost) -> None:
    plan = mailhost.plan
    assert len(plan[OVER_CHUNK - 1].raw) == RETR_CHUNK + 1
    assert not plan[NO_FINAL_NEWLINE - 1].raw.endswith(b"\n")
    # Runs that end a read-ahead at each of its bounds: the count (all small enough for the
    # bytes), then the bytes (messages between the two large ones); both as sent, the trace
    # fields only add to them.
    tiny = [len(s.raw) for s in plan[: READ_AHEAD_COUNT + 1]]
    assert max(tiny) < RETR_CHUNK and sum(tiny) < READ_AHEAD_BYTES
    between = [len(s.raw) for s in plan[OVER_CHUNK : LARGE - 1]]
    assert len(between) < READ_AHEAD_COUNT and max(between) < RETR_CHUNK - 1000
    assert sum(between) > READ_AHEAD_BYTES and sum(between) > 256 * 1024
    assert len(plan[LARGE - 1].raw) > 4 * RETR_CHUNK
    db = mailhost.server.data_dir / "postar.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        places = conn.execute(
            "SELECT b.size, s.num IS NOT NULL FROM blobs b LEFT JOIN blob_bodies s USING (num)"
        ).fetchall()
    as_rows = sorted(size for size, row in places if row)
    as_files = sorted(size for size, row in places if not row)
    if mailhost.inline_body_max:
        assert len(as_files) >= 2 and min(as_files) > mailhost.inline_body_max
        assert len(as_rows) >= 70 and max(as_rows) <= mailhost.inline_body_max
    else:
        assert as_rows == [] and len(as_files) >= COUNT
    with pop3_session(mailhost.server) as pop:
        assert pop.stat()[0] == len(plan)
        sizes = sizes_of(pop)
    # Messages kept their order: each size is its message's plus the trace fields.
    for sent in plan:
        extra = sizes[sent.number] - len(sent.raw)
        assert (0 < extra < 400) if sent.by_smtp else extra == 0, sent.number


# ---- RETR in every order ------------------------------------------------------------------------
def test_retr_in_order(mailhost: Mailhost) -> None:
    with pop3_session(mailhost.server) as pop:
        for sent in mailhost.plan:
            check_retr(pop, sent)


def test_retr_in_reverse_order(mailhost: Mailhost) -> None:
    with pop3_session(mailhost.server) as pop:
        for sent in reversed(mailhost.plan):
            check_retr(pop, sent)


def test_retr_twice_and_out_of_order(mailhost: Mailhost) -> None:
    # Twice in a row; a jump forward into what was read ahead and back; a jump past it; runs
    # that start again after a jump; and then the whole maildrop in order.
    numbers = [1, 1, 2, 5, 3, 4, 4, 6, 33, 34, 35, 36, 20, 21, 22, 21, 23, 36, 37, 38, 37]
    numbers += [OVER_CHUNK, OVER_CHUNK + 1, LARGE - 1, LARGE, LARGE, LARGE + 1, 80, 79, 80]
    numbers += list(range(1, COUNT + 1))
    plan = mailhost.plan
    with pop3_session(mailhost.server) as pop:
        for number in numbers:
            check_retr(pop, plan[number - 1])


def test_pipelined_retrs(mailhost: Mailhost) -> None:
    """Many RETRs sent at once (RFC 2449 PIPELINING), read back in order: the answers taken
    from the read-ahead and the streamed ones keep the order of the commands."""
    plan = mailhost.plan
    with pop3_session(mailhost.server) as pop:
        numbers = [*range(1, COUNT + 1), 2, 1, LARGE, 3]
        # poplib sends one command at a time: its own helpers put them all out at once.
        pop._putcmd("\r\n".join(f"RETR {n}" for n in numbers))
        for number in numbers:
            resp, lines, _octets = pop._getlongresp()
            check_message(resp, lines, plan[number - 1])


# ---- TOP with RETR ----------------------------------------------------------------------------
def test_top_interleaved_with_retr(mailhost: Mailhost) -> None:
    plan = mailhost.plan
    with pop3_session(mailhost.server) as pop:
        # A client listing headers first (each TOP follows the previous: read-ahead), then
        # downloading.
        for sent in plan:
            check_top(pop, sent, 0)
        for sent in plan:
            check_retr(pop, sent)
        # TOP of a message, then its RETR, then the next's TOP with some lines.
        for sent in plan:
            check_top(pop, sent, 1 + sent.number % 3)
            check_retr(pop, sent)
        # TOP of more lines than there are is the whole message, that without a line end too.
        for number in (1, NO_FINAL_NEWLINE, NO_FINAL_NEWLINE + 1):
            sent = plan[number - 1]
            resp, lines, _octets = pop.top(number, 100_000)
            assert resp == b"+OK Top of message follows"
            assert strip_trace(raw_of(lines))[1] == sent.as_read, number


# ---- DELE, RSET, QUIT -------------------------------------------------------------------------
def test_fetchmail_style_retr_dele_then_a_new_session(mailhost: Mailhost) -> None:
    """fetchmail's download: RETR n, DELE n, RETR n+1, ... (with a TOP now and then);
    QUIT removes the deleted ones and a second session sees what is left, unchanged."""
    plan = mailhost.plan
    kept = {1, 9, NO_FINAL_NEWLINE - 1, NO_FINAL_NEWLINE + 1, OVER_CHUNK, 50, 80}
    with pop3_session(mailhost.server, BOB) as pop:
        uidls = uidls_of(pop)
        assert sorted(uidls) == [s.number for s in plan]
        for sent in plan:
            if sent.number % 10 == 5:
                check_top(pop, sent, 0)
            check_retr(pop, sent)
            if sent.number not in kept:
                assert pop.dele(sent.number).startswith(b"+OK")
                with pytest.raises(poplib.error_proto, match="already deleted"):
                    pop.retr(sent.number)
        assert pop.stat()[0] == len(kept)
        assert sorted(sizes_of(pop)) == sorted(kept)
    with pop3_session(mailhost.server, BOB) as pop:
        left = [plan[n - 1] for n in sorted(kept)]
        assert pop.stat()[0] == len(left)
        assert list(uidls_of(pop).values()) == [uidls[s.number] for s in left]
        for number, sent in enumerate(left, start=1):
            check_retr(pop, Sent(number, sent.raw, sent.by_smtp))
        for number, sent in reversed(list(enumerate(left, start=1))):
            check_retr(pop, Sent(number, sent.raw, sent.by_smtp))


def test_dele_then_rset_keeps_everything(mailhost: Mailhost) -> None:
    plan = mailhost.plan
    with pop3_session(mailhost.server) as pop:
        for sent in plan[:45]:
            check_retr(pop, sent)
            pop.dele(sent.number)
        assert pop.stat()[0] == len(plan) - 45
        with pytest.raises(poplib.error_proto):
            pop.retr(3)
        check_retr(pop, plan[45])
        pop.rset()
        assert pop.stat()[0] == len(plan)
        for sent in plan:
            check_retr(pop, sent)
    with pop3_session(mailhost.server) as pop:
        assert pop.stat()[0] == len(plan)
        for sent in plan:
            check_retr(pop, sent)
