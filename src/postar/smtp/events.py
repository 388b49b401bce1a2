"""Events the SMTP core hands to its glue, and the two signals that are not events.

Three kinds of event, told apart by their base class:

- `Decision` events wait for the glue's answer. Until it calls `accept()`, `reject(reply)` (or,
  for AUTH, `auth_challenge()` / `auth_success()` / `auth_failure()`), `next_event()` returns
  `PAUSED` and no further input is parsed. This is what keeps replies in command order under
  PIPELINING (RFC 2920 section 3.1).
- `Notice` events tell the glue something happened; the core has already answered (or needs no
  answer) and carries on.
- `Terminal` events end the session: the glue flushes `data_to_send()` and closes the
  connection. After one, `next_event()` returns `ConnectionClosed` forever.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from postar.smtp.address import Mailbox
from postar.smtp.params import MailParams, RcptParams


class Signal(enum.Enum):
    NEED_DATA = "need data"  # feed more bytes with receive_data(), after flushing replies
    PAUSED = "paused"  # a decision is pending, or TLS is being set up


NEED_DATA = Signal.NEED_DATA
PAUSED = Signal.PAUSED


class Event:
    """Base of every event."""

    __slots__ = ()


class Decision(Event):
    """The glue must answer before the core goes on."""

    __slots__ = ()


class Notice(Event):
    """Information only; nothing to answer."""

    __slots__ = ()


class Terminal(Event):
    """The session is over; flush the output and close."""

    __slots__ = ()


# --- decisions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Helo(Decision):
    """HELO or EHLO (RFC 5321 4.1.1.1). accept(): 250 with the extension list for EHLO."""

    name: str
    extended: bool


@dataclass(frozen=True, slots=True)
class StartTLS(Decision):
    """STARTTLS (RFC 3207). accept(): 220 is queued, buffered input dropped; write the output,
    upgrade the transport, then call start_tls_done(). reject(reply): e.g. 454 4.7.0."""


@dataclass(frozen=True, slots=True)
class AuthStart(Decision):
    """AUTH (RFC 4954 section 4). `initial_response` in wire form as the client sent it (base64,
    or "=" for an empty one), None when absent: the shared authenticator decodes it, as for
    POP3 and IMAP. Answer with auth_challenge(), auth_success() or auth_failure()."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class AuthResponse(Decision):
    """A client's answer to a 334 challenge in wire form (base64, or "*" to cancel), its line
    end stripped; answered like AuthStart."""

    data: bytes


@dataclass(frozen=True, slots=True)
class MailFrom(Decision):
    """MAIL FROM (RFC 5321 4.1.1.2), syntax and parameters already checked.
    `address` None is the null reverse-path <>. accept(): 250 2.1.0."""

    address: Mailbox | None
    params: MailParams


@dataclass(frozen=True, slots=True)
class RcptTo(Decision):
    """RCPT TO (RFC 5321 4.1.1.3); the recipient limit is already checked. accept(): 250 2.1.5.
    Only accepted recipients count towards the limit and towards DATA's "no valid recipients"."""

    address: Mailbox
    params: RcptParams


@dataclass(frozen=True, slots=True)
class DataStart(Decision):
    """DATA, or the first BDAT of a transaction (`chunking`). accept(): 354 for DATA (none for
    BDAT) and the content follows as MessageData. reject(reply): the reply is sent (after the
    BDAT chunk is read and dropped) and the transaction stays open for RSET."""

    chunking: bool


@dataclass(frozen=True, slots=True)
class MessageComplete(Decision):
    """End of content: CRLF.CRLF for DATA, BDAT ... LAST for chunking. accept(reply=None):
    250 2.0.0 (pass a reply to name the queue id); reject(reply). Either way the transaction
    ends (RFC 5321 4.1.1.4)."""

    size: int  # octets of content delivered in MessageData events


# --- notices --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageData(Notice):
    """A piece of message content: dot-unstuffed, CRLF line ends. Pieces are at most as big
    as the bytes given to one receive_data() call."""

    data: bytes


class AbortReason(enum.Enum):
    SIZE_EXCEEDED = "size exceeded"  # the core answers 552 5.3.4 at the end of the data
    BARE_NEWLINE = "bare newline"  # policy "reject": the core answers 550 5.6.0 at the end
    CONNECTION_CLOSED = "connection closed"  # EOF in the middle of the content


@dataclass(frozen=True, slots=True)
class MessageAborted(Notice):
    """Drop what was received of this message. Sent as soon as the core knows; the core
    itself reads the rest of the content and answers it."""

    reason: AbortReason


@dataclass(frozen=True, slots=True)
class Reset(Notice):
    """The transaction is dropped: RSET, or HELO/EHLO in the middle of one (RFC 5321 4.1.4).
    The core has answered RSET itself."""


@dataclass(frozen=True, slots=True)
class AuthAborted(Notice):
    """The SASL exchange ended inside the core: an over-long or malformed line, already
    answered. Drop the SASL state."""


# --- terminal -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Quit(Terminal):
    """QUIT; 221 is queued."""


@dataclass(frozen=True, slots=True)
class Hangup(Terminal):
    """The core ends the session with a 421 (too many errors or commands, or close())."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Terminal):
    """The client closed its side (receive_data(b"")), or the session is already over."""
