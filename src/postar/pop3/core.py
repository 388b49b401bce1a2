"""The POP3 server core, sans-I/O: bytes in, events out, bytes to send.

RFC 1939 (POP3), RFC 2449 (CAPA, response codes, PIPELINING), RFC 2595 (STLS), RFC 5034
(SASL AUTH), RFC 3206 (SYS and AUTH response codes).

Theory of operation (the glue's loop):

    core = POP3Connection(settings)          # the greeting is already in data_to_send()
    while True:
        event = core.next_event()            # answers simple commands on the way
        send(core.data_to_send())            # before acting, and before any read
        NeedData -> core.receive_data(await read())   (b"" at EOF)
        SendPending -> send, and wait until the peer has taken it (back-pressure)
        other events -> act, then call the method the event names (see events.py);
                        methods that write (message_data, message...) are followed
                        by a send too

Invariants:
- One command at a time: while an event waits for the glue, no further command is parsed,
  so pipelined commands are answered in order (RFC 2449 section 6.6).
- Deletions happen only through the Commit event, which only QUIT in TRANSACTION emits; a
  dropped connection ends with CloseConnection("eof") and no Commit (RFC 1939 section 6).
- After STLS's "+OK", every byte already buffered or received before tls_started() is
  discarded (RFC 2595 section 4; CVE-2011-0411-style command injection).
- Output waiting in data_to_send() stays below settings.output_limit plus one answer: past
  it, the next command is not read before SendPending has been answered. Pipelined commands
  cost at most that much memory, whatever their answers' length.
- Every command line has a limit (settings.line_length, CRLF included). A longer line is read
  to its end without being buffered, then answered "-ERR" (counted as an error).
- A client error costs one of settings.max_errors; at the limit the session ends.
- Messages marked deleted are invisible to STAT/LIST/UIDL and refused by RETR/TOP/DELE
  (RFC 1939 section 5). The core never sees a message's bytes except while encoding them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postar.pop3.events import (
    NEED_DATA,
    SEND_PENDING,
    AuthRequest,
    AuthResponse,
    CloseConnection,
    Commit,
    Event,
    LoginRequest,
    RetrRequest,
    StartTLS,
)
from postar.pop3.message import MessageEncoder, dot_stuff, terminator
from postar.pop3.replies import CRLF, ResponseCode, err, ok
from postar.pop3.state import COMMANDS, KNOWN_COMMANDS, Pending, State

# RFC 1939 section 3: message numbers are decimal; ten digits is more than any maildrop.
_MAX_NUMBER_DIGITS = 10


@dataclass(frozen=True)
class MaildropEntry:
    size: int  # octets, as LIST and STAT report them
    uidl: str  # unique-id, 1-70 chars 0x21-0x7E (RFC 1939 section 7); "<uidvalidity>.<uid>"


@dataclass(frozen=True)
class POP3Settings:
    mechanisms: tuple[str, ...] = ()  # SASL mechanisms to offer now (Authenticator.mechanisms_for)
    plaintext_allowed: bool = False  # USER/PASS allowed now (Authenticator.plaintext_allowed)
    stls_available: bool = False  # a TLS context exists for STLS
    tls_active: bool = False  # pop3s, or after STLS
    expire: str = "NEVER"  # RFC 2449 section 6.7: "NEVER" or days
    login_delay: int | None = None  # RFC 2449 section 6.5, seconds; None = not advertised
    line_length: int = 4096  # LimitsConfig.line_length
    max_errors: int = 20  # LimitsConfig.errors_per_session
    max_commands: int = 10000  # LimitsConfig.commands_per_session
    output_limit: int = 64 * 1024  # bytes of answers gathered before SendPending
    implementation: str = "Postar"
    greeting: str = "Postar POP3 server ready"


class GlueError(RuntimeError):
    """The glue called a method the core's state does not allow: a bug, not a client error."""


class _TooLong:
    pass


_TOO_LONG = _TooLong()


class POP3Connection:
    def __init__(self, settings: POP3Settings) -> None:
        self.settings = settings
        self.state = State.AUTHORIZATION
        self.tls_active = settings.tls_active
        self._mechanisms = tuple(m.upper() for m in settings.mechanisms)
        self._plaintext_allowed = settings.plaintext_allowed
        self._in = bytearray()
        self._out = bytearray()
        self._discarding = False  # inside an over-long line
        self._eof = False
        self._pending: Pending | None = None
        self._closed: CloseConnection | None = None
        self._errors = 0
        self._commands = 0
        self._user: str | None = None
        self._sizes: list[int] = []
        self._uidls: list[str] = []
        self._deleted: set[int] = set()
        # The answer being sent: its encoder is made at its first chunk (a message answered
        # whole with message() needs none), TOP's line count kept until then.
        self._encoder: MessageEncoder | None = None
        self._top_lines: int | None = None
        self._message_started = False
        self._message_index = 0
        self._handlers: dict[str, Callable[[list[str], str], Event | None]] = {
            "CAPA": self._capa,
            "USER": self._user_cmd,
            "PASS": self._pass_cmd,
            "AUTH": self._auth_cmd,
            "STLS": self._stls,
            "QUIT": self._quit,
            "STAT": self._stat,
            "LIST": self._list,
            "UIDL": self._uidl,
            "RETR": self._retr,
            "TOP": self._top,
            "DELE": self._dele,
            "RSET": self._rset,
            "NOOP": self._noop,
        }
        assert set(self._handlers) == KNOWN_COMMANDS
        # RFC 1939 section 4: the greeting. No APOP timestamp: APOP is not offered.
        self._out += ok(settings.greeting)

    # ---- bytes in and out ------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Bytes from the client; b"" means the client closed its side."""
        if not data:
            self._eof = True
            return
        if self._closed is not None or self._pending is Pending.TLS:
            # After STLS's +OK, cleartext bytes must not reach the TLS session (RFC 2595 4).
            return
        self._in += data

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def bytes_to_send(self) -> int:
        """How much data_to_send() holds: the glue writes once this passes its threshold."""
        return len(self._out)

    def next_event(self) -> Event:
        while True:
            if self._closed is not None:
                return self._closed
            if self._pending is Pending.AUTH_EXCHANGE:
                line = self._next_line()
                if line is None:
                    return AuthResponse(None) if self._eof else NEED_DATA
                return AuthResponse(None if isinstance(line, _TooLong) else line)
            if self._pending is not None:
                raise GlueError(f"the core waits for the glue to finish {self._pending.value}")
            if len(self._out) >= self.settings.output_limit:
                return SEND_PENDING
            line = self._next_line()
            if line is None:
                if self._eof:
                    return self._close("eof")
                return NEED_DATA
            if isinstance(line, _TooLong):
                self._client_error(err("Line too long"))
                continue
            event = self._command(line)
            if event is not None:
                return event

    def _next_line(self) -> bytes | _TooLong | None:
        limit = self.settings.line_length
        if self._discarding:
            nl = self._in.find(b"\n")
            if nl < 0:
                self._in.clear()
                return None
            del self._in[: nl + 1]
            self._discarding = False
            return _TOO_LONG
        nl = self._in.find(b"\n", 0, limit)
        if nl < 0:
            if len(self._in) >= limit:
                # Read the rest of this line without keeping it (guide principle 9).
                self._discarding = True
                return self._next_line()
            return None
        end = nl - 1 if nl and self._in[nl - 1] == 0x0D else nl  # CRLF, or a bare LF
        line = bytes(self._in[:end])
        del self._in[: nl + 1]
        return line

    def _close(self, reason: str) -> CloseConnection:
        self._closed = CloseConnection(reason)
        self._in.clear()
        return self._closed

    def _client_error(self, reply: bytes) -> Event | None:
        self._out += reply
        self._errors += 1
        if self._errors >= self.settings.max_errors:
            self._out += err("Too many errors, closing connection")
            return self._close("too-many-errors")
        return None

    # ---- command dispatch (the state table lives in state.py) ------------------------------
    def _command(self, line: bytes) -> Event | None:
        self._commands += 1
        if self._commands > self.settings.max_commands:
            self._out += err("Too many commands, closing connection")
            return self._close("too-many-commands")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return self._client_error(err("Command is not valid UTF-8"))
        # RFC 2449 section 3: keywords are case-insensitive, separated by a single space;
        # we accept runs of spaces and tabs, as many servers do, except inside PASS.
        keyword, _, rest = text.lstrip(" \t").partition(" ")
        keyword = keyword.upper()
        if keyword not in KNOWN_COMMANDS:
            return self._client_error(err("Unknown command"))
        if keyword not in COMMANDS[self.state]:
            return self._client_error(err(f"{keyword} not allowed in the {self.state.value} state"))
        return self._handlers[keyword](rest.split(), rest)

    def _syntax(self, usage: str) -> Event | None:
        return self._client_error(err(f"Syntax: {usage}"))

    # ---- AUTHORIZATION ---------------------------------------------------------------------
    def _capa(self, args: list[str], _rest: str) -> Event | None:
        if args:
            return self._syntax("CAPA")
        lines = ["TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"]
        if self.state is State.AUTHORIZATION:
            if self._plaintext_allowed:
                lines.append("USER")
            if self._mechanisms:
                lines.append("SASL " + " ".join(self._mechanisms))
            if self.settings.stls_available and not self.tls_active:
                lines.append("STLS")
        lines.append(f"EXPIRE {self.settings.expire}")
        if self.settings.login_delay is not None:
            lines.append(f"LOGIN-DELAY {self.settings.login_delay}")
        lines.append(f"IMPLEMENTATION {self.settings.implementation}")
        self._multiline(ok("Capability list follows"), lines)
        return None

    def _user_cmd(self, args: list[str], _rest: str) -> Event | None:
        if len(args) != 1:
            return self._syntax("USER name")
        if not self._plaintext_allowed:
            # RFC 2595 section 2.3 / RFC 8314: no cleartext passwords on this connection.
            self._out += err("Plaintext authentication disallowed without TLS", ResponseCode.AUTH)
            return None
        self._user = args[0]
        # The same answer for every name: existence is never revealed (RFC 1939 section 13).
        self._out += ok("Send PASS")
        return None

    def _pass_cmd(self, _args: list[str], rest: str) -> Event | None:
        if self._user is None:
            return self._client_error(err("USER first"))
        # RFC 1939 section 7: the server may treat spaces in the argument as part of the
        # password, since PASS has exactly one argument.
        if not rest:
            return self._syntax("PASS password")
        username, self._user = self._user, None
        self._pending = Pending.LOGIN
        return LoginRequest(username, rest)

    def _auth_cmd(self, args: list[str], _rest: str) -> Event | None:
        if not args:
            # RFC 1734's listing form, still sent by some clients (RFC 5034 uses CAPA).
            self._multiline(ok("Supported mechanisms follow"), list(self._mechanisms))
            return None
        if len(args) > 2:
            return self._syntax("AUTH mechanism [initial-response]")
        mechanism = args[0].upper()
        if mechanism not in self._mechanisms:
            self._out += err("Unsupported authentication mechanism")
            return None
        self._user = None
        self._pending = Pending.AUTH_EXCHANGE
        return AuthRequest(mechanism, args[1].encode("ascii", "replace") if len(args) > 1 else None)

    def _stls(self, args: list[str], _rest: str) -> Event | None:
        if args:
            return self._syntax("STLS")
        if self.tls_active or not self.settings.stls_available:
            self._out += err("STLS not available")
            return None
        self._out += ok("Begin TLS negotiation")
        # RFC 2595 section 4: pipelined cleartext after STLS is not part of the TLS session.
        self._in.clear()
        self._discarding = False
        self._pending = Pending.TLS
        return StartTLS()

    def _quit(self, args: list[str], _rest: str) -> Event | None:
        if args:
            return self._syntax("QUIT")
        if self.state is State.AUTHORIZATION:
            self._out += ok("Bye")
            return self._close("quit")
        # RFC 1939 section 6: QUIT in TRANSACTION enters UPDATE and removes deleted messages.
        self.state = State.UPDATE
        self._pending = Pending.COMMIT
        return Commit(tuple(sorted(self._deleted)))

    # ---- TRANSACTION -----------------------------------------------------------------------
    def _number(self, arg: str) -> int | None:
        """0-based index of a visible message, or None (after writing -ERR)."""
        if not arg.isdigit() or not arg.isascii() or len(arg) > _MAX_NUMBER_DIGITS:
            self._client_error(err("Invalid message number"))
            return None
        index = int(arg) - 1
        if not 0 <= index < len(self._sizes):
            self._out += err("No such message")
            return None
        if index in self._deleted:
            self._out += err(f"Message {arg} already deleted")
            return None
        return index

    def _visible(self) -> list[int]:
        return [i for i in range(len(self._sizes)) if i not in self._deleted]

    def _stat(self, args: list[str], _rest: str) -> Event | None:
        if args:
            return self._syntax("STAT")
        visible = self._visible()
        self._out += ok(f"{len(visible)} {sum(self._sizes[i] for i in visible)}")
        return None

    def _list(self, args: list[str], _rest: str) -> Event | None:
        return self._listing(args, "LIST [msg]", lambda i: str(self._sizes[i]))

    def _uidl(self, args: list[str], _rest: str) -> Event | None:
        return self._listing(args, "UIDL [msg]", lambda i: self._uidls[i])

    def _listing(self, args: list[str], usage: str, value: Callable[[int], str]) -> Event | None:
        if len(args) > 1:
            return self._syntax(usage)
        if args:
            index = self._number(args[0])
            if index is not None:
                self._out += ok(f"{index + 1} {value(index)}")
            return None
        self._multiline(ok(), [f"{i + 1} {value(i)}" for i in self._visible()])
        return None

    def _retr(self, args: list[str], _rest: str) -> Event | None:
        if len(args) != 1:
            return self._syntax("RETR msg")
        index = self._number(args[0])
        return None if index is None else self._start_message(index, None)

    def _top(self, args: list[str], _rest: str) -> Event | None:
        if len(args) != 2:
            return self._syntax("TOP msg n")
        lines = args[1]
        if not lines.isdigit() or not lines.isascii() or len(lines) > _MAX_NUMBER_DIGITS:
            return self._syntax("TOP msg n")
        index = self._number(args[0])
        return None if index is None else self._start_message(index, int(lines))

    def _start_message(self, index: int, top_lines: int | None) -> Event:
        self._pending = Pending.MESSAGE
        self._encoder = None
        self._top_lines = top_lines
        self._message_started = False
        self._message_index = index
        return RetrRequest(index, top_lines)

    def _dele(self, args: list[str], _rest: str) -> Event | None:
        if len(args) != 1:
            return self._syntax("DELE msg")
        index = self._number(args[0])
        if index is not None:
            # RFC 1939 section 5: only marked now; removed in the UPDATE state.
            self._deleted.add(index)
            self._out += ok(f"Message {index + 1} deleted")
        return None

    def _rset(self, args: list[str], _rest: str) -> Event | None:
        if args:
            return self._syntax("RSET")
        self._deleted.clear()
        self._out += ok(f"Maildrop has {len(self._sizes)} messages ({sum(self._sizes)} octets)")
        return None

    def _noop(self, args: list[str], _rest: str) -> Event | None:
        if args:
            return self._syntax("NOOP")
        self._out += ok()
        return None

    def _multiline(self, status: bytes, lines: Sequence[str]) -> None:
        # Our own lines never start with "." (numbers, capability names), so no stuffing.
        self._out += status
        for line in lines:
            self._out += line.encode("utf-8") + CRLF
        self._out += b"." + CRLF

    # ---- the glue's answers ----------------------------------------------------------------
    def _expect(self, *pending: Pending) -> None:
        if self._pending not in pending:
            names = "/".join(p.value for p in pending)
            raise GlueError(f"not waiting for {names} (waiting for {self._pending})")

    def send_auth_challenge(self, challenge_b64: bytes) -> None:
        """A SASL challenge, already base64 (RFC 5034 section 4: "+ " base64 CRLF)."""
        self._expect(Pending.AUTH_EXCHANGE)
        self._out += b"+ " + challenge_b64 + CRLF

    def authenticated(self, maildrop: Sequence[MaildropEntry], user: str = "") -> None:
        """Credentials accepted and the maildrop locked; maildrop in message-number order."""
        self._expect(Pending.LOGIN, Pending.AUTH_EXCHANGE)
        self._pending = None
        self.state = State.TRANSACTION
        self._sizes = [m.size for m in maildrop]
        self._uidls = [m.uidl for m in maildrop]
        self._deleted.clear()
        who = f"{user}'s maildrop" if user else "Maildrop"
        self._out += ok(f"{who} has {len(self._sizes)} messages ({sum(self._sizes)} octets)")

    def authentication_failed(
        self, code: ResponseCode | None = ResponseCode.AUTH, text: str = "Authentication failed"
    ) -> None:
        """Refused (see replies.auth_failure_reply), or the maildrop is locked ([IN-USE])."""
        self._expect(Pending.LOGIN, Pending.AUTH_EXCHANGE)
        self._pending = None
        self._out += err(text, code)

    def tls_started(self, *, mechanisms: Sequence[str], plaintext_allowed: bool) -> None:
        """The TLS handshake after STLS succeeded; what is offered now may have changed."""
        self._expect(Pending.TLS)
        self._pending = None
        self.tls_active = True
        self._mechanisms = tuple(m.upper() for m in mechanisms)
        self._plaintext_allowed = plaintext_allowed
        # RFC 2595 section 4: the session starts afresh in AUTHORIZATION.
        self._user = None
        self._in.clear()

    def message_data(self, chunk: bytes) -> bool:
        """The next bytes of the requested message; False once TOP has all it needs."""
        self._expect(Pending.MESSAGE)
        encoder = self._message_encoder()
        self._message_status()
        self._out += encoder.feed(chunk)
        return not encoder.done

    def message(self, data: bytes, dot_lines: bool | None = None) -> None:
        """The whole requested message in one piece: what message_data(data) and then
        message_end() do, in one call. The glue's path for a small message it read whole.
        dot_lines: whether a line of data starts with "." (mime.dotlines), if the glue knows;
        False skips the scan for them."""
        self._expect(Pending.MESSAGE)
        if self._top_lines is not None or self._message_started:
            self.message_data(data)
            self.message_end()
            return
        self._message_status()
        self._out += data if dot_lines is False else dot_stuff(data, True)
        self._out += terminator(data)
        self._pending = None

    def message_end(self) -> None:
        """The whole message (or as much as TOP wanted) was passed to message_data."""
        self._expect(Pending.MESSAGE)
        encoder = self._message_encoder()
        self._message_status()
        self._out += encoder.finish()
        self._encoder = None
        self._pending = None

    def _message_encoder(self) -> MessageEncoder:
        if self._encoder is None:
            self._encoder = MessageEncoder(self._top_lines)
        return self._encoder

    def message_unavailable(
        self, code: ResponseCode = ResponseCode.SYS_TEMP, text: str = "Message unavailable"
    ) -> None:
        """The message could not be read. Before any data: -ERR. After some data the answer
        cannot be repaired, so the session ends (CloseConnection "broken-message")."""
        self._expect(Pending.MESSAGE)
        self._encoder = None
        self._pending = None
        if self._message_started:
            self._close("broken-message")
        else:
            self._out += err(text, code)

    def _message_status(self) -> None:
        if self._message_started:
            return
        self._message_started = True
        if self._top_lines is not None:
            self._out += ok("Top of message follows")
        else:
            # RFC 1939 section 7: the octet count is the message's size in the maildrop.
            self._out += b"+OK %d octets\r\n" % self._sizes[self._message_index]

    def commit_done(self) -> None:
        """The Commit's deletions are durable and the maildrop released."""
        self._expect(Pending.COMMIT)
        self._pending = None
        left = len(self._sizes) - len(self._deleted)
        self._out += ok(f"Postar POP3 server signing off ({left} messages left)")
        self._close("quit")

    def commit_failed(self) -> None:
        """Removing the deleted messages failed (RFC 1939 section 6: -ERR, then close)."""
        self._expect(Pending.COMMIT)
        self._pending = None
        self._out += err("Some deleted messages not removed", ResponseCode.SYS_TEMP)
        self._close("quit")
