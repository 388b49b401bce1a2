from __future__ import annotations

import base64

import pytest

from postar.auth.sasl import FailureReason
from postar.pop3 import (
    NEED_DATA,
    SEND_PENDING,
    Commit,
    GlueError,
    LoginRequest,
    MaildropEntry,
    POP3Connection,
    POP3Settings,
    ResponseCode,
    RetrRequest,
    State,
    auth_failure_reply,
)
from tests.unit.pop3.pop3_harness import (
    CLEAR_SETTINGS,
    MESSAGES,
    TLS_SETTINGS,
    FakeGlue,
    transcript,
)

GREETING = b"+OK Postar POP3 server ready\r\n"
LOGIN = b"USER mrose\r\nPASS secret\r\n"
LOGGED_IN = b"+OK Send PASS\r\n+OK mrose's maildrop has 2 messages (91 octets)\r\n"
SIGN_OFF = b"+OK Postar POP3 server signing off (%d messages left)\r\n"


def test_sizes_in_fixture() -> None:
    assert [len(m) for m in MESSAGES] == [63, 28]


# ---- RFC 1939 section 10: an example session --------------------------------------------------


def test_rfc_1939_example_session() -> None:
    out = transcript([LOGIN + b"STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nRETR 2\r\nDELE 2\r\nQUIT\r\n"])
    assert out == (
        GREETING
        + LOGGED_IN
        + b"+OK 2 91\r\n"
        + b"+OK\r\n1 63\r\n2 28\r\n.\r\n"
        + b"+OK 63 octets\r\n"
        + b"From: a@example.com\r\nSubject: one\r\n\r\nHello\r\n..dotted line\r\nbye\r\n.\r\n"
        + b"+OK Message 1 deleted\r\n"
        + b"+OK 28 octets\r\n"
        + b"Subject: two\r\n\r\nl1\r\nl2\r\nl3\r\n.\r\n"
        + b"+OK Message 2 deleted\r\n"
        + SIGN_OFF % 0
    )


SCRIPT = (
    b"CAPA\r\nUSER mrose\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 1\r\n"
    b"TOP 1 0\r\nTOP 2 1\r\nRETR 1\r\nDELE 2\r\nLIST 2\r\nRSET\r\nNOOP\r\nBOGUS\r\nQUIT\r\n"
)


def test_split_at_every_byte_boundary_gives_the_same_answer() -> None:
    whole = transcript([SCRIPT])
    assert whole.endswith(SIGN_OFF % 2)
    for cut in range(1, len(SCRIPT)):
        assert transcript([SCRIPT[:cut], SCRIPT[cut:]]) == whole, cut
    assert transcript([SCRIPT[i : i + 1] for i in range(len(SCRIPT))]) == whole


def test_chunk_size_of_message_does_not_matter() -> None:
    outs = {transcript([SCRIPT], FakeGlue(chunk_size=size)) for size in (1, 2, 3, 5, 64, 4096)}
    assert len(outs) == 1


# ---- CAPA, USER/PASS, AUTH ----------------------------------------------------------------


def capa_lines(glue: FakeGlue) -> list[bytes]:
    out = glue.feed([b"CAPA\r\n"])
    lines = out.split(b"\r\n")
    start = lines.index(b"+OK Capability list follows")
    return lines[start + 1 : lines.index(b".", start)]


def test_capa_in_the_clear_and_after_stls() -> None:
    glue = FakeGlue(CLEAR_SETTINGS)
    assert capa_lines(glue) == [
        b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING", b"AUTH-RESP-CODE",
        b"SASL SCRAM-SHA-256", b"STLS", b"EXPIRE NEVER", b"IMPLEMENTATION Postar",
    ]  # fmt: skip
    assert glue.feed([b"STLS\r\n"]) == b"+OK Begin TLS negotiation\r\n"
    caps = capa_lines(glue)
    assert b"STLS" not in caps and b"USER" in caps and b"SASL SCRAM-SHA-256 PLAIN" in caps


def test_capa_in_transaction_offers_no_login_commands() -> None:
    glue = FakeGlue(POP3Settings(mechanisms=("PLAIN",), plaintext_allowed=True, login_delay=900))
    glue.feed([LOGIN])
    caps = capa_lines(glue)
    assert b"USER" not in caps and not any(c.startswith(b"SASL") for c in caps)
    assert b"LOGIN-DELAY 900" in caps and b"TOP" in caps


def test_user_pass_refused_in_the_clear() -> None:
    out = transcript([b"USER mrose\r\nPASS secret\r\n"], FakeGlue(CLEAR_SETTINGS))
    assert out == (
        GREETING
        + b"-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n"
        + b"-ERR USER first\r\n"
    )


def test_wrong_password_then_retry() -> None:
    out = transcript([b"USER mrose\r\nPASS nope\r\nPASS secret\r\n" + LOGIN])
    assert out == (
        GREETING
        + b"+OK Send PASS\r\n-ERR [AUTH] Authentication failed\r\n"
        + b"-ERR USER first\r\n"
        + LOGGED_IN
    )


def test_pass_keeps_spaces() -> None:
    core = POP3Connection(TLS_SETTINGS)
    core.receive_data(b"USER u\r\nPASS  two words \r\n")
    assert core.next_event() == LoginRequest("u", " two words ")


def test_maildrop_in_use() -> None:
    out = transcript([LOGIN], FakeGlue(locked=True))
    assert out.endswith(b"-ERR [IN-USE] Maildrop locked elsewhere\r\n")


def test_auth_plain_initial_response() -> None:
    ir = base64.b64encode(b"\0mrose\0secret")
    out = transcript([b"AUTH PLAIN " + ir + b"\r\nSTAT\r\n"])
    assert out == GREETING + LOGGED_IN[len(b"+OK Send PASS\r\n") :] + b"+OK 2 91\r\n"


def test_auth_plain_challenge_and_pipelined_response() -> None:
    ir = base64.b64encode(b"\0mrose\0secret")
    out = transcript([b"auth plain\r\n" + ir + b"\r\nSTAT\r\n"])
    assert out.startswith(GREETING + b"+ \r\n+OK mrose's maildrop")
    assert out.endswith(b"+OK 2 91\r\n")


def test_auth_cancel_and_unknown_mechanism() -> None:
    out = transcript([b"AUTH PLAIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH\r\n"])
    assert out == (
        GREETING
        + b"+ \r\n-ERR Authentication cancelled\r\n"
        + b"-ERR Unsupported authentication mechanism\r\n"
        + b"+OK Supported mechanisms follow\r\nSCRAM-SHA-256\r\nPLAIN\r\nLOGIN\r\n.\r\n"
    )


def test_auth_exchange_eof_gives_a_none_response() -> None:
    glue = FakeGlue()
    out = glue.feed([b"AUTH PLAIN\r\n"], eof=True)
    assert out.endswith(b"+ \r\n-ERR Authentication cancelled\r\n")
    assert glue.closed == "eof"


def test_auth_failure_replies_cover_every_reason() -> None:
    for reason in FailureReason:
        _code, text = auth_failure_reply(reason)
        assert text
    assert auth_failure_reply(FailureReason.INVALID_CREDENTIALS)[0] is ResponseCode.AUTH
    assert auth_failure_reply(FailureReason.TEMPORARY)[0] is ResponseCode.SYS_TEMP


# ---- STLS (RFC 2595) ----------------------------------------------------------------------


def test_stls_discards_pipelined_cleartext() -> None:
    glue = FakeGlue(CLEAR_SETTINGS)
    out = glue.feed([b"STLS\r\nUSER mrose\r\nPASS secret\r\n"])
    assert out == GREETING + b"+OK Begin TLS negotiation\r\n"
    assert glue.tls_starts == 1
    assert glue.core.state is State.AUTHORIZATION
    assert glue.feed([b"PASS secret\r\n"]) == b"-ERR USER first\r\n"


def test_bytes_received_before_tls_started_are_dropped() -> None:
    core = POP3Connection(CLEAR_SETTINGS)
    core.receive_data(b"STLS\r\n")
    core.next_event()
    core.receive_data(b"CAPA\r\n")  # arrived in clear before the handshake finished
    core.tls_started(mechanisms=("PLAIN",), plaintext_allowed=True)
    core.data_to_send()
    assert core.next_event() is NEED_DATA
    assert core.data_to_send() == b""


def test_stls_refused_when_unavailable_or_active_or_late() -> None:
    assert transcript([b"STLS\r\n"]) == GREETING + b"-ERR STLS not available\r\n"
    out = transcript([LOGIN + b"STLS\r\n"], FakeGlue(POP3Settings(
        plaintext_allowed=True, stls_available=True)))  # fmt: skip
    assert out.endswith(b"-ERR STLS not allowed in the transaction state\r\n")


# ---- TRANSACTION ------------------------------------------------------------------------------


def test_deleted_messages_are_hidden_and_removed_only_at_quit() -> None:
    glue = FakeGlue()
    out = glue.feed(
        [LOGIN + b"DELE 1\r\nSTAT\r\nLIST\r\nUIDL\r\nLIST 1\r\nUIDL 1\r\nRETR 1\r\n"
         b"TOP 1 0\r\nDELE 1\r\nDELE 3\r\n"]
    )  # fmt: skip
    assert out == (
        GREETING
        + LOGGED_IN
        + b"+OK Message 1 deleted\r\n"
        + b"+OK 1 28\r\n"
        + b"+OK\r\n2 28\r\n.\r\n"
        + b"+OK\r\n2 1.2\r\n.\r\n"
        + b"-ERR Message 1 already deleted\r\n" * 5
        + b"-ERR No such message\r\n"
    )
    assert glue.commits == []
    assert glue.feed([b"QUIT\r\n"]) == SIGN_OFF % 1
    assert glue.commits == [(0,)]
    assert glue.closed == "quit"


def test_rset_unmarks() -> None:
    glue = FakeGlue()
    out = glue.feed([LOGIN + b"DELE 1\r\nDELE 2\r\nRSET\r\nSTAT\r\nQUIT\r\n"])
    assert b"+OK Maildrop has 2 messages (91 octets)\r\n+OK 2 91\r\n" in out
    assert glue.commits == [()]


def test_dropped_connection_deletes_nothing() -> None:
    glue = FakeGlue()
    glue.feed([LOGIN + b"DELE 1\r\nDELE 2\r\nQUI"], eof=True)
    assert glue.closed == "eof"
    assert glue.commits == []


def test_quit_in_authorization_commits_nothing() -> None:
    glue = FakeGlue()
    assert glue.feed([b"QUIT\r\n"]) == GREETING + b"+OK Bye\r\n"
    assert glue.closed == "quit" and glue.commits == []


def test_commit_failure_is_reported() -> None:
    glue = FakeGlue(commit_ok=False)
    out = glue.feed([LOGIN + b"DELE 1\r\nQUIT\r\n"])
    assert out.endswith(b"-ERR [SYS/TEMP] Some deleted messages not removed\r\n")
    assert glue.closed == "quit"


def test_uidl_values_come_from_the_glue() -> None:
    out = transcript([LOGIN + b"UIDL\r\nUIDL 2\r\n"])
    assert out.endswith(b"+OK\r\n1 1.1\r\n2 1.2\r\n.\r\n+OK 2 1.2\r\n")


@pytest.mark.parametrize(
    "command",
    [b"LIST x", b"LIST 1 2", b"RETR", b"RETR -1", b"RETR +1", b"TOP 1", b"TOP 1 x",
     b"TOP 1 -1", b"DELE", b"STAT 1", b"NOOP x", b"RSET 1", b"QUIT now", b"RETR \xd9\xa1"],
)  # fmt: skip
def test_bad_arguments(command: bytes) -> None:
    out = transcript([LOGIN + command + b"\r\nNOOP\r\n"])
    assert out.endswith(b"\r\n+OK\r\n")
    last = out[len(GREETING + LOGGED_IN) :]
    assert last.startswith(b"-ERR "), last


def test_message_number_zero_and_out_of_range() -> None:
    out = transcript([LOGIN + b"RETR 0\r\nRETR 3\r\nLIST 99999999999\r\n"])
    assert out.endswith(
        b"-ERR No such message\r\n-ERR No such message\r\n-ERR Invalid message number\r\n"
    )


def test_wrong_state_and_unknown_commands() -> None:
    out = transcript([b"STAT\r\nAPOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n\r\n"
                      + LOGIN + b"USER x\r\n"])  # fmt: skip
    assert out == (
        GREETING
        + b"-ERR STAT not allowed in the authorization state\r\n"
        + b"-ERR Unknown command\r\n"
        + b"-ERR Unknown command\r\n"
        + LOGGED_IN
        + b"-ERR USER not allowed in the transaction state\r\n"
    )


def test_keywords_are_case_insensitive_and_bare_lf_accepted() -> None:
    out = transcript([b"user mrose\npass secret\nstat\r\n"])
    assert out == GREETING + LOGGED_IN + b"+OK 2 91\r\n"


# ---- limits -------------------------------------------------------------------------------------


def test_over_long_line_is_read_to_its_end_then_refused() -> None:
    glue = FakeGlue(POP3Settings(line_length=64, plaintext_allowed=True))
    out = glue.feed([b"NOOP " + b"x" * 50, b"y" * 100, b"z" * 100 + b"\r\nCAPA\r\n"])
    assert out.startswith(GREETING + b"-ERR Line too long\r\n+OK Capability list follows\r\n")
    assert len(glue.core._in) == 0  # nothing of the long line was kept


def test_line_at_the_limit_is_accepted() -> None:
    glue = FakeGlue(POP3Settings(line_length=16, plaintext_allowed=True))
    assert glue.feed([b"USER abcdefghi\r\n"]) == GREETING + b"+OK Send PASS\r\n"  # 16 octets
    assert glue.feed([b"USER abcdefghij\r\n"]) == b"-ERR Line too long\r\n"


def test_too_many_errors_closes() -> None:
    glue = FakeGlue(POP3Settings(max_errors=3))
    out = glue.feed([b"A\r\nB\r\nC\r\nNOOP\r\n"])
    assert out == GREETING + b"-ERR Unknown command\r\n" * 3 + (
        b"-ERR Too many errors, closing connection\r\n"
    )
    assert glue.closed == "too-many-errors"


def test_too_many_commands_closes() -> None:
    glue = FakeGlue(POP3Settings(max_commands=2, plaintext_allowed=True))
    out = glue.feed([b"CAPA\r\nCAPA\r\nCAPA\r\n"])
    assert out.endswith(b".\r\n-ERR Too many commands, closing connection\r\n")
    assert glue.closed == "too-many-commands"


# ---- RETR / TOP encoding ------------------------------------------------------------------------


def retr(message: bytes, command: bytes, chunk_size: int = 3) -> bytes:
    glue = FakeGlue(messages=[message], chunk_size=chunk_size)
    out = glue.feed([LOGIN + command + b"\r\n"])
    head = GREETING + b"+OK Send PASS\r\n"
    return out[len(head) :].split(b"\r\n", 1)[1]  # drop the login reply


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 1000])
def test_dot_stuffing(chunk_size: int) -> None:
    message = b".starts\r\nSubject: x\r\n\r\n.\r\n..\r\nmid.dle\r\n.end"
    out = retr(message, b"RETR 1", chunk_size)
    assert out == (
        f"+OK {len(message)} octets\r\n".encode()
        + b"..starts\r\nSubject: x\r\n\r\n..\r\n...\r\nmid.dle\r\n..end\r\n.\r\n"
    )


def test_bare_lf_lines_are_stuffed_too() -> None:
    out = retr(b"a\n.\nb\n", b"RETR 1", 1)
    assert out == b"+OK 6 octets\r\na\n..\nb\n.\r\n"


def test_empty_message() -> None:
    assert retr(b"", b"RETR 1") == b"+OK 0 octets\r\n.\r\n"


@pytest.mark.parametrize("chunk_size", [1, 4, 1000])
def test_top(chunk_size: int) -> None:
    message = b"Subject: t\r\nX: y\r\n\r\n.b1\r\nb2\r\nb3\r\n"
    head = b"+OK Top of message follows\r\nSubject: t\r\nX: y\r\n\r\n"
    assert retr(message, b"TOP 1 0", chunk_size) == head + b".\r\n"
    assert retr(message, b"TOP 1 1", chunk_size) == head + b"..b1\r\n.\r\n"
    assert retr(message, b"TOP 1 2", chunk_size) == head + b"..b1\r\nb2\r\n.\r\n"
    assert retr(message, b"TOP 1 99", chunk_size) == head + b"..b1\r\nb2\r\nb3\r\n.\r\n"


def test_top_of_a_header_only_message_and_bare_lf() -> None:
    assert retr(b"Subject: t\r\nX: y", b"TOP 1 0") == (
        b"+OK Top of message follows\r\nSubject: t\r\nX: y\r\n.\r\n"
    )
    assert retr(b"S: t\n\nb1\nb2\n", b"TOP 1 1", 1) == (
        b"+OK Top of message follows\r\nS: t\n\nb1\n.\r\n"
    )


def test_top_stops_asking_for_data() -> None:
    core = POP3Connection(TLS_SETTINGS)
    core.receive_data(LOGIN + b"TOP 1 0\r\n")
    assert isinstance(core.next_event(), LoginRequest)
    core.authenticated([MaildropEntry(1000, "1.1")])
    assert core.next_event() == RetrRequest(0, 0)
    assert core.message_data(b"Subject: a\r\n") is True
    assert core.message_data(b"\r\nbody\r\n") is False
    core.message_end()
    assert core.data_to_send().endswith(b"Subject: a\r\n\r\n.\r\n")


def test_message_unavailable() -> None:
    core = POP3Connection(TLS_SETTINGS)
    core.receive_data(LOGIN + b"RETR 1\r\nRETR 1\r\n")
    core.next_event()
    core.authenticated([MaildropEntry(10, "1.1")])
    core.next_event()
    core.message_unavailable()
    assert core.data_to_send().endswith(b"-ERR [SYS/TEMP] Message unavailable\r\n")
    assert core.next_event() == RetrRequest(0, None)
    core.message_data(b"partial")
    core.message_unavailable()
    assert core.next_event().reason == "broken-message"  # type: ignore[union-attr]


def test_glue_mistakes_are_errors() -> None:
    core = POP3Connection(TLS_SETTINGS)
    with pytest.raises(GlueError):
        core.authenticated([])
    core.receive_data(b"USER a\r\nPASS b\r\n")
    assert isinstance(core.next_event(), LoginRequest)
    with pytest.raises(GlueError):
        core.next_event()
    with pytest.raises(GlueError):
        core.message_end()
    core.authenticated([MaildropEntry(5, "9.9")], "a")
    core.receive_data(b"QUIT\r\n")
    assert core.next_event() == Commit(())
    assert core.state is State.UPDATE


def test_pipelined_listings_wait_for_their_answers_to_be_sent() -> None:
    # 200 pipelined LISTs of a 5,000-message maildrop would be about 8 MB of answers from
    # 1.2 KB of input; the core stops reading commands once output_limit is waiting.
    glue = FakeGlue(messages=[b"x\r\n"] * 5000)
    glue.feed([b"USER mrose\r\nPASS secret\r\n"])
    core = glue.core
    one_answer = len(glue.feed([b"LIST\r\n"]))
    core.receive_data(b"LIST\r\n" * 200)
    waiting: list[int] = []
    sent = 0
    while True:
        event = core.next_event()
        if event is SEND_PENDING:
            waiting.append(core.bytes_to_send)
            sent += len(core.data_to_send())
            continue
        assert event is NEED_DATA
        sent += len(core.data_to_send())
        break
    limit = TLS_SETTINGS.output_limit
    assert sent == 200 * one_answer  # every LIST answered, in full
    assert min(waiting) >= limit and max(waiting) < limit + one_answer
    assert len(waiting) >= 200 * one_answer // (limit + one_answer)
