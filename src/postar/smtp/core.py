"""The SMTP server protocol, sans-I/O: bytes in, events out, replies out as bytes.

Theory of operation (h11 style). The glue owns the socket; this object owns the protocol:

    conn = SMTPConnection(settings)
    write(conn.greeting())
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            write(conn.data_to_send())        # flush only when all buffered input is used
            conn.receive_data(await read())   # b"" at EOF
        elif isinstance(event, StartTLS):
            conn.accept(); write(conn.data_to_send())   # the 220
            await upgrade_transport(); conn.start_tls_done(auth_mechanisms=[...])
        elif isinstance(event, Decision):
            ...decide...; conn.accept() or conn.reject(reply) (AUTH: auth_challenge/...)
        elif isinstance(event, Terminal):
            write(conn.data_to_send()); close; break
        else:                                 # Notice: MessageData, Reset, ...
            ...

Invariants:
- One command at a time. While a `Decision` is pending, no further input is parsed and
  `next_event()` returns PAUSED, so replies leave in command order however many commands one
  packet held (RFC 2920 3.1). Flushing at NEED_DATA sends a pipelined group's replies together.
- Bounded memory. The input buffer holds at most one `receive_data()` worth of bytes plus an
  unfinished command line (never longer than `max_line_length`; an over-long line is dropped
  as it arrives and answered 500 at its end). Message content leaves as `MessageData` pieces as
  soon as it is decoded. The glue must call `receive_data()` only after NEED_DATA.
- The core never reads a clock, a socket, the store or DNS. Timeouts are the glue's job
  (`close(IDLE_TIMEOUT)`), as are policy decisions (the answers to Decision events).
- Every 5xx reply, from the core or the glue, counts as an error; at `max_errors` the core
  answers 421 and ends the session (guide principle 9; RFC 5321 4.5.3.1.9 lets servers close
  on abuse). More than `max_commands` command lines end it the same way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from postar.smtp import replies
from postar.smtp.address import (
    Mailbox,
    PathSyntaxError,
    parse_forward_path,
    parse_reverse_path,
    split_path,
)
from postar.smtp.data import ChunkNormalizer, DotReader
from postar.smtp.errors import ClientError, UsageError
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
    Event,
    Hangup,
    Helo,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    Quit,
    RcptTo,
    Reset,
    Signal,
    StartTLS,
    Terminal,
)
from postar.smtp.params import Extensions, MailParams, parse_mail_params, parse_rcpt_params
from postar.smtp.replies import Reply
from postar.smtp.settings import SMTPSettings
from postar.smtp.state import COMMAND_PHASES, Phase, sequence_error

# RFC 4954 section 4: a server must take AUTH response lines of up to 12288 octets, more than
# the command-line limit, since SASL tokens (GSSAPI) are big.
AUTH_LINE_LENGTH = 12288
_BDAT_SIZE_DIGITS = 20  # a chunk size longer than this cannot be meant; refuse it unparsed

_HELO_SYNTAX = Reply(501, "5.5.4", "Syntax: EHLO hostname")
_MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
_RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
_BDAT_SYNTAX = Reply(501, "5.5.4", "Syntax: BDAT size [LAST]")
_NO_ARGS = Reply(501, "5.5.4", "Syntax error: no parameters allowed")


class SMTPConnection:
    """One SMTP server session. See the module docstring for how to drive it."""

    def __init__(self, settings: SMTPSettings) -> None:
        self.settings = settings
        self._buf = bytearray()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._pending: Decision | None = None
        self._eof = False
        self._terminal_delivered = False
        self._phase = Phase.CONNECTED
        self._discarding_line = False  # inside an over-long line, dropping bytes to its LF
        self._errors = 0
        self._commands = 0
        self._tls_active = settings.tls_active
        self._auth_mechanisms = settings.auth_mechanisms
        self._authenticated = False
        self._helo: str | None = None
        self._esmtp = False
        self._reset_transaction()
        self._handlers: dict[str, Callable[[str], None]] = {
            "HELO": lambda arg: self._cmd_helo(arg, extended=False),
            "EHLO": lambda arg: self._cmd_helo(arg, extended=True),
            "MAIL": self._cmd_mail,
            "RCPT": self._cmd_rcpt,
            "DATA": self._cmd_data,
            "RSET": self._cmd_rset,
            "NOOP": self._cmd_noop,
            "HELP": self._cmd_help,
            "VRFY": self._cmd_vrfy,
            "EXPN": self._cmd_expn,
            "QUIT": self._cmd_quit,
            "STARTTLS": self._cmd_starttls,
            "AUTH": self._cmd_auth,
        }

    def _reset_transaction(self) -> None:
        self._mail_params: MailParams | None = None
        self._rcpt_count = 0
        self._chunking_used = False  # a BDAT was seen in this transaction (RFC 3030 no DATA)
        self._txn_failed: Reply | None = None  # a BDAT failed: later chunks are dropped
        self._content_size = 0
        self._content_failed: Reply | None = None  # content read to its end, then this reply
        self._dot_reader = DotReader()
        self._normalizer = ChunkNormalizer()
        self._bdat_size = 0
        self._bdat_remaining = 0
        self._bdat_last = False
        self._bdat_skip: Reply | None = None  # chunk octets are dropped, then this reply
        self._bdat_return = Phase.MAIL  # the phase to go back to after a chunk

    # --- read-only view for the glue ------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def helo_name(self) -> str | None:
        return self._helo

    @property
    def esmtp(self) -> bool:
        """The client greeted with EHLO (for the Received header's "with" clause)."""
        return self._esmtp

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def authenticated(self) -> bool:
        return self._authenticated

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        return self._auth_mechanisms

    @property
    def smtputf8(self) -> bool:
        """The current transaction's MAIL carried SMTPUTF8 (RFC 6531 3.7.3 trace "UTF8SMTP")."""
        return self._mail_params is not None and self._mail_params.smtputf8

    @property
    def input_pending(self) -> bool:
        """Unparsed input is buffered: the client pipelined more than we have answered."""
        return bool(self._buf)

    @property
    def closed(self) -> bool:
        return self._phase is Phase.CLOSED

    @property
    def auth_pending(self) -> bool:
        """An AUTH exchange waits for the application's answer. False once the core has ended
        the exchange itself (an over-long or malformed line: AuthAborted, already answered)."""
        return isinstance(self._pending, AuthStart | AuthResponse)

    # --- bytes in, bytes out --------------------------------------------------------------

    def greeting(self, reply: Reply | None = None) -> bytes:
        """The opening 220, or the connect-time verdict of the filter.

        554 keeps the connection open but serves only QUIT (RFC 5321 3.1); 421 closes it
        (RFC 5321 3.8). RFC 2034 section 3: no enhanced code on the greeting by default.
        """
        if reply is None:
            reply = Reply(220, None, f"{self.settings.hostname} {self.settings.banner}")
        elif reply.code == 554:
            self._phase = Phase.REFUSED
        elif reply.code == 421:
            self._close(Hangup("refused at connect"))
        elif reply.code != 220:
            raise UsageError("a greeting is 220, 421 or 554")
        return reply.encode()

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the client; b"" means the client closed its side."""
        if self._phase is Phase.CLOSED:
            return
        if self._phase is Phase.TLS_PENDING:
            # RFC 3207 section 4 / CVE-2011-0411: bytes sent in clear after STARTTLS belong to
            # no one we can trust; only what arrives through TLS counts.
            return
        if not data:
            self._eof = True
            return
        self._buf += data

    def data_to_send(self) -> bytes:
        """Replies queued so far; write them to the client."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | Signal:
        """The next event, NEED_DATA when the input is used up, PAUSED while a decision waits."""
        while True:
            if self._pending is not None:
                return PAUSED
            if self._events:
                event = self._events.popleft()
                if isinstance(event, Decision):
                    self._pending = event
                elif isinstance(event, Terminal):
                    self._terminal_delivered = True
                return event
            if self._terminal_delivered:
                return ConnectionClosed()
            if self._phase is Phase.TLS_PENDING:
                return PAUSED
            if self._step():
                self._check_limits()
                continue
            if self._eof:
                self._on_eof()
                continue
            return NEED_DATA

    # --- answers to decisions -------------------------------------------------------------

    def accept(self, reply: Reply | None = None) -> None:
        """Say yes to the pending Helo, StartTLS, MailFrom, RcptTo, DataStart or
        MessageComplete. `reply` replaces the default positive reply (MessageComplete, say,
        to name the queue id); it must be 2xx."""
        event = self._take_pending()
        if reply is not None and not 200 <= reply.code < 300:
            raise UsageError("accept() takes a 2xx reply")
        if isinstance(event, Helo):
            self._helo = event.name
            self._esmtp = event.extended
            if self._phase is Phase.CONNECTED:
                self._phase = Phase.READY
            self._send(self._ehlo_reply() if event.extended else self._helo_reply())
        elif isinstance(event, StartTLS):
            self._send(reply or replies.READY_TO_START_TLS)
            # RFC 3207 section 4 / CVE-2011-0411: whatever the client pipelined after
            # STARTTLS came in clear and must not be read as if it came through TLS.
            self._buf.clear()
            self._phase = Phase.TLS_PENDING
        elif isinstance(event, MailFrom):
            self._phase = Phase.MAIL
            self._mail_params = event.params
            self._send(reply or replies.SENDER_OK)
        elif isinstance(event, RcptTo):
            self._rcpt_count += 1
            self._send(reply or replies.RECIPIENT_OK)
        elif isinstance(event, DataStart):
            if event.chunking:
                self._chunking_used = True
                self._phase = Phase.BDAT  # the chunk's octets follow the BDAT line
            else:
                self._phase = Phase.DATA
                self._send(replies.START_MAIL_INPUT)
        elif isinstance(event, MessageComplete):
            self._end_transaction()
            self._send(reply or replies.MESSAGE_ACCEPTED)
        else:
            raise UsageError("AUTH is answered with auth_challenge/auth_success/auth_failure")
        self._check_limits()

    def reject(self, reply: Reply) -> None:
        """Say no to the pending decision with a 4xx or 5xx reply."""
        if reply.code < 400:
            raise UsageError("reject() takes a 4xx or 5xx reply")
        event = self._take_pending()
        if isinstance(event, AuthStart | AuthResponse):
            self._phase = Phase.READY
        elif isinstance(event, DataStart) and event.chunking:
            # RFC 3030 section 2: the chunk is on its way; read and drop it, then answer,
            # and drop later chunks of this transaction too.
            self._chunking_used = True
            self._txn_failed = reply
            self._bdat_skip = reply
            self._phase = Phase.BDAT
            self._check_limits()
            return
        elif isinstance(event, MessageComplete):
            self._end_transaction()
        self._send(reply)
        self._check_limits()

    def auth_challenge(self, challenge: bytes) -> None:
        """Send a 334 challenge (RFC 4954 section 4), already base64 (wire form); the client's
        answer comes as AuthResponse."""
        event = self._take_pending()
        if not isinstance(event, AuthStart | AuthResponse):
            raise UsageError("no AUTH exchange is pending")
        # "334" SP [base64]: the space stays even for an empty challenge.
        self._out += b"334 " + challenge + b"\r\n"
        self._phase = Phase.AUTH

    def auth_success(self, reply: Reply | None = None) -> None:
        event = self._take_pending()
        if not isinstance(event, AuthStart | AuthResponse):
            raise UsageError("no AUTH exchange is pending")
        self._authenticated = True
        self._phase = Phase.READY
        self._send(reply or replies.AUTH_SUCCESSFUL)

    def auth_failure(self, reply: Reply = replies.AUTH_FAILED) -> None:
        if not self.auth_pending:
            raise UsageError("no AUTH exchange is pending")
        self.reject(reply)

    def start_tls_done(self, auth_mechanisms: Sequence[str] | None = None) -> None:
        """The TLS handshake succeeded: start over as RFC 3207 section 4.2 requires.

        Everything learnt from the client in clear (EHLO name, AUTH, transaction) is
        forgotten and the client must send EHLO again. `auth_mechanisms` replaces the
        offered list, typically with the plain-text mechanisms allowed only under TLS.
        """
        if self._phase is not Phase.TLS_PENDING:
            raise UsageError("start_tls_done() without an accepted STARTTLS")
        self._buf.clear()
        self._discarding_line = False
        self._tls_active = True
        if auth_mechanisms is not None:
            self._auth_mechanisms = tuple(m.upper() for m in auth_mechanisms)
        self._helo = None
        self._esmtp = False
        self._authenticated = False
        self._reset_transaction()
        self._phase = Phase.CONNECTED

    def fail_message(self, reply: Reply) -> None:
        """Refuse the message being received (store error, say): the core reads the content
        to its end, drops it, and answers `reply` there."""
        if self._phase not in (Phase.DATA, Phase.BDAT) and not self._chunking_used:
            raise UsageError("no message content is being received")
        if self._content_failed is None:
            self._content_failed = reply

    def close(self, reply: Reply = replies.SHUTTING_DOWN) -> None:
        """End the session from our side (shutdown, idle timeout): queue `reply`, then a
        Hangup event."""
        if self._phase is Phase.CLOSED:
            return
        self._pending = None
        self._send(reply)
        self._close(Hangup(reply.text))

    # --- internals: state changes ---------------------------------------------------------

    def _take_pending(self) -> Decision:
        event = self._pending
        if event is None:
            raise UsageError("no decision is pending")
        self._pending = None
        return event

    def _send(self, reply: Reply) -> None:
        self._out += reply.encode()
        if reply.code >= 500:
            self._errors += 1

    def _check_limits(self) -> None:
        if self._phase is not Phase.CLOSED and self._errors >= self.settings.max_errors:
            self._send(replies.TOO_MANY_ERRORS)
            self._close(Hangup("too many errors"))

    def _close(self, event: Terminal) -> None:
        self._phase = Phase.CLOSED
        self._pending = None
        self._buf.clear()
        self._events.append(event)

    def _end_transaction(self) -> None:
        self._reset_transaction()
        self._phase = Phase.READY

    def _decide(self, event: Decision) -> None:
        self._events.append(event)

    def _extensions(self) -> Extensions:
        s = self.settings
        return Extensions(
            max_message_size=s.max_message_size,
            eightbitmime=s.eightbitmime,
            smtputf8=s.smtputf8,
            dsn=s.dsn,
            auth=bool(self._auth_mechanisms),
            chunking=s.chunking,
        )

    def _helo_reply(self) -> Reply:
        # RFC 2034 section 3: no enhanced status code in the answer to HELO or EHLO.
        return Reply(250, None, self.settings.hostname)

    def _ehlo_reply(self) -> Reply:
        s = self.settings
        lines = [s.hostname]
        if s.pipelining:
            lines.append("PIPELINING")  # RFC 2920
        # RFC 1870 section 4: "SIZE" with the limit; no number means no fixed limit.
        lines.append(f"SIZE {s.max_message_size}" if s.max_message_size else "SIZE")
        if s.eightbitmime:
            lines.append("8BITMIME")  # RFC 6152
        if s.smtputf8:
            lines.append("SMTPUTF8")  # RFC 6531
        lines.append("ENHANCEDSTATUSCODES")  # RFC 2034
        if s.starttls_available and not self._tls_active:
            lines.append("STARTTLS")  # RFC 3207 4.2: not offered again once under TLS
        if self._auth_mechanisms:
            lines.append("AUTH " + " ".join(self._auth_mechanisms))  # RFC 4954 section 3
        if s.chunking:
            lines.append("CHUNKING")  # RFC 3030
        if s.dsn:
            lines.append("DSN")  # RFC 3461
        lines.extend(s.extra_keywords)
        return Reply(250, None, tuple(lines))

    # --- internals: reading ---------------------------------------------------------------

    def _step(self) -> bool:
        """Use some input; True when anything happened."""
        if self._phase is Phase.DATA:
            return self._step_data()
        if self._phase is Phase.BDAT:
            return self._step_bdat()
        if self._phase is Phase.AUTH:
            line = self._take_line(max(AUTH_LINE_LENGTH, self.settings.max_line_length))
            if line is None:
                return False
            self._auth_line(line)
            return True
        if self._phase in COMMAND_PHASES:
            line = self._take_line(self.settings.max_line_length)
            if line is None:
                return False
            self._command_line(line)
            return True
        return False

    def _take_line(self, limit: int) -> bytes | None:
        """A complete line with its LF, or b"" for an over-long line, or None for "wait".

        RFC 5321 4.5.3.1.4: the limit counts the CRLF. An over-long line is never held: its
        bytes are dropped as they come, and it is answered once its LF arrives.
        """
        buf = self._buf
        if self._discarding_line:
            lf = buf.find(b"\n")
            if lf == -1:
                buf.clear()
                return None
            del buf[: lf + 1]
            self._discarding_line = False
            return b""
        lf = buf.find(b"\n", 0, limit)
        if lf != -1:
            line = bytes(buf[: lf + 1])
            del buf[: lf + 1]
            return line
        if len(buf) < limit:
            return None
        self._discarding_line = True
        return self._take_line(limit)

    def _strip_line_end(self, line: bytes) -> bytes | None:
        """The line without CRLF; None when it ended in a bare LF under the "reject" policy."""
        if line.endswith(b"\r\n"):
            return line[:-2]
        # RFC 5321 2.3.8: lines end in CRLF. A bare LF after a command is common among
        # hand-written clients and harmless here (only DATA's end can be smuggled), so the
        # "normalize" policy takes it; "reject" is strict everywhere.
        if self.settings.bare_newlines == "reject":
            return None
        return line[:-1]

    def _command_line(self, line: bytes) -> None:
        self._commands += 1
        if self._commands > self.settings.max_commands:
            self._send(replies.TOO_MANY_COMMANDS)
            self._close(Hangup("too many commands"))
            return
        if not line:
            self._send(replies.LINE_TOO_LONG)
            return
        try:
            self._run_command(line)
        except ClientError as exc:
            self._send(exc.reply)

    def _run_command(self, line: bytes) -> None:
        raw = self._strip_line_end(line)
        if raw is None or b"\0" in raw or b"\r" in raw:
            raise ClientError(replies.BAD_COMMAND_LINE)
        verb_bytes, _, arg_bytes = raw.partition(b" ")
        if not verb_bytes.isalpha():  # ASCII letters only, for bytes
            raise ClientError(replies.BAD_COMMAND_LINE)
        verb = verb_bytes.decode("ascii").upper()  # RFC 5321 2.4: verbs are case-insensitive
        if verb == "BDAT":
            self._cmd_bdat(arg_bytes)  # reads its chunk even when refusing it (RFC 3030)
            return
        handler = self._handlers.get(verb)
        if handler is None:
            raise ClientError(replies.COMMAND_UNRECOGNIZED)
        error = sequence_error(verb, self._phase)
        if error is not None:
            raise ClientError(error)
        try:
            # RFC 6531 3.3: UTF-8 may appear only in MAIL and RCPT arguments.
            arg = arg_bytes.decode("utf-8" if verb in ("MAIL", "RCPT") else "ascii")
        except UnicodeDecodeError:
            raise ClientError(replies.BAD_COMMAND_LINE) from None
        if not arg.isprintable():
            raise ClientError(replies.BAD_COMMAND_LINE)  # tabs, controls: not SMTP
        handler(arg)

    def _on_eof(self) -> None:
        if self._phase in (Phase.DATA, Phase.BDAT) or (
            self._chunking_used and self._phase is Phase.MAIL
        ):
            live = self._txn_failed is None and self._bdat_skip is None
            if live and self._content_failed is None:
                self._events.append(MessageAborted(AbortReason.CONNECTION_CLOSED))
        self._close(ConnectionClosed())

    # --- commands ---------------------------------------------------------------------------

    def _cmd_helo(self, arg: str, extended: bool) -> None:
        name = arg.strip(" ")
        # RFC 5321 4.1.1.1: "EHLO" SP ( Domain / address-literal ); the name is not checked
        # further here, many clients send a bare host name, the filter judges it.
        if not name or " " in name or not name.isascii():
            raise ClientError(_HELO_SYNTAX)
        if self._phase is Phase.MAIL:
            # RFC 5321 4.1.4: EHLO in a transaction drops it, as RSET would.
            self._end_transaction()
            self._events.append(Reset())
        self._decide(Helo(name, extended))

    def _cmd_mail(self, arg: str) -> None:
        if self.settings.auth_required_for_mail and not self._authenticated:
            raise ClientError(replies.AUTH_REQUIRED)  # RFC 4954 section 6: 530
        if arg[:5].upper() != "FROM:":
            raise ClientError(_MAIL_SYNTAX)
        try:
            # Leniency: RFC 5321 has no space after the colon, but many clients send one.
            path, param_text = split_path(arg[5:].lstrip(" "))
        except PathSyntaxError:
            raise ClientError(replies.BAD_SENDER_SYNTAX) from None
        params = parse_mail_params(param_text, self._extensions())
        if not path.isascii() and not params.smtputf8:
            raise ClientError(replies.NON_ASCII_ADDRESS)  # RFC 6531 3.4
        try:
            address = parse_reverse_path(path, utf8=params.smtputf8)
        except PathSyntaxError:
            raise ClientError(replies.BAD_SENDER_SYNTAX) from None
        self._decide(MailFrom(address, params))

    def _cmd_rcpt(self, arg: str) -> None:
        if self._chunking_used:
            raise ClientError(replies.BAD_SEQUENCE)  # RFC 3030: recipients precede BDAT
        if arg[:3].upper() != "TO:":
            raise ClientError(_RCPT_SYNTAX)
        try:
            path, param_text = split_path(arg[3:].lstrip(" "))
        except PathSyntaxError:
            raise ClientError(replies.BAD_RECIPIENT_SYNTAX) from None
        if self._rcpt_count >= self.settings.max_recipients:
            raise ClientError(replies.TOO_MANY_RECIPIENTS)  # RFC 5321 4.5.3.1.10
        utf8 = self.smtputf8
        if not path.isascii() and not utf8:
            raise ClientError(replies.NON_ASCII_ADDRESS)  # RFC 6531 3.4: needs SMTPUTF8
        params = parse_rcpt_params(param_text, self._extensions(), utf8)
        try:
            address: Mailbox = parse_forward_path(path, utf8=utf8)
        except PathSyntaxError:
            raise ClientError(replies.BAD_RECIPIENT_SYNTAX) from None
        self._decide(RcptTo(address, params))

    def _cmd_data(self, arg: str) -> None:
        if arg.strip(" "):
            raise ClientError(_NO_ARGS)  # RFC 5321 4.1.1.4: "DATA" CRLF
        if self._chunking_used:
            raise ClientError(replies.DATA_AFTER_BDAT)  # RFC 3030 section 2
        if self._rcpt_count == 0:
            raise ClientError(replies.NO_VALID_RECIPIENTS)  # RFC 5321 3.3
        self._dot_reader = DotReader()
        self._decide(DataStart(chunking=False))

    def _cmd_bdat(self, arg_bytes: bytes) -> None:
        # RFC 3030 section 2: "BDAT" SP chunk-size [ SP end-marker ]. Once the size is known
        # the chunk's octets are read whatever the verdict: left unread they would be taken
        # for commands, a way to inject them.
        words = arg_bytes.split(b" ")
        size_text = words[0]
        if (
            not size_text.isdigit()
            or len(size_text) > _BDAT_SIZE_DIGITS
            or len(words) > 2
            or (len(words) == 2 and words[1].upper() != b"LAST")
        ):
            if size_text.isdigit() and len(size_text) <= _BDAT_SIZE_DIGITS:
                self._start_chunk(int(size_text), last=False, skip=_BDAT_SYNTAX)
                return
            raise ClientError(_BDAT_SYNTAX)
        size = int(size_text)
        last = len(words) == 2
        error: Reply | None = None
        if not self.settings.chunking:
            error = replies.COMMAND_NOT_IMPLEMENTED
        else:
            error = sequence_error("BDAT", self._phase)
        if error is None and self._rcpt_count == 0:
            error = replies.NO_VALID_RECIPIENTS
        if error is None and self._txn_failed is not None:
            error = self._txn_failed
        if error is not None:
            self._start_chunk(size, last, skip=error)
            return
        self._start_chunk(size, last, skip=None)
        if not self._chunking_used:
            self._phase = Phase.MAIL  # until the glue answers DataStart
            self._decide(DataStart(chunking=True))

    def _start_chunk(self, size: int, last: bool, skip: Reply | None) -> None:
        self._bdat_size = size
        self._bdat_remaining = size
        self._bdat_last = last
        self._bdat_skip = skip
        self._bdat_return = self._phase
        self._phase = Phase.BDAT

    def _cmd_rset(self, arg: str) -> None:
        if arg.strip(" "):
            raise ClientError(_NO_ARGS)  # RFC 5321 4.1.1.5: "RSET" CRLF
        if self._phase is Phase.MAIL:
            self._end_transaction()
        self._events.append(Reset())
        self._send(replies.RESET_OK)

    def _cmd_noop(self, arg: str) -> None:
        self._send(replies.OK)  # RFC 5321 4.1.1.9: any argument is ignored

    def _cmd_help(self, arg: str) -> None:
        self._send(replies.HELP)

    def _cmd_vrfy(self, arg: str) -> None:
        if not arg.strip(" "):
            raise ClientError(replies.SYNTAX_ERROR_IN_PARAMETERS)
        self._send(replies.CANNOT_VRFY)  # RFC 5321 3.5.3 and 7.3

    def _cmd_expn(self, arg: str) -> None:
        self._send(replies.EXPN_NOT_AVAILABLE)  # RFC 5321 7.3: lists are not disclosed

    def _cmd_quit(self, arg: str) -> None:
        self._send(replies.CLOSING)  # RFC 5321 4.1.1.10
        self._close(Quit())

    def _cmd_starttls(self, arg: str) -> None:
        if arg.strip(" "):
            raise ClientError(_NO_ARGS)  # RFC 3207 section 4: 501, no parameters allowed
        if self._tls_active:
            raise ClientError(replies.TLS_ALREADY_ACTIVE)
        if not self.settings.starttls_available:
            raise ClientError(replies.COMMAND_NOT_IMPLEMENTED)
        self._decide(StartTLS())

    def _cmd_auth(self, arg: str) -> None:
        if not self._auth_mechanisms:
            if self.settings.starttls_available and not self._tls_active:
                raise ClientError(replies.AUTH_ENCRYPTION_REQUIRED)
            raise ClientError(replies.COMMAND_NOT_IMPLEMENTED)
        if self._authenticated:
            raise ClientError(replies.ALREADY_AUTHENTICATED)  # RFC 4954 section 4: 503
        words = arg.strip(" ").split(" ")
        if not words[0] or len(words) > 2:
            raise ClientError(replies.SYNTAX_ERROR_IN_PARAMETERS)
        mechanism = words[0].upper()
        if mechanism not in self._auth_mechanisms:
            raise ClientError(replies.AUTH_MECHANISM_UNKNOWN)  # RFC 4954 section 4: 504
        # The initial response goes on in wire form ("=" for an empty one, RFC 4954 section 4):
        # the shared authenticator decodes it, as it does for POP3 and IMAP.
        initial = words[1].encode("ascii", "surrogateescape") if len(words) == 2 else None
        self._decide(AuthStart(mechanism, initial))

    def _auth_line(self, line: bytes) -> None:
        if not line:
            self._abort_auth(replies.LINE_TOO_LONG)  # RFC 4954 section 6: 500 5.5.6
            return
        raw = self._strip_line_end(line)
        if raw is None:
            self._abort_auth(replies.BAD_COMMAND_LINE)
            return
        # "*" (cancel) and bad base64 are the authenticator's to judge, in wire form; only a
        # line that is not a line at all ends the exchange here.
        self._decide(AuthResponse(raw))

    def _abort_auth(self, reply: Reply) -> None:
        self._phase = Phase.READY
        self._events.append(AuthAborted())
        self._send(reply)

    # --- message content ----------------------------------------------------------------------

    def _accept_content(self, content: bytes, bare: bool) -> None:
        """Pass decoded content on, or switch to dropping it once a limit is crossed."""
        if self._content_failed is not None:
            return
        if bare and self.settings.bare_newlines == "reject":
            self._content_failed = replies.BARE_NEWLINE
            self._events.append(MessageAborted(AbortReason.BARE_NEWLINE))
            return
        if not content:
            return
        size = self._content_size + len(content)
        limit = self.settings.max_message_size
        if limit and size > limit:
            # RFC 1870 section 6.2: read on to the end of the data, then answer 552.
            self._content_failed = replies.MESSAGE_TOO_BIG
            self._events.append(MessageAborted(AbortReason.SIZE_EXCEEDED))
            return
        self._content_size = size
        self._events.append(MessageData(content))

    def _step_data(self) -> bool:
        scan = self._dot_reader.feed(self._buf)
        del self._buf[: scan.consumed]
        self._accept_content(scan.content, scan.bare_newline)
        if scan.ended:
            self._end_of_message()
        return scan.consumed > 0

    def _end_of_message(self) -> None:
        if self._content_failed is not None:
            failed = self._content_failed
            self._end_transaction()
            self._send(failed)
            return
        self._phase = Phase.MAIL  # no input is read until the glue answers
        self._decide(MessageComplete(self._content_size))

    def _step_bdat(self) -> bool:
        take = min(self._bdat_remaining, len(self._buf))
        if take:
            piece = bytes(self._buf[:take])
            del self._buf[:take]
            self._bdat_remaining -= take
            if self._bdat_skip is None:
                content, bare = self._normalizer.feed(piece)
                self._accept_content(content, bare)
        elif self._bdat_remaining:
            return False
        if self._bdat_remaining == 0:
            self._end_of_chunk()
        return True

    def _end_of_chunk(self) -> None:
        skip = self._bdat_skip
        if skip is not None:
            # A refused chunk: its octets are gone; now the answer (RFC 3030 section 2).
            self._bdat_skip = None
            if self._bdat_return is Phase.MAIL and self._bdat_last:
                self._end_transaction()  # RFC 3030: LAST ends the (failed) transaction
            else:
                self._phase = self._bdat_return
            self._send(skip)
            return
        if self._bdat_last:
            tail, bare = self._normalizer.finish()
            self._accept_content(tail, bare)
            self._end_of_message()
            return
        self._phase = Phase.MAIL
        if self._content_failed is not None:
            # RFC 3030 section 2: after a 5xx to a chunk, later chunks are read and dropped.
            self._txn_failed = self._content_failed
            self._send(self._content_failed)
            return
        self._send(Reply(250, "2.0.0", f"{self._bdat_size} octets received"))
