"""SMTP sessions as transcripts: what the client sends (C:), what the server answers (S:).

Client lines are sent in one piece, as a pipelining client would; a non-pipelining client sees
the same answers, one at a time. The default glue accepts everything (smtp_driver.accept_all).
"""

from __future__ import annotations

import base64

import pytest

from postar.smtp import replies
from postar.smtp.address import Mailbox
from postar.smtp.core import SMTPConnection
from postar.smtp.events import (
    NEED_DATA,
    PAUSED,
    AbortReason,
    AuthAborted,
    AuthResponse,
    AuthStart,
    ConnectionClosed,
    DataStart,
    Decision,
    Hangup,
    Helo,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    Quit,
    RcptTo,
    Reset,
    StartTLS,
)
from postar.smtp.params import OriginalRecipient
from postar.smtp.replies import Reply
from postar.smtp.settings import SMTPSettings
from tests.unit.smtp.smtp_driver import PLAIN_OK, accept_all, content, run, settings

EHLO_REPLY = (
    "S: 250-mx.example.net\n"
    "S: 250-PIPELINING\n"
    "S: 250-SIZE 52428800\n"
    "S: 250-8BITMIME\n"
    "S: 250-SMTPUTF8\n"
    "S: 250-ENHANCEDSTATUSCODES\n"
    "S: 250-STARTTLS\n"
    "S: 250-AUTH PLAIN LOGIN\n"
    "S: 250-CHUNKING\n"
    "S: 250 DSN\n"
)


def transcript(text: str, **kwargs: object) -> list[object]:
    """Run the C: lines through the server and compare its output with the S: lines."""
    client = bytearray()
    expected = bytearray()
    for line in text.strip("\n").split("\n"):
        who, _, rest = line.partition(": ")
        if who == "C":
            client += rest.encode("utf-8") + b"\r\n"
        elif who == "S":
            expected += rest.encode("utf-8") + b"\r\n"
        else:
            raise AssertionError(f"bad transcript line {line!r}")
    session = run([bytes(client)], **kwargs)  # type: ignore[arg-type]
    assert session.output.decode("utf-8") == expected.decode("utf-8")
    return list(session.events)


def test_rfc5321_d1_a_typical_transaction() -> None:
    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO bar.com\n" + EHLO_REPLY + "C: MAIL FROM:<Smith@bar.com>\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: RCPT TO:<Jones@foo.com>\n"
        "S: 250 2.1.5 Recipient OK\n"
        "C: RCPT TO:<Green@foo.com>\n"
        "S: 250 2.1.5 Recipient OK\n"
        "C: DATA\n"
        "S: 354 End data with <CR><LF>.<CR><LF>\n"
        "C: Blah blah blah...\n"
        "C: ..etc. etc. etc.\n"
        "C: .\n"
        "S: 250 2.0.0 Message accepted\n"
        "C: QUIT\n"
        "S: 221 2.0.0 Bye\n"
    )
    assert events[0] == Helo("bar.com", extended=True)
    assert isinstance(events[1], MailFrom)
    assert events[1].address == Mailbox("Smith", "bar.com")
    assert [e.address for e in events if isinstance(e, RcptTo)] == [
        Mailbox("Jones", "foo.com"),
        Mailbox("Green", "foo.com"),
    ]
    assert DataStart(chunking=False) in events
    assert content(events) == b"Blah blah blah...\r\n.etc. etc. etc.\r\n"  # RFC 5321 4.5.2
    assert MessageComplete(size=36) in events
    assert events[-1] == Quit()


def test_helo_gets_a_one_line_reply_and_commands_answered_by_the_core() -> None:
    transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: HELO relay.example.org\n"
        "S: 250 mx.example.net\n"
        "C: NOOP whatever\n"
        "S: 250 2.0.0 OK\n"
        "C: HELP\n"
        "S: 214 2.0.0 See RFC 5321 and https://www.rfc-editor.org/rfc/rfc5321\n"
        "C: VRFY postmaster\n"
        "S: 252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\n"
        "C: EXPN staff\n"
        "S: 502 5.5.1 EXPN not available\n"
        "C: TURN\n"
        "S: 500 5.5.1 Command unrecognized\n"
        "C: rset\n"
        "S: 250 2.0.0 Reset OK\n"
        "C: quit\n"
        "S: 221 2.0.0 Bye\n"
    )


def test_commands_out_of_sequence_get_503() -> None:
    transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: MAIL FROM:<a@example.org>\n"
        "S: 503 5.5.1 Send EHLO or HELO first\n"
        "C: EHLO c.example.org\n" + EHLO_REPLY + "C: RCPT TO:<b@example.net>\n"
        "S: 503 5.5.1 Need MAIL command first\n"
        "C: DATA\n"
        "S: 503 5.5.1 Need MAIL command first\n"
        "C: MAIL FROM:<a@example.org>\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: MAIL FROM:<a@example.org>\n"
        "S: 503 5.5.1 Sender already specified\n"
        "C: DATA\n"
        "S: 554 5.5.1 No valid recipients\n"
        "C: QUIT\n"
        "S: 221 2.0.0 Bye\n"
    )


def test_syntax_errors_and_leniencies_in_paths() -> None:
    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c.example.org\n" + EHLO_REPLY + "C: MAIL FROM:a@example.org\n"
        "S: 501 5.1.7 Bad sender address syntax\n"
        "C: MAIL TO:<a@example.org>\n"
        "S: 501 5.5.4 Syntax: MAIL FROM:<address>\n"
        "C: mail from: <@relay.example:A@Example.org>\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: RCPT TO:<b@@example.net>\n"
        "S: 501 5.1.3 Bad recipient address syntax\n"
        'C: rcpt to:<"john doe"@[192.0.2.1]>\n'
        "S: 250 2.1.5 Recipient OK\n"
        "C: RCPT TO:<Postmaster>\n"
        "S: 250 2.1.5 Recipient OK\n"
        "C: RSET\n"
        "S: 250 2.0.0 Reset OK\n"
        "C: MAIL FROM:<>\n"
        "S: 250 2.1.0 Sender OK\n"
    )
    mails = [e for e in events if isinstance(e, MailFrom)]
    assert mails[0].address == Mailbox("A", "Example.org")  # source route dropped
    assert mails[1].address is None  # the null reverse-path
    rcpts = [e.address for e in events if isinstance(e, RcptTo)]
    assert rcpts == [Mailbox("john doe", "[192.0.2.1]"), Mailbox("Postmaster", "")]
    assert Reset() in events


def test_glue_rejections_are_sent_and_data_needs_an_accepted_recipient() -> None:
    def policy(conn: SMTPConnection, event: Decision) -> None:
        if isinstance(event, RcptTo) and event.address.local_part == "nobody":
            conn.reject(replies.USER_UNKNOWN)
        elif isinstance(event, MessageComplete):
            conn.accept(Reply(250, "2.0.0", "OK queued as 4ZxT2"))
        else:
            accept_all(conn, event)

    transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c.example.org\n" + EHLO_REPLY + "C: MAIL FROM:<a@example.org>\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: RCPT TO:<nobody@example.net>\n"
        "S: 550 5.1.1 Mailbox unavailable\n"
        "C: DATA\n"
        "S: 554 5.5.1 No valid recipients\n"
        "C: RCPT TO:<bob@example.net>\n"
        "S: 250 2.1.5 Recipient OK\n"
        "C: DATA\n"
        "S: 354 End data with <CR><LF>.<CR><LF>\n"
        "C: Subject: hi\n"
        "C: .\n"
        "S: 250 2.0.0 OK queued as 4ZxT2\n",
        policy=policy,
    )


def test_pipelined_transaction_in_one_packet_replies_in_order() -> None:
    # RFC 2920 section 3.1: a whole transaction, sent without waiting.
    conn = SMTPConnection(settings())
    conn.greeting()
    conn.receive_data(
        b"EHLO c.example.org\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
        b"RCPT TO:<c@example.net>\r\nDATA\r\n"
    )
    seen = []
    while (event := conn.next_event()) is not NEED_DATA:
        seen.append(type(event))
        assert conn.next_event() is PAUSED  # nothing more is parsed until we answer
        # input is still buffered: a glue following RFC 2920 does not flush yet
        assert conn.input_pending == (not isinstance(event, DataStart))
        conn.accept()
    assert seen == [Helo, MailFrom, RcptTo, RcptTo, DataStart]
    out = conn.data_to_send()
    assert out.endswith(
        b"250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n250 2.1.5 Recipient OK\r\n"
        b"354 End data with <CR><LF>.<CR><LF>\r\n"
    )


def test_pipelining_keeps_order_when_the_core_answers_some_commands_itself() -> None:
    def policy(conn: SMTPConnection, event: Decision) -> None:
        if isinstance(event, RcptTo):
            conn.reject(Reply(450, "4.2.0", "Busy"))
        else:
            accept_all(conn, event)

    transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c.example.org\n"
        "C: NOOP\n"
        "C: MAIL FROM:<a@example.org>\n"
        "C: RCPT TO:<b@example.net>\n"
        "C: VRFY x\n"
        "C: RCPT TO:<c@example.net>\n"
        "C: RSET\n" + EHLO_REPLY + "S: 250 2.0.0 OK\n"
        "S: 250 2.1.0 Sender OK\n"
        "S: 450 4.2.0 Busy\n"
        "S: 252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\n"
        "S: 450 4.2.0 Busy\n"
        "S: 250 2.0.0 Reset OK\n",
        policy=policy,
    )


def test_too_many_recipients_get_452() -> None:
    transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c.example.org\n" + EHLO_REPLY + "C: MAIL FROM:<a@example.org>\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: RCPT TO:<b1@example.net>\n"
        "S: 250 2.1.5 Recipient OK\n"
        "C: RCPT TO:<b2@example.net>\n"
        "S: 250 2.1.5 Recipient OK\n"
        "C: RCPT TO:<b3@example.net>\n"
        "S: 452 4.5.3 Too many recipients\n",
        config=settings(max_recipients=2),
    )


def test_too_many_errors_end_the_session_with_421() -> None:
    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: FOO\n"
        "S: 500 5.5.1 Command unrecognized\n"
        "C: BAR\n"
        "S: 500 5.5.1 Command unrecognized\n"
        "C: BAZ\n"
        "S: 500 5.5.1 Command unrecognized\n"
        "S: 421 4.7.0 Too many errors, closing connection\n"
        "C: NOOP\n",
        config=settings(max_errors=3),
    )
    assert events == [Hangup("too many errors")]


def test_too_many_commands_end_the_session() -> None:
    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: NOOP\n"
        "S: 250 2.0.0 OK\n"
        "C: NOOP\n"
        "S: 250 2.0.0 OK\n"
        "C: NOOP\n"
        "S: 421 4.7.0 Too many commands, closing connection\n",
        config=settings(max_commands=2),
    )
    assert events == [Hangup("too many commands")]


@pytest.mark.parametrize(
    "line",
    [b"NO\x00OP\r\n", b"NOOP \x00\r\n", b"EHLO caf\xc3\xa9.example\r\n", b"\xff\xfe\r\n", b"\r\n"],
)
def test_nul_and_non_ascii_in_commands_get_a_clean_500(line: bytes) -> None:
    session = run([line, b"QUIT\r\n"])
    assert session.output == (
        b"220 mx.example.net ESMTP Postar\r\n"
        b"500 5.5.2 Syntax error: malformed command line\r\n"
        b"221 2.0.0 Bye\r\n"
    )


def test_over_long_command_line_is_answered_at_its_end() -> None:
    line = b"NOOP " + b"x" * 600 + b"\r\n"
    session = run([line, b"NOOP\r\n"], config=settings(max_line_length=512))
    assert session.output.endswith(b"500 5.5.6 Line too long\r\n250 2.0.0 OK\r\n")
    # A line of exactly the limit, CRLF included (RFC 5321 4.5.3.1.4), is fine.
    exact = b"NOOP " + b"x" * (512 - 7) + b"\r\n"
    assert len(exact) == 512
    session = run([exact], config=settings(max_line_length=512))
    assert session.output.endswith(b"250 2.0.0 OK\r\n")


def test_ten_megabyte_line_is_never_held() -> None:
    size = 10 * 1024 * 1024
    piece = b"A" * 65536
    pieces = [b"EHLO c.example.org\r\nNOOP "] + [piece] * (size // len(piece)) + [b"\r\nQUIT\r\n"]
    session = run(pieces)
    assert session.max_buffer <= 4096 + 65536  # one read plus at most one line limit
    assert session.output.endswith(b"500 5.5.6 Line too long\r\n221 2.0.0 Bye\r\n")


def test_size_declared_at_mail_over_the_limit() -> None:
    # RFC 1870 section 6.1
    transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c.example.org\n"
        "S: 250-mx.example.net\n"
        "S: 250-PIPELINING\n"
        "S: 250-SIZE 1000\n"
        "S: 250-8BITMIME\n"
        "S: 250-SMTPUTF8\n"
        "S: 250-ENHANCEDSTATUSCODES\n"
        "S: 250-STARTTLS\n"
        "S: 250-AUTH PLAIN LOGIN\n"
        "S: 250-CHUNKING\n"
        "S: 250 DSN\n"
        "C: MAIL FROM:<a@example.org> SIZE=1001\n"
        "S: 552 5.3.4 Message size exceeds fixed maximum message size\n"
        "C: MAIL FROM:<a@example.org> SIZE=1000\n"
        "S: 250 2.1.0 Sender OK\n",
        config=settings(max_message_size=1000),
    )


def test_size_exceeded_during_data_reads_to_the_end_then_552() -> None:
    body = b"".join(b"line %04d of a message that is too big\r\n" % i for i in range(100))
    session = run(
        [
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
            body[:1500],
            body[1500:],
            b".\r\nNOOP\r\n",
        ],
        config=settings(max_message_size=2000),
    )
    assert MessageAborted(AbortReason.SIZE_EXCEEDED) in session.events
    assert not any(isinstance(e, MessageComplete) for e in session.events)
    assert len(content(session.events)) <= 2000
    assert session.output.endswith(
        b"354 End data with <CR><LF>.<CR><LF>\r\n"
        b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        b"250 2.0.0 OK\r\n"
    )


@pytest.mark.parametrize("smuggle", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r.\r\n"])
def test_smtp_smuggling_never_ends_the_message(smuggle: bytes) -> None:
    second = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nforged\r\n"
    data = b"Subject: one\r\n\r\nbody" + smuggle + second + b".\r\n"
    session = run(
        [
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
            + data
            + b"QUIT\r\n"
        ]
    )
    assert sum(isinstance(e, MailFrom) for e in session.events) == 1
    assert sum(isinstance(e, MessageComplete) for e in session.events) == 1
    body = content(session.events)
    assert b"MAIL FROM:<evil@example.org>\r\n" in body  # it stayed content
    # normalised: every line end is CRLF now
    assert body.count(b"\r") == body.count(b"\n") == body.count(b"\r\n")


def test_bare_newline_policy_reject_answers_550_after_the_end() -> None:
    session = run(
        [
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
            b"ok line\r\nbad line\nmore\r\n.\r\nNOOP\r\n"
        ],
        config=settings(bare_newlines="reject"),
    )
    assert MessageAborted(AbortReason.BARE_NEWLINE) in session.events
    assert not any(isinstance(e, MessageComplete) for e in session.events)
    assert session.output.endswith(
        b"550 5.6.0 Bare CR or LF in message content not allowed\r\n250 2.0.0 OK\r\n"
    )


def test_bare_newline_policy_normalize_turns_bare_lf_into_crlf() -> None:
    session = run(
        [
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
            b"one\ntwo\rthree\r\n..four\r\n.\r\n"
        ]
    )
    assert content(session.events) == b"one\r\ntwo\r\nthree\r\n.four\r\n"


def test_client_vanishing_in_data_aborts_the_message() -> None:
    session = run(
        [b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\npart"]
    )
    assert session.events[-2:] == [
        MessageAborted(AbortReason.CONNECTION_CLOSED),
        ConnectionClosed(),
    ]


def test_empty_message() -> None:
    session = run(
        [b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n.\r\n"]
    )
    assert MessageComplete(size=0) in session.events
    assert content(session.events) == b""


# --- STARTTLS (RFC 3207) --------------------------------------------------------------------


def test_starttls_discards_pipelined_plaintext() -> None:
    # CVE-2011-0411: the MAIL after STARTTLS arrived in clear in the same packet.
    conn = SMTPConnection(settings())
    conn.greeting()
    conn.receive_data(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
    assert isinstance(conn.next_event(), Helo)
    conn.accept()
    assert isinstance(conn.next_event(), StartTLS)
    conn.accept()
    assert conn.data_to_send().endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert conn.next_event() is PAUSED
    conn.receive_data(b"RCPT TO:<more-plaintext@example.org>\r\n")  # still before the handshake
    conn.start_tls_done()
    assert conn.tls_active
    assert conn.next_event() is NEED_DATA
    # Through TLS now: the session starts over, so MAIL needs a new EHLO first.
    conn.receive_data(b"MAIL FROM:<a@example.org>\r\nEHLO c\r\n")
    assert conn.next_event() == Helo("c", extended=True)
    assert conn.data_to_send() == b"503 5.5.1 Send EHLO or HELO first\r\n"
    conn.accept()
    assert b"STARTTLS" not in conn.data_to_send()  # RFC 3207 4.2: not offered again
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()


def test_starttls_errors() -> None:
    transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: STARTTLS now\n"
        "S: 501 5.5.4 Syntax error: no parameters allowed\n"
        "C: EHLO c\n" + EHLO_REPLY + "C: MAIL FROM:<a@example.org>\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: STARTTLS\n"
        "S: 503 5.5.1 STARTTLS not allowed during a mail transaction\n"
    )
    transcript(
        "S: 220 mx.example.net ESMTP Postar\nC: STARTTLS\nS: 503 5.5.1 TLS already active\n",
        config=settings(tls_active=True),
    )
    transcript(
        "S: 220 mx.example.net ESMTP Postar\nC: STARTTLS\nS: 502 5.5.1 Command not implemented\n",
        config=settings(starttls_available=False),
    )


def test_starttls_forgets_authentication_and_offers_new_mechanisms() -> None:
    conn = SMTPConnection(settings(auth_mechanisms=()))
    conn.greeting()
    conn.receive_data(b"EHLO c\r\nAUTH PLAIN\r\nSTARTTLS\r\n")
    assert isinstance(conn.next_event(), Helo)
    conn.accept()
    assert isinstance(conn.next_event(), StartTLS)
    out = conn.data_to_send()
    assert b"AUTH" not in out.split(b"538")[0]
    assert b"538 5.7.11 Encryption required for authentication\r\n" in out
    conn.accept()
    conn.start_tls_done(auth_mechanisms=["plain"])
    conn.receive_data(b"EHLO c\r\n")
    assert isinstance(conn.next_event(), Helo)
    conn.accept()
    assert b"250-AUTH PLAIN\r\n" in conn.data_to_send()


# --- AUTH (RFC 4954) ------------------------------------------------------------------------


def test_auth_plain_with_initial_response() -> None:
    token = base64.b64encode(PLAIN_OK).decode()
    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c\n" + EHLO_REPLY + f"C: AUTH PLAIN {token}\n"
        "S: 235 2.7.0 Authentication successful\n"
        f"C: AUTH PLAIN {token}\n"
        "S: 503 5.5.1 Already authenticated\n",
    )
    # The core hands over the wire form; the shared authenticator decodes it.
    assert AuthStart("PLAIN", token.encode()) in events


def test_auth_login_challenge_flow() -> None:
    """The core passes each answer on in wire form, "*" and garbage included: the policy here
    plays the authenticator's part (auth/authenticator.py) in deciding what they mean."""

    def b64(text: bytes) -> bytes:
        return base64.b64encode(text)

    def policy(conn: SMTPConnection, event: Decision) -> None:
        if isinstance(event, AuthStart):
            conn.auth_challenge(b64(b"Username:"))
        elif isinstance(event, AuthResponse) and event.data == b"*":
            conn.auth_failure(replies.AUTH_CANCELLED)
        elif isinstance(event, AuthResponse) and event.data == b64(b"user"):
            conn.auth_challenge(b64(b"Password:"))
        elif isinstance(event, AuthResponse) and event.data == b64(b"secret"):
            conn.auth_success()
        elif isinstance(event, AuthResponse) and event.data == b64(b"wrong"):
            conn.auth_failure()
        elif isinstance(event, AuthResponse):
            conn.auth_failure(replies.AUTH_BAD_BASE64)
        else:
            accept_all(conn, event)

    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c\n" + EHLO_REPLY + "C: auth login\n"
        "S: 334 VXNlcm5hbWU6\n"
        "C: dXNlcg==\n"
        "S: 334 UGFzc3dvcmQ6\n"
        "C: d3Jvbmc=\n"
        "S: 535 5.7.8 Authentication credentials invalid\n"
        "C: AUTH LOGIN\n"
        "S: 334 VXNlcm5hbWU6\n"
        "C: *\n"
        "S: 501 5.0.0 Authentication cancelled\n"
        "C: AUTH LOGIN\n"
        "S: 334 VXNlcm5hbWU6\n"
        "C: not base64!\n"
        "S: 501 5.5.2 Cannot decode base64 response\n"
        "C: AUTH LOGIN\n"
        "S: 334 VXNlcm5hbWU6\n"
        "C: dXNlcg==\n"
        "S: 334 UGFzc3dvcmQ6\n"
        "C: c2VjcmV0\n"
        "S: 235 2.7.0 Authentication successful\n",
        policy=policy,
    )
    assert AuthAborted() not in events
    assert AuthResponse(b"*") in events and AuthResponse(b"not base64!") in events
    assert AuthResponse(b64(b"secret")) in events


def test_auth_rules() -> None:
    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: AUTH PLAIN\n"
        "S: 503 5.5.1 Send EHLO or HELO first\n"
        "C: EHLO c\n" + EHLO_REPLY + "C: AUTH CRAM-MD5\n"
        "S: 504 5.5.4 Unrecognized authentication type\n"
        "C: AUTH PLAIN !!!\n"
        "S: 535 5.7.8 Authentication credentials invalid\n"
        "C: AUTH PLAIN =\n"
        "S: 535 5.7.8 Authentication credentials invalid\n"
        "C: AUTH PLAIN\n"
        "S: 334 \n"
        "C: \n"
        "S: 535 5.7.8 Authentication credentials invalid\n"
        "C: MAIL FROM:<a@example.org>\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: AUTH PLAIN\n"
        "S: 503 5.5.1 AUTH not allowed during a mail transaction\n"
    )
    # Not base64 is the authenticator's to refuse (501 5.5.2 in the server, see
    # tests/integration/test_abuse_smtp.py); the core passes the wire form on.
    assert AuthStart("PLAIN", b"!!!") in events and AuthStart("PLAIN", b"=") in events


def test_submission_requires_auth_before_mail() -> None:
    token = base64.b64encode(PLAIN_OK).decode()
    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c\n" + EHLO_REPLY + "C: MAIL FROM:<a@example.org>\n"
        "S: 530 5.7.0 Authentication required\n"
        f"C: AUTH PLAIN {token}\n"
        "S: 235 2.7.0 Authentication successful\n"
        "C: MAIL FROM:<a@example.org> AUTH=a+40example.org\n"
        "S: 250 2.1.0 Sender OK\n",
        config=settings(auth_required_for_mail=True),
    )
    mail = next(e for e in events if isinstance(e, MailFrom))
    assert mail.params.auth == "a@example.org"


# --- CHUNKING (RFC 3030) --------------------------------------------------------------------

TXN = b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"


def test_bdat_chunks_are_read_exactly_and_may_hold_anything() -> None:
    chunk = b"Subject: x\r\n\r\n.\r\nQUIT\r\n"  # looks like an end and a command: it is data
    session = run([TXN + b"BDAT %d\r\n" % len(chunk) + chunk + b"BDAT 0 LAST\r\nNOOP\r\n"])
    assert DataStart(chunking=True) in session.events
    assert content(session.events) == chunk
    assert MessageComplete(size=len(chunk)) in session.events
    assert not any(isinstance(e, Quit) for e in session.events)
    assert session.output.endswith(
        b"250 2.1.5 Recipient OK\r\n"
        b"250 2.0.0 %d octets received\r\n"
        b"250 2.0.0 Message accepted\r\n"
        b"250 2.0.0 OK\r\n" % len(chunk)
    )


def test_bdat_last_in_one_chunk_and_data_after_bdat_refused() -> None:
    session = run([TXN + b"BDAT 5\r\nhelloDATA\r\nBDAT 3 LAST\r\nabc"])
    assert content(session.events) == b"helloabc"
    assert session.output.endswith(
        b"250 2.0.0 5 octets received\r\n"
        b"503 5.5.1 DATA not allowed after BDAT in one transaction\r\n"
        b"250 2.0.0 Message accepted\r\n"
    )


def test_bdat_without_transaction_reads_and_drops_the_chunk() -> None:
    session = run([b"EHLO c\r\nBDAT 12\r\nNOOP\r\nNOOP\r\nNOOP\r\n"])
    assert session.output.endswith(b"503 5.5.1 Need MAIL command first\r\n250 2.0.0 OK\r\n")


def test_bdat_refused_by_the_glue_drops_later_chunks_too() -> None:
    def policy(conn: SMTPConnection, event: Decision) -> None:
        if isinstance(event, DataStart):
            conn.reject(Reply(554, "5.7.1", "No"))
        else:
            accept_all(conn, event)

    session = run([TXN + b"BDAT 3\r\nabcBDAT 3 LAST\r\ndefNOOP\r\n"], policy=policy)
    assert content(session.events) == b""
    assert session.output.endswith(b"554 5.7.1 No\r\n554 5.7.1 No\r\n250 2.0.0 OK\r\n")


def test_bdat_size_exceeded() -> None:
    session = run(
        [TXN + b"BDAT 6\r\nabcdefBDAT 6\r\nghijklBDAT 2 LAST\r\nmn"],
        config=settings(max_message_size=10),
    )
    assert MessageAborted(AbortReason.SIZE_EXCEEDED) in session.events
    assert session.output.endswith(
        b"250 2.0.0 6 octets received\r\n"
        b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
        b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    )


def test_bdat_normalises_bare_newlines_across_chunks() -> None:
    session = run([TXN + b"BDAT 4\r\na\rb\rBDAT 3 LAST\r\n\nc\n"])
    # the CR ending chunk one and the LF starting chunk two are one CRLF
    assert content(session.events) == b"a\r\nb\r\nc\r\n"


def test_bdat_bad_syntax() -> None:
    session = run([TXN + b"BDAT\r\nBDAT x\r\nBDAT 2 FIRST\r\nabNOOP\r\n"])
    assert session.output.endswith(
        b"501 5.5.4 Syntax: BDAT size [LAST]\r\n"
        b"501 5.5.4 Syntax: BDAT size [LAST]\r\n"
        b"501 5.5.4 Syntax: BDAT size [LAST]\r\n"
        b"250 2.0.0 OK\r\n"
    )


# --- DSN (RFC 3461), SMTPUTF8 (RFC 6531) ---------------------------------------------------


def test_dsn_parameters_are_parsed() -> None:
    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c\n" + EHLO_REPLY + "C: MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ314159+2B1\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: RCPT TO:<b@example.net> NOTIFY=success,FAILURE ORCPT=rfc822;B+40Example.net\n"
        "S: 250 2.1.5 Recipient OK\n"
        "C: RCPT TO:<c@example.net> NOTIFY=NEVER,SUCCESS\n"
        "S: 501 5.5.4 Syntax error in parameters or arguments\n"
        "C: RCPT TO:<c@example.net> ORCPT=rfc822;bad+zz\n"
        "S: 501 5.5.4 Syntax error in parameters or arguments\n"
        "C: RCPT TO:<c@example.net> FOO=BAR\n"
        "S: 555 5.5.4 MAIL FROM/RCPT TO parameters not recognized or not implemented\n"
    )
    mail = next(e for e in events if isinstance(e, MailFrom))
    assert (mail.params.ret, mail.params.envid) == ("HDRS", "QQ314159+1")
    rcpt = next(e for e in events if isinstance(e, RcptTo))
    assert rcpt.params.notify == frozenset({"SUCCESS", "FAILURE"})
    assert rcpt.params.orcpt == OriginalRecipient("rfc822", "B@Example.net")


def test_dsn_parameters_refused_when_dsn_is_off() -> None:
    session = run([b"EHLO c\r\nMAIL FROM:<a@example.org> RET=FULL\r\n"], config=settings(dsn=False))
    assert session.output.endswith(
        b"555 5.5.4 MAIL FROM/RCPT TO parameters not recognized or not implemented\r\n"
    )
    assert b"DSN" not in session.output


def test_smtputf8_addresses_need_the_parameter() -> None:
    events = transcript(
        "S: 220 mx.example.net ESMTP Postar\n"
        "C: EHLO c\n" + EHLO_REPLY + "C: MAIL FROM:<用户@例子.广告>\n"
        "S: 553 5.6.7 Non-ASCII addresses require the SMTPUTF8 parameter\n"
        "C: MAIL FROM:<a@example.org>\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\n"
        "S: 553 5.6.7 Non-ASCII addresses require the SMTPUTF8 parameter\n"
        "C: RSET\n"
        "S: 250 2.0.0 Reset OK\n"
        "C: MAIL FROM:<用户@例子.广告> SMTPUTF8 BODY=8BITMIME\n"
        "S: 250 2.1.0 Sender OK\n"
        "C: RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\n"
        "S: 250 2.1.5 Recipient OK\n"
    )
    mail = [e for e in events if isinstance(e, MailFrom)][-1]
    assert mail.address == Mailbox("用户", "例子.广告")
    assert mail.params.smtputf8 and mail.params.body == "8BITMIME"


def test_smtputf8_off_refuses_the_parameter() -> None:
    session = run(
        ["EHLO c\r\nMAIL FROM:<用户@例子.广告> SMTPUTF8\r\n".encode()],
        config=settings(smtputf8=False),
    )
    assert session.output.endswith(
        b"555 5.5.4 MAIL FROM/RCPT TO parameters not recognized or not implemented\r\n"
    )


# --- session-level behaviour ---------------------------------------------------------------


def test_ehlo_in_a_transaction_resets_it() -> None:
    session = run([TXN + b"EHLO again\r\nRCPT TO:<b@example.net>\r\n"])
    kinds = [type(e) for e in session.events]
    assert kinds == [Helo, MailFrom, RcptTo, Reset, Helo, ConnectionClosed]
    assert session.output.endswith(b"503 5.5.1 Need MAIL command first\r\n")


def test_connect_refused_with_554_serves_only_quit() -> None:
    # RFC 5321 3.1: after a 554 greeting, every command but QUIT gets 503.
    conn = SMTPConnection(settings())
    assert conn.greeting(replies.NO_SERVICE) == b"554 5.3.2 No SMTP service here\r\n"
    conn.receive_data(b"EHLO c\r\nQUIT\r\n")
    assert conn.next_event() == Quit()
    assert conn.data_to_send() == b"503 5.5.1 Bad sequence of commands\r\n221 2.0.0 Bye\r\n"


def test_close_from_the_glue_sends_421() -> None:
    conn = SMTPConnection(settings())
    conn.greeting()
    conn.close(replies.IDLE_TIMEOUT)
    assert conn.data_to_send() == b"421 4.4.2 Idle timeout, closing connection\r\n"
    assert isinstance(conn.next_event(), Hangup)
    assert conn.next_event() == ConnectionClosed()
    assert conn.closed


def test_fail_message_from_the_glue_mid_stream() -> None:
    def policy(conn: SMTPConnection, event: Decision) -> None:
        accept_all(conn, event)

    conn = SMTPConnection(settings())
    conn.greeting()
    conn.receive_data(TXN + b"DATA\r\n")
    while not isinstance(event := conn.next_event(), DataStart):
        policy(conn, event)  # type: ignore[arg-type]
    conn.accept()
    conn.receive_data(b"some content\r\n")
    assert isinstance(conn.next_event(), MessageData)
    conn.fail_message(replies.LOCAL_ERROR)
    conn.receive_data(b"more\r\n.\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send().endswith(b"451 4.3.0 Local error in processing\r\n")
    assert conn.phase.value == "ready"


def test_settings_refuse_a_line_limit_below_rfc_minimum() -> None:
    with pytest.raises(ValueError):
        SMTPSettings(hostname="x", max_line_length=100)


def test_bare_lf_after_a_command_is_taken_or_refused_by_policy() -> None:
    lenient = run([b"NOOP\nQUIT\r\n"])
    assert lenient.output.endswith(b"250 2.0.0 OK\r\n221 2.0.0 Bye\r\n")
    strict = run([b"NOOP\nQUIT\r\n"], config=settings(bare_newlines="reject"))
    assert strict.output.endswith(
        b"500 5.5.2 Syntax error: malformed command line\r\n221 2.0.0 Bye\r\n"
    )


def test_every_5xx_from_the_glue_counts_towards_the_error_limit() -> None:
    def policy(conn: SMTPConnection, event: Decision) -> None:
        if isinstance(event, RcptTo):
            conn.reject(replies.USER_UNKNOWN)
        else:
            accept_all(conn, event)

    session = run(
        [TXN + b"RCPT TO:<x@example.net>\r\nRCPT TO:<y@example.net>\r\n"],
        policy=policy,
        config=settings(max_errors=3),
    )
    assert isinstance(session.events[-1], Hangup)
    assert session.output.endswith(
        b"550 5.1.1 Mailbox unavailable\r\n421 4.7.0 Too many errors, closing connection\r\n"
    )
