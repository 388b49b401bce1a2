"""What the POP3 core asks of its glue. Each event (but NeedData and AuthResponse) pauses the
core until the glue answers with the method named in its docstring."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NeedData:
    """Feed more bytes with receive_data() (b"" at end of stream)."""


NEED_DATA = NeedData()


@dataclass(frozen=True)
class SendPending:
    """data_to_send() holds at least settings.output_limit bytes: send them, wait until the
    peer has taken them (back-pressure), then call next_event() again. Pipelined commands
    with long answers (LIST, UIDL of a large maildrop) cannot pile up output without bound."""


SEND_PENDING = SendPending()


@dataclass(frozen=True)
class LoginRequest:
    """USER + PASS (RFC 1939 section 7). Answer: authenticated() or authentication_failed()."""

    username: str
    password: str


@dataclass(frozen=True)
class AuthRequest:
    """AUTH (RFC 5034 section 4). initial_response is the wire form ("=" = empty), or None.
    Then: send_auth_challenge() for each challenge; next_event() yields AuthResponse for each
    client line; finally authenticated() or authentication_failed()."""

    mechanism: str  # upper-case, one of the advertised mechanisms
    initial_response: bytes | None


@dataclass(frozen=True)
class AuthResponse:
    """A client line during an AUTH exchange, CRLF stripped, as sent (base64 or "*").
    None: the connection closed or the line was too long (the exchange must fail)."""

    line: bytes | None


@dataclass(frozen=True)
class StartTLS:
    """STLS accepted (RFC 2595 section 4); "+OK" is in data_to_send(). Send it, run the TLS
    handshake, then call tls_started(). Bytes received before that are discarded."""


@dataclass(frozen=True)
class RetrRequest:
    """RETR (top_lines None) or TOP. index is 0-based into the maildrop given to
    authenticated(). Answer: message_data(chunk) as often as it returns True, then
    message_end(); or message(data) with the whole message at once; or
    message_unavailable() if the message cannot be read."""

    index: int
    top_lines: int | None


@dataclass(frozen=True)
class Commit:
    """QUIT in TRANSACTION (RFC 1939 section 6): remove these messages (0-based indexes, may be
    empty), release the maildrop, then call commit_done() or commit_failed()."""

    deleted_indexes: tuple[int, ...]


@dataclass(frozen=True)
class CloseConnection:
    """Send what data_to_send() holds, then close. Nothing is deleted unless a Commit came
    before. reason: "quit", "eof", "too-many-errors", "too-many-commands", "broken-message"."""

    reason: str


Event = (
    NeedData
    | SendPending
    | LoginRequest
    | AuthRequest
    | AuthResponse
    | StartTLS
    | RetrRequest
    | Commit
    | CloseConnection
)
