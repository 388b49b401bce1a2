"""POP3Connection.message(): a RETR or TOP answered with the whole message in one call.

It must put exactly the bytes on the wire that message_data() (in any chunks) and then
message_end() put there: the status line (RFC 1939 section 7: RETR's octet count is the size
in the maildrop), the body dot-stuffed (section 3: every line starting with "." gets one
more, a line starts after any LF), TOP's header and n lines, and the terminator (CRLF "."
CRLF, after a CRLF of ours if the body does not end with a line break). The expected answers
here come from a line-by-line model of RFC 1939, not from the encoder's code.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postar.mime.dotlines import has_dot_lines
from postar.pop3 import (
    NEED_DATA,
    Commit,
    GlueError,
    LoginRequest,
    MaildropEntry,
    POP3Connection,
    RetrRequest,
)
from postar.pop3.message import dot_stuff, terminator
from tests.unit.pop3.pop3_harness import TLS_SETTINGS

TOP_STATUS = b"+OK Top of message follows\r\n"

BODIES: dict[str, bytes] = {
    "plain": b"Subject: a\r\nFrom: b@example.org\r\n\r\nHello\r\nWorld\r\n",
    "dot-lines": b"Subject: d\r\n\r\n.one\r\n..two\r\nmid.dle\r\n.\r\n...\r\nend\r\n",
    "starts-with-dot": b".Subject: x\r\n\r\n.body\r\n",
    "no-final-newline": b"Subject: n\r\n\r\nline one\r\nno end",
    "no-final-newline-dot": b"Subject: n\r\n\r\nline\r\n.last",
    "empty": b"",
    "bare-lf": b"Subject: l\n\n.a\nb\n.\nc\n",
    "lone-dot-line": b"Subject: t\r\n\r\nbefore\r\n.\r\nafter\r\n",
    "only-a-dot": b".",
    "dot-crlf": b".\r\n",
    "header-only": b"Subject: h\r\nX: y",
    "blank-line-of-crs": b"S: x\r\n\r\r\n.b1\r\nb2\r\n",
    "ends-with-cr": b"S: c\r\n\r\nx\r",
    "blank-first-line": b"\r\n.x\r\ny\r\n",
    "terminator-inside": b"S: e\r\n\r\na\r\n.\r\n\r\n.\r\nb\r\n",
}
TOPS: list[int | None] = [None, 0, 1, 99]  # RETR, TOP n 0, TOP n 1, TOP n (more than there are)


# ---- an independent model of the answer ---------------------------------------------------------
def lines_of(data: bytes) -> list[bytes]:
    """data cut after every LF (the last piece may lack one); b"" has no lines."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    return [*lines, parts[-1]] if parts[-1] else lines


def top_part(body: bytes, n: int) -> bytes:
    """What TOP n sends of body (RFC 1939 section 7): the header, the blank line after it,
    then n lines; a body without a blank line is all header. A line of nothing but CRs
    counts as blank, as the encoder counts it."""
    lines = lines_of(body)
    for i, line in enumerate(lines):
        if line.endswith(b"\n") and not line[:-1].strip(b"\r"):
            return b"".join(lines[: i + 1 + n])
    return body


def expected_answer(body: bytes, top: int | None, size: int | None = None) -> bytes:
    if top is None:
        status = b"+OK %d octets\r\n" % (len(body) if size is None else size)
        sent = body
    else:
        status, sent = TOP_STATUS, top_part(body, top)
    stuffed = b"".join(b"." + line if line.startswith(b".") else line for line in lines_of(sent))
    end = b".\r\n" if not sent or sent.endswith(b"\n") else b"\r\n.\r\n"
    return status + stuffed + end


def unstuff(answer: bytes) -> tuple[bytes, bytes]:
    """(status line, message) as a client reads a multi-line answer (RFC 1939 section 3):
    lines up to the one that is "." CRLF, each without one leading "."."""
    status, _, rest = answer.partition(b"\r\n")
    message = bytearray()
    lines = lines_of(rest)
    for i, line in enumerate(lines):
        if line == b".\r\n":
            assert i == len(lines) - 1, "bytes after the terminating line"
            return status, bytes(message)
        message += line[1:] if line.startswith(b".") else line
    raise AssertionError(f"no terminating line in {answer!r}")


def as_read(body: bytes) -> bytes:
    """What a client gets back for body: a CRLF of the server's after a last unended line."""
    return body if not body or body.endswith(b"\n") else body + b"\r\n"


# ---- driving the core ---------------------------------------------------------------------------
Answer = Callable[[POP3Connection, bytes], None]


def logged_in(sizes: Sequence[int]) -> POP3Connection:
    core = POP3Connection(TLS_SETTINGS)
    core.receive_data(b"USER u\r\nPASS p\r\n")
    assert isinstance(core.next_event(), LoginRequest)
    core.authenticated([MaildropEntry(size, f"1.{n + 1}") for n, size in enumerate(sizes)], "u")
    core.data_to_send()
    return core


def command(top: int | None, number: int = 1) -> bytes:
    return b"RETR %d\r\n" % number if top is None else b"TOP %d %d\r\n" % (number, top)


def whole(core: POP3Connection, body: bytes) -> None:
    core.message(body)


def data_then_end(core: POP3Connection, body: bytes) -> None:
    core.message_data(body)
    core.message_end()


def chunked(pieces: Iterable[bytes]) -> Answer:
    """The glue's streaming path: chunks until the core wants no more, then the end."""

    def answer(core: POP3Connection, _body: bytes) -> None:
        for piece in pieces:
            if not core.message_data(piece):
                break
        core.message_end()

    return answer


def answered(body: bytes, top: int | None, answer: Answer) -> bytes:
    """The bytes the core sends for RETR 1 (or TOP 1 n) of a one-message maildrop."""
    core = logged_in([len(body)])
    core.receive_data(command(top))
    assert core.next_event() == RetrRequest(0, top)
    answer(core, body)
    out = core.data_to_send()
    # The answer is complete: the core waits for the next command, not for more message.
    assert core.next_event() is NEED_DATA
    with pytest.raises(GlueError):
        core.message_end()
    return out


def cut(data: bytes, positions: Iterable[int]) -> list[bytes]:
    points = [0, *sorted(set(positions)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def body_bytes(body: bytes) -> list[bytes]:
    return [body[i : i + 1] for i in range(len(body))]


def splits(body: bytes) -> Iterable[list[bytes]]:
    """Every cut into two pieces (an empty piece at either end included), one byte a piece,
    and cuts at all the awkward spots at once: after each LF or CR, before each "."."""
    for at in range(len(body) + 1):
        yield [body[:at], body[at:]]
    yield body_bytes(body)
    awkward = [
        i
        for i in range(1, len(body))
        if body[i - 1 : i] in (b"\n", b"\r") or body[i : i + 1] == b"."
    ]
    yield cut(body, awkward)


# ---- message() against message_data() + message_end() -------------------------------------------
@pytest.mark.parametrize("top", TOPS, ids=lambda t: "RETR" if t is None else f"TOP-{t}")
@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
def test_message_is_message_data_and_message_end(body: bytes, top: int | None) -> None:
    expected = expected_answer(body, top)
    assert answered(body, top, whole) == expected
    assert answered(body, top, data_then_end) == expected


@pytest.mark.parametrize("top", TOPS, ids=lambda t: "RETR" if t is None else f"TOP-{t}")
@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
def test_message_is_message_data_in_any_chunks(body: bytes, top: int | None) -> None:
    reference = answered(body, top, whole)
    for pieces in splits(body):
        assert b"".join(pieces) == body
        assert answered(body, top, chunked(pieces)) == reference, pieces


@pytest.mark.parametrize("top", TOPS, ids=lambda t: "RETR" if t is None else f"TOP-{t}")
@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
def test_message_after_some_message_data(body: bytes, top: int | None) -> None:
    """A glue that streamed part of the message may send the rest whole."""
    expected = expected_answer(body, top)
    for at in range(len(body) + 1):

        def answer(core: POP3Connection, data: bytes, at: int = at) -> None:
            core.message_data(data[:at])
            core.message(data[at:])

        assert answered(body, top, answer) == expected, at


@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
def test_retr_answered_whole_unstuffs_to_the_body(body: bytes) -> None:
    status, message = unstuff(answered(body, None, whole))
    assert status == b"+OK %d octets" % len(body)
    assert message == as_read(body)


def test_expected_answers_of_the_model() -> None:
    # The model itself, on answers written out by hand.
    assert expected_answer(BODIES["dot-lines"], None) == (
        b"+OK 49 octets\r\n"
        b"Subject: d\r\n\r\n..one\r\n...two\r\nmid.dle\r\n..\r\n....\r\nend\r\n.\r\n"
    )
    assert expected_answer(BODIES["no-final-newline-dot"], None) == (
        b"+OK 25 octets\r\nSubject: n\r\n\r\nline\r\n..last\r\n.\r\n"
    )
    assert expected_answer(BODIES["bare-lf"], 1) == TOP_STATUS + b"Subject: l\n\n..a\n.\r\n"
    assert expected_answer(BODIES["blank-line-of-crs"], 0) == TOP_STATUS + b"S: x\r\n\r\r\n.\r\n"
    assert expected_answer(BODIES["header-only"], 0) == TOP_STATUS + b"Subject: h\r\nX: y\r\n.\r\n"
    assert expected_answer(b"", None) == b"+OK 0 octets\r\n.\r\n"
    assert expected_answer(b".", None) == b"+OK 1 octets\r\n..\r\n.\r\n"


# ---- the status line ----------------------------------------------------------------------------
def test_retr_status_is_the_size_in_the_maildrop() -> None:
    # RFC 1939 section 7: the octet count is the maildrop's, which LIST gave, not the length
    # of what the glue passes (a message whose size was counted differently keeps its count).
    bodies = [b"one\r\n", b"second message\r\n", b"third\r\n"]
    sizes = [111, 2222, 33333]
    core = logged_in(sizes)
    for number, body in ((2, bodies[1]), (3, bodies[2]), (1, bodies[0])):
        core.receive_data(b"RETR %d\r\n" % number)
        assert core.next_event() == RetrRequest(number - 1, None)
        core.message(body)
        assert core.data_to_send() == expected_answer(body, None, sizes[number - 1])
    for answer in (data_then_end, chunked([b"se", b"cond message\r", b"\n"])):
        core.receive_data(b"RETR 2\r\n")
        assert core.next_event() == RetrRequest(1, None)
        answer(core, bodies[1])
        assert core.data_to_send() == b"+OK 2222 octets\r\nsecond message\r\n.\r\n"


def test_top_status_has_no_octet_count() -> None:
    core = logged_in([4000])
    core.receive_data(b"TOP 1 0\r\n")
    assert core.next_event() == RetrRequest(0, 0)
    core.message(b"Subject: s\r\n\r\nbody\r\n")
    assert core.data_to_send() == TOP_STATUS + b"Subject: s\r\n\r\n.\r\n"


# ---- message() out of turn ----------------------------------------------------------------------
def test_message_without_a_pending_retr_is_a_glue_error() -> None:
    core = POP3Connection(TLS_SETTINGS)
    core.data_to_send()
    with pytest.raises(GlueError):
        core.message(b"x\r\n")  # AUTHORIZATION, nothing asked
    core.receive_data(b"USER u\r\nPASS p\r\n")
    assert isinstance(core.next_event(), LoginRequest)
    core.data_to_send()
    with pytest.raises(GlueError):
        core.message(b"x\r\n")  # the login is pending, not a message
    core.authenticated([MaildropEntry(3, "1.1")], "u")
    core.data_to_send()
    with pytest.raises(GlueError):
        core.message(b"x\r\n")  # TRANSACTION, no command
    core.receive_data(b"NOOP\r\n")
    assert core.next_event() is NEED_DATA
    assert core.data_to_send() == b"+OK\r\n"
    with pytest.raises(GlueError):
        core.message(b"x\r\n")
    # A refused call sends nothing.
    assert core.data_to_send() == b""

    core.receive_data(b"RETR 1\r\n")
    assert core.next_event() == RetrRequest(0, None)
    core.message(b"x\r\n")
    assert core.data_to_send() == b"+OK 3 octets\r\nx\r\n.\r\n"
    for late in (core.message, core.message_data):
        with pytest.raises(GlueError):
            late(b"x\r\n")  # answered already
    with pytest.raises(GlueError):
        core.message_end()
    assert core.data_to_send() == b""

    core.receive_data(b"RETR 1\r\n")
    assert core.next_event() == RetrRequest(0, None)
    core.message_unavailable()
    assert core.data_to_send() == b"-ERR [SYS/TEMP] Message unavailable\r\n"
    with pytest.raises(GlueError):
        core.message(b"x\r\n")  # refused already

    core.receive_data(b"QUIT\r\n")
    assert core.next_event() == Commit(())
    with pytest.raises(GlueError):
        core.message(b"x\r\n")  # the commit is pending
    assert core.data_to_send() == b""


# ---- pipelining ---------------------------------------------------------------------------------
PIPELINED_BODIES = [
    b"Subject: 1\r\n\r\n.first\r\nbody\r\n",
    b"Subject: 2\r\n\r\nno end",
    b"Subject: 3\n\n.\nbare\n",
]


def pipelined_session(answer: Answer) -> bytes:
    core = logged_in([len(b) for b in PIPELINED_BODIES])
    core.receive_data(
        b"RETR 1\r\nRETR 3\r\nTOP 2 0\r\nRETR 2\r\nRETR 2\r\nDELE 1\r\nRETR 1\r\n"
        b"TOP 3 1\r\nNOOP\r\nRETR 3\r\n"
    )
    out = bytearray()
    while (event := core.next_event()) is not NEED_DATA:
        assert isinstance(event, RetrRequest), event
        answer(core, PIPELINED_BODIES[event.index])
    out += core.data_to_send()
    return bytes(out)


def test_pipelined_retrs_answered_whole_come_out_in_order() -> None:
    one, two, three = PIPELINED_BODIES
    expected = (
        expected_answer(one, None)
        + expected_answer(three, None)
        + expected_answer(two, 0)
        + expected_answer(two, None) * 2
        + b"+OK Message 1 deleted\r\n"
        + b"-ERR Message 1 already deleted\r\n"
        + expected_answer(three, 1)
        + b"+OK\r\n"
        + expected_answer(three, None)
    )
    assert pipelined_session(whole) == expected
    assert pipelined_session(data_then_end) == expected
    assert pipelined_session(lambda core, body: chunked(body_bytes(body))(core, body)) == expected


# ---- the helpers message() is built from --------------------------------------------------------
@pytest.mark.parametrize(
    ("chunk", "at_line_start", "stuffed"),
    [
        (b"", True, b""),
        (b"plain\r\n", True, b"plain\r\n"),
        (b".a\r\n.b\n.", True, b"..a\r\n..b\n.."),
        (b".a\r\n.b\n.", False, b".a\r\n..b\n.."),  # the first line started in an earlier chunk
        (b"\n.", False, b"\n.."),
        (b"x.y\r\n", True, b"x.y\r\n"),
        (b"..", True, b"..."),
    ],
)
def test_dot_stuff(chunk: bytes, at_line_start: bool, stuffed: bytes) -> None:
    assert dot_stuff(chunk, at_line_start) == stuffed


@pytest.mark.parametrize(
    ("data", "end"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b".\r\n"),
        (b"a\n", b".\r\n"),
        (b"a", b"\r\n.\r\n"),
        (b"a\r", b"\r\n.\r\n"),
        (b".", b"\r\n.\r\n"),
    ],
)
def test_terminator(data: bytes, end: bytes) -> None:
    assert terminator(data) == end


# ---- property: any body, any chunks -------------------------------------------------------------
# Bodies made of the bytes that matter (line ends, dots, CRs) and a few others.
PIECES = st.sampled_from(
    [b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.\r\n", b"\n.", b"a", b"Subject: x", b" ", b"\x00"]
)
BODY = st.one_of(st.lists(PIECES, max_size=30).map(b"".join), st.binary(max_size=60))
TOP = st.one_of(st.none(), st.integers(min_value=0, max_value=4))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODY, top=TOP, data=st.data())
def test_message_matches_chunked_message_data(
    body: bytes, top: int | None, data: st.DataObject
) -> None:
    positions = data.draw(st.lists(st.integers(0, len(body)), max_size=8), label="cuts")
    pieces = cut(body, positions)
    whole_answer = answered(body, top, whole)
    assert answered(body, top, chunked(pieces)) == whole_answer
    assert answered(body, top, data_then_end) == whole_answer
    assert whole_answer == expected_answer(body, top)
    status, message = unstuff(whole_answer)
    if top is None:
        assert status == b"+OK %d octets" % len(body)
        assert message == as_read(body)
    else:
        assert status == TOP_STATUS.rstrip(b"\r\n")
        assert message == as_read(top_part(body, top))
        assert body.startswith(top_part(body, top))


@pytest.mark.parametrize("body", [b"plain\r\nlines\r\n", b"x\r\n.dot\r\n", b".first\r\n", b""])
def test_message_with_dot_lines_known_gives_the_same_answer(body: bytes) -> None:
    answers = []
    for known in (None, has_dot_lines(body)):
        core = logged_in([len(body)])
        core.receive_data(b"RETR 1\r\n")
        assert isinstance(core.next_event(), RetrRequest)
        core.data_to_send()
        core.message(body, known)
        answers.append(core.data_to_send())
    assert answers[0] == answers[1]
