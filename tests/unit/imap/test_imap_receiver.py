"""The receiver: framing, literals of each kind, limits, raw lines, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postar.imap import commands as c
from postar.imap.codes import Code
from postar.imap.errors import ErrorStatus, ParseError
from postar.imap.limits import ImapLimits, LiteralMode
from postar.imap.receiver import NEED_DATA, NeedContinuation, Receiver
from postar.imap.testing import Event, drain, feed

SAMPLES = [
    b"a1 NOOP\r\n",
    b'a2 LOGIN {4}\r\nfred "pa\\"ss"\r\n',
    b"a3 APPEND INBOX (\\Seen) {5+}\r\nhello ~{3}\r\na\x00b\r\n",
    b"a4 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)]<0.10>) (CHANGEDSINCE 5)\r\n",
    b'a5 SEARCH CHARSET UTF-8 OR (FROM "x" SEEN) NOT UID 4:7\n',
    b"a6 BOGUS\r\nb7 NOOP\r\n",
]


def expected(sample: bytes) -> list[Event]:
    return feed(sample)


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_split_point_gives_the_same_events(sample: bytes) -> None:
    whole = expected(sample)
    assert whole and isinstance(whole[-1], c.Command)
    for cut in range(1, len(sample)):
        receiver = Receiver()
        receiver.receive_data(sample[:cut])
        events = drain(receiver)
        receiver.receive_data(sample[cut:])
        events += drain(receiver)
        assert events == whole, cut


@pytest.mark.parametrize("sample", SAMPLES)
def test_byte_at_a_time(sample: bytes) -> None:
    assert feed(sample, chunk=1) == expected(sample)


def test_pipelined_commands() -> None:
    events = feed(b"a NOOP\r\nb CAPABILITY\r\nc LOGOUT\r\n")
    assert events == [c.Noop(tag="a"), c.Capability(tag="b"), c.Logout(tag="c")]


def test_sync_literal_asks_for_continuation_before_reading() -> None:
    r = Receiver()
    r.receive_data(b"a LOGIN {4}\r\n")
    assert r.next_command() == NeedContinuation()
    assert r.next_command() is NEED_DATA
    r.receive_data(b"fred {6}\r\n")
    assert r.next_command() == NeedContinuation()
    r.receive_data(b"sesame\r\n")
    assert r.next_command() == c.Login(tag="a", username="fred", password="sesame")


def test_non_sync_literal_needs_no_continuation() -> None:
    assert feed(b"a LOGIN {4+}\r\nfred {6+}\r\nsesame\r\n") == [
        c.Login(tag="a", username="fred", password="sesame")
    ]


def test_two_gigabyte_literal_is_refused_without_reading() -> None:
    r = Receiver()
    r.receive_data(b"a APPEND INBOX {2147483648}\r\n")
    err = r.next_command()
    assert err == ParseError("a", "Literal too large", Code.TOOBIG, ErrorStatus.NO)
    assert r.buffered == 0
    # The client did not get "+", so its next bytes are a new command.
    r.receive_data(b"b NOOP\r\n")
    assert r.next_command() == c.Noop(tag="b")


def test_oversized_non_sync_literal_closes_with_bye_toobig() -> None:
    # RFC 7888 section 4: the client sends it anyway; refuse by closing.
    r = Receiver(ImapLimits(max_literal_size=100))
    r.receive_data(b"a APPEND INBOX {101+}\r\n" + b"x" * 101 + b"\r\nb NOOP\r\n")
    err = r.next_command()
    assert isinstance(err, ParseError) and err.fatal and err.code is Code.TOOBIG
    r.receive_data(b"more")
    assert r.next_command() == err and r.buffered == 0


def test_literal_minus_limits_non_sync_literals_to_4096() -> None:
    big = b"x" * 4097
    data = b"a APPEND INBOX {4097+}\r\n" + big + b"\r\nb NOOP\r\n"
    events = feed(data, literal_mode=LiteralMode.MINUS)
    assert events == [
        ParseError("a", "Non-synchronizing literal too large", Code.TOOBIG),
        c.Noop(tag="b"),
    ]
    ok = feed(b"a LOGIN {4096+}\r\n" + b"y" * 4096 + b" p\r\n", literal_mode=LiteralMode.MINUS)
    assert ok == [c.Login(tag="a", username="y" * 4096, password="p")]
    # A synchronising literal of any allowed size is still fine under LITERAL-.
    events = feed(b"a APPEND INBOX {4097}\r\n" + big + b"\r\n", literal_mode=LiteralMode.MINUS)
    assert events[0] == NeedContinuation() and isinstance(events[1], c.Append)


def test_non_sync_literal_without_literal_plus() -> None:
    events = feed(b"a LOGIN {3+}\r\nabc x\r\nb NOOP\r\n", literal_mode=LiteralMode.NONE)
    assert [type(e) for e in events] == [ParseError, c.Noop]


def test_binary_literal_only_when_binary_is_on() -> None:
    r = Receiver(binary=False)
    r.receive_data(b"a APPEND INBOX ~{3}\r\n")
    assert isinstance(r.next_command(), ParseError)
    # literal8 outside APPEND is a syntax error even with BINARY.
    assert isinstance(feed(b"a LOGIN ~{1+}\r\nx y\r\n")[0], ParseError)


def test_nul_in_plain_literal_is_bad() -> None:
    assert isinstance(feed(b"a LOGIN {3+}\r\na\x00b c\r\n")[0], ParseError)


def test_long_line_is_skipped_without_buffering() -> None:
    limits = ImapLimits(max_line_length=100)
    r = Receiver(limits)
    r.receive_data(b"a SEARCH " + b"1," * 60)
    assert r.next_command() is NEED_DATA and r.buffered <= 32 + 0
    r.receive_data(b"1," * 10_000)
    assert r.next_command() is NEED_DATA and r.buffered == 0
    r.receive_data(b"1\r\nb NOOP\r\n")
    assert r.next_command() == ParseError("a", "Line too long", Code.TOOBIG)
    assert r.next_command() == c.Noop(tag="b")


def test_long_line_with_trailing_non_sync_literal_skips_the_literal() -> None:
    limits = ImapLimits(max_line_length=50)
    data = b"a APPEND " + b"x" * 80 + b" {5+}\r\nhello\r\nb NOOP\r\n"
    events = feed(data, limits=limits)
    assert events == [ParseError("a", "Line too long", Code.TOOBIG), c.Noop(tag="b")]
    # With a synchronising literal the answer ends the command: the client sends nothing.
    data = b"a APPEND " + b"x" * 80 + b" {5}\r\nb NOOP\r\n"
    assert feed(data, limits=limits, chunk=7) == events


def test_command_size_limit_counts_literals() -> None:
    limits = ImapLimits(max_command_size=100)
    events = feed(b"a LOGIN {60}\r\n" + b"u" * 60 + b" {60}\r\n", limits=limits)
    assert events[0] == NeedContinuation()
    assert events[1] == ParseError("a", "Literal too large", Code.TOOBIG, ErrorStatus.NO)


def test_deep_nesting_is_a_parse_error() -> None:
    deep = b"a SEARCH " + b"(" * 10_000 + b"SEEN" + b")" * 10_000 + b"\r\n"
    (err,) = feed(deep)
    assert isinstance(err, ParseError) and err.code is Code.LIMIT
    nots = b"a SEARCH " + b"NOT " * 10_000 + b"SEEN\r\n"
    (err,) = feed(nots)
    assert isinstance(err, ParseError) and err.code is Code.LIMIT
    ok = b"a SEARCH " + b"(" * 20 + b"SEEN" + b")" * 20 + b"\r\n"
    assert isinstance(feed(ok)[0], c.Search)


UNBALANCED = [
    b"a SEARCH (SEEN\r\n",
    b"a SEARCH SEEN)\r\n",
    b"a FETCH 1 (FLAGS\r\n",
    b"a STORE 1 FLAGS (\\Seen\r\n",
    b'a LIST ("" %\r\n',
]


@pytest.mark.parametrize("text", UNBALANCED)
def test_unbalanced_parentheses(text: bytes) -> None:
    (err,) = feed(text)
    assert isinstance(err, ParseError) and err.tag == "a"


def test_sequence_set_range_limit() -> None:
    text = b"a FETCH " + b",".join(b"%d" % (2 * i + 1) for i in range(1_000_000)) + b" FLAGS\r\n"
    limits = ImapLimits(max_line_length=len(text), max_sequence_ranges=1_000_000)
    (cmd,) = feed(text, limits=limits)
    assert isinstance(cmd, c.Fetch) and len(cmd.sequence_set) == 1_000_000
    (err,) = feed(text, limits=ImapLimits(max_line_length=len(text)))
    assert isinstance(err, ParseError) and err.code is Code.LIMIT


def test_expect_line_for_authenticate_and_idle() -> None:
    r = Receiver()
    r.receive_data(b"a AUTHENTICATE PLAIN\r\nAHRlc3QAdGVzdA==\r\nb IDLE\r\nDONE\r\nc NOOP\r\n")
    assert r.next_command() == c.Authenticate(tag="a", mechanism="PLAIN")
    assert r.expect_line() == b"AHRlc3QAdGVzdA=="
    assert r.next_command() == c.Idle(tag="b")
    assert r.expect_line() == b"DONE"
    assert r.expect_line() == b"c NOOP"
    assert r.expect_line() is NEED_DATA


def test_expect_line_limit() -> None:
    r = Receiver(ImapLimits(max_line_length=10))
    r.receive_data(b"x" * 50)
    assert r.expect_line() is NEED_DATA
    r.receive_data(b"\r\nDONE\r\n")
    err = r.expect_line()
    assert isinstance(err, ParseError) and err.code is Code.TOOBIG
    assert r.expect_line() == b"DONE"


def test_discard_buffer_after_starttls() -> None:
    r = Receiver()
    r.receive_data(b"a STARTTLS\r\nb LOGIN injected x\r\n")
    assert r.next_command() == c.StartTls(tag="a")
    assert r.discard_buffer() == b"b LOGIN injected x\r\n"
    assert r.next_command() is NEED_DATA


def test_utf8_switch() -> None:
    r = Receiver()
    r.receive_data('a SELECT "Ünïcode"\r\n'.encode())
    assert isinstance(r.next_command(), ParseError)
    r.utf8 = True
    r.receive_data('a SELECT "Ünïcode"\r\n'.encode())
    assert r.next_command() == c.Select(tag="a", mailbox="Ünïcode")


def test_empty_lines_are_ignored() -> None:
    assert feed(b"\r\n\r\na NOOP\r\n") == [c.Noop(tag="a")]


_FUZZ_LIMITS = ImapLimits(
    max_line_length=200, max_literal_size=50, max_command_size=400, max_nesting_depth=8
)
_TOKENS = st.sampled_from(
    [b"a ", b"UID ", b"FETCH ", b"SEARCH ", b"APPEND ", b"LOGIN ", b"LIST ", b"STORE ", b"1:*",
     b"(", b")", b"[", b"]", b"<0.5>", b"{3}\r\n", b"{2+}\r\n", b"~{1}\r\n", b"{99999}\r\n",
     b'"', b"\\", b" ", b"\r\n", b"\n", b"BODY[", b"HEADER.FIELDS", b"NOT ", b"OR ", b"$",
     b"\x00", b"\xff", b"INBOX", b"&Jjo-", b"=", b"CHARSET ", b"RETURN ", b"+FLAGS "]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(_TOKENS, st.binary(max_size=8)), max_size=40),
    st.integers(min_value=1, max_value=17),
    st.sampled_from(list(LiteralMode)),
    st.booleans(),
)
def test_fuzz_receiver_only_yields_typed_values(
    parts: list[bytes], chunk: int, mode: LiteralMode, utf8: bool
) -> None:
    data = b"".join(parts)
    r = Receiver(_FUZZ_LIMITS, literal_mode=mode)
    r.utf8 = utf8
    for i in range(0, len(data), chunk):
        r.receive_data(data[i : i + chunk])
        for _ in range(1000):
            event = r.next_command()
            if event is NEED_DATA:
                break
            assert isinstance(event, c.Command | NeedContinuation | ParseError)
            if isinstance(event, ParseError) and event.fatal:
                return
        else:
            pytest.fail("receiver loops without consuming")
        assert r.buffered <= 600
