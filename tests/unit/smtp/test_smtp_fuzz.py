"""Hypothesis walks random sessions: random commands, random junk, random cuts, random verdicts.

Whatever the client sends, the core never raises, answers every line with well-formed replies,
and keeps its input buffer bounded.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postar.smtp.core import AUTH_LINE_LENGTH, SMTPConnection
from postar.smtp.data import DotReader
from postar.smtp.events import (
    NEED_DATA,
    PAUSED,
    AuthResponse,
    AuthStart,
    Decision,
    Event,
    MessageData,
    StartTLS,
    Terminal,
)
from postar.smtp.replies import Reply
from postar.smtp.state import Phase
from tests.unit.smtp.smtp_driver import settings as smtp_settings

COMMANDS = [
    b"EHLO client.example.org",
    b"HELO client",
    b"MAIL FROM:<a@example.org>",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME",
    b"MAIL FROM:<a@example.org> SMTPUTF8 RET=FULL ENVID=x+2B",
    b"RCPT TO:<b@example.net>",
    b"RCPT TO:<b@example.net> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+40example.net",
    b"RCPT TO:<Postmaster>",
    "RCPT TO:<δ@παράδειγμα.δοκιμή>".encode(),
    b"DATA",
    b"BDAT 5",
    b"BDAT 0 LAST",
    b"BDAT 3 LAST",
    b"RSET",
    b"NOOP",
    b"VRFY x",
    b"EXPN x",
    b"HELP",
    b"STARTTLS",
    b"AUTH PLAIN",
    b"AUTH PLAIN AHVzZXIAc2VjcmV0",
    b"AUTH LOGIN",
    b"*",
    b"dXNlcg==",
    b".",
    b"..",
    b"QUIT",
    b"",
    b"MAIL FROM:<a@@b>",
    b"RCPT TO:<b@example.net> FOO=1",
]

_REPLY_LINE = re.compile(rb"\A[2345]\d\d([ -].*)?\Z", re.DOTALL)

pieces = st.one_of(
    st.sampled_from(COMMANDS).map(lambda c: c + b"\r\n"),
    st.sampled_from([b"\r\n", b"\n", b"\r", b".\r\n", b"\r\n.\r\n", b"\n.\n", b"\x00", b"\xff"]),
    st.binary(max_size=40),
)

verdicts = st.sampled_from(["accept", "reject4", "reject5", "challenge"])


def _answer(conn: SMTPConnection, event: Decision, verdict: str) -> None:
    if isinstance(event, AuthStart | AuthResponse):
        if verdict == "challenge":
            conn.auth_challenge(b"more")
        elif verdict == "accept":
            conn.auth_success()
        else:
            conn.auth_failure()
        return
    if verdict in ("accept", "challenge"):
        conn.accept()
        if isinstance(event, StartTLS):
            conn.start_tls_done()
    elif verdict == "reject4":
        conn.reject(Reply(451, "4.3.0", "Later"))
    else:
        conn.reject(Reply(550, "5.7.1", "No"))


def _check_output(out: bytes) -> None:
    assert out == b"" or out.endswith(b"\r\n")
    for line in out.split(b"\r\n")[:-1]:
        assert _REPLY_LINE.match(line), line


@settings(max_examples=400, deadline=None)
@given(
    st.lists(pieces, max_size=40),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=8),
    st.lists(verdicts, min_size=1, max_size=8),
    st.sampled_from(["normalize", "reject"]),
)
def test_random_sessions_never_crash_and_always_answer_well(
    chunks: list[bytes], cuts: list[int], answers: list[str], policy: str
) -> None:
    conn = SMTPConnection(smtp_settings(max_line_length=512, bare_newlines=policy))
    conn.greeting()
    stream = b"".join(chunks)
    pos = 0
    turn = 0
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            _check_output(conn.data_to_send())
            if pos >= len(stream):
                conn.receive_data(b"")
                continue
            size = cuts[turn % len(cuts)]
            conn.receive_data(stream[pos : pos + size])
            pos += size
            turn += 1
            limit = AUTH_LINE_LENGTH if conn.phase is Phase.AUTH else 512
            assert len(conn._buf) <= limit + 64
            continue
        assert event is not PAUSED
        assert isinstance(event, Event)
        events.append(event)
        if isinstance(event, Decision):
            _answer(conn, event, answers[turn % len(answers)])
            turn += 1
        if isinstance(event, Terminal):
            _check_output(conn.data_to_send())
            break
    assert conn.closed


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"."]), max_size=60),
    st.integers(min_value=1, max_value=7),
)
def test_dot_reader_matches_a_byte_at_a_time_reference(parts: list[bytes], cut: int) -> None:
    data = b"".join(parts) + b"\r\n.\r\n"
    expected_content, expected_end = _reference(data)
    reader = DotReader()
    buf = bytearray()
    got = bytearray()
    consumed_total = 0
    ended = False
    for i in range(0, len(data), cut):
        buf += data[i : i + cut]
        scan = reader.feed(buf)
        got += scan.content
        consumed_total += scan.consumed
        del buf[: scan.consumed]
        if scan.ended:
            ended = True
            break
    assert ended
    assert bytes(got) == expected_content
    assert consumed_total == expected_end


def _reference(data: bytes) -> tuple[bytes, int]:
    """The DATA rules of RFC 5321 4.5.2 spelt out one byte at a time, for complete input."""
    out = bytearray()
    start = "crlf"  # "crlf", "bare" or "" (inside a line)
    i = 0
    while True:
        if start and data[i : i + 1] == b".":
            if start == "crlf" and data[i + 1 : i + 3] == b"\r\n":
                return bytes(out), i + 3
            i += 1
            start = ""
            continue
        ch = data[i : i + 1]
        if ch == b"\r" and data[i + 1 : i + 2] == b"\n":
            out += b"\r\n"
            i += 2
            start = "crlf"
        elif ch in (b"\r", b"\n"):
            out += b"\r\n"
            i += 1
            start = "bare"
        else:
            out += ch
            i += 1
            start = ""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=50))
def test_bdat_content_is_delivered_whole_however_it_is_cut(body: bytes, cut: int) -> None:
    head = b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
    stream = head + b"BDAT %d LAST\r\n" % len(body) + body + b"QUIT\r\n"
    conn = SMTPConnection(smtp_settings())
    conn.greeting()
    got = bytearray()
    pos = 0
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(stream[pos : pos + cut] if pos < len(stream) else b"")
            pos += cut
            continue
        if isinstance(event, MessageData):
            got += event.data
        if isinstance(event, Decision):
            conn.accept()
        if isinstance(event, Terminal):
            break
    normal = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    assert bytes(got) == normal
    assert conn.data_to_send().endswith(b"250 2.0.0 Message accepted\r\n221 2.0.0 Bye\r\n")


class _CountingBuffer(bytearray):
    """A receive buffer that adds up how many bytes each find() walked over."""

    examined = 0

    def find(self, sub: object, start: object = None, end: object = None) -> int:  # type: ignore[override]
        first = 0 if start is None else int(start)  # type: ignore[call-overload]
        last = len(self) if end is None else int(end)  # type: ignore[call-overload]
        found = super().find(sub, first, last)  # type: ignore[arg-type]
        self.examined += (found if found != -1 else last) - first
        return found


@pytest.mark.parametrize(
    ("line_end", "decoded"),
    # "\r\r\n" is what smtp-source sends for a file with CRLF lines: a bare CR, then CRLF.
    [(b"\n", b"\r\n"), (b"\r", b"\r\n"), (b"\r\r\n", b"\r\n\r\n")],
)
def test_dot_reader_reads_bare_line_ends_in_linear_work(line_end: bytes, decoded: bytes) -> None:
    # 2,000 lines with a bare line end each: searching the rest of the buffer again for every
    # line (as a reader once did) walks ~100 MB here; a linear reader a small multiple of 100 KB.
    data = b"".join(b"%048d" % i + line_end for i in range(2000))
    buf = _CountingBuffer(data + b"\r\n.\r\n")
    scan = DotReader().feed(buf)
    assert scan.ended and scan.bare_newline
    assert scan.content == data.replace(line_end, decoded) + b"\r\n"
    assert buf.examined <= 4 * len(buf), buf.examined
