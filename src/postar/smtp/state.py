"""The SMTP session state machine as a table: which command is allowed in which phase.

One screen, one place (guide principle 2): `sequence_error` is the only function that answers
503 for a command sent at the wrong time. Checks that depend on more than the phase (DATA with no
accepted recipient, AUTH when already authenticated) live with the command in core.py.

    CONNECTED --HELO/EHLO--> READY --MAIL--> MAIL --DATA/BDAT--> DATA/BDAT --end--> READY
        ^                      |  ^            |                                      |
        |                      |  +---RSET-----+--------------------------------------+
        +--STARTTLS done-------+  (STARTTLS from CONNECTED or READY; AUTH from READY)

RFC 5321 4.1.4 gives the order: EHLO/HELO first, MAIL opens a transaction, RCPT adds to it, DATA
ends it; RSET, NOOP, HELP, VRFY, EXPN and QUIT are allowed anywhere.
"""

from __future__ import annotations

import enum

from postar.smtp import replies
from postar.smtp.replies import Reply


class Phase(enum.Enum):
    CONNECTED = "connected"  # greeting sent, no HELO/EHLO yet
    READY = "ready"  # HELO/EHLO accepted, no mail transaction
    MAIL = "mail"  # MAIL accepted: RCPT, DATA or BDAT next (also between BDAT chunks)
    DATA = "data"  # reading DATA content up to CRLF.CRLF
    BDAT = "bdat"  # reading the octets of one BDAT chunk
    AUTH = "auth"  # in a SASL exchange: the next line is a response to a 334
    TLS_PENDING = "tls pending"  # 220 to STARTTLS queued; waiting for start_tls_done()
    REFUSED = "refused"  # greeted with 554: only QUIT is served (RFC 5321 3.1)
    CLOSED = "closed"


# Phases in which a line is read as a command.
COMMAND_PHASES = frozenset({Phase.CONNECTED, Phase.READY, Phase.MAIL, Phase.REFUSED})
_SESSION = frozenset({Phase.CONNECTED, Phase.READY, Phase.MAIL})

ALLOWED: dict[str, frozenset[Phase]] = {
    "HELO": _SESSION,  # RFC 5321 4.1.4: EHLO may come again; it resets the transaction
    "EHLO": _SESSION,
    "MAIL": frozenset({Phase.READY}),
    "RCPT": frozenset({Phase.MAIL}),
    "DATA": frozenset({Phase.MAIL}),
    "BDAT": frozenset({Phase.MAIL}),
    "RSET": _SESSION,
    "NOOP": _SESSION,
    "HELP": _SESSION,
    "VRFY": _SESSION,
    "EXPN": _SESSION,
    "QUIT": _SESSION | {Phase.REFUSED},
    "STARTTLS": frozenset({Phase.CONNECTED, Phase.READY}),  # RFC 3207; not mid-transaction
    "AUTH": frozenset({Phase.READY}),  # RFC 4954 4: after EHLO, not in a mail transaction
}

_SPECIFIC: dict[tuple[str, Phase], Reply] = {
    ("MAIL", Phase.MAIL): replies.NESTED_MAIL,
    ("RCPT", Phase.READY): replies.NEED_MAIL,
    ("DATA", Phase.READY): replies.NEED_MAIL,
    ("BDAT", Phase.READY): replies.NEED_MAIL,
    ("AUTH", Phase.MAIL): replies.AUTH_IN_TRANSACTION,  # RFC 4954 section 4: 503
    ("STARTTLS", Phase.MAIL): replies.STARTTLS_IN_TRANSACTION,
}


def sequence_error(verb: str, phase: Phase) -> Reply | None:
    """The 503 reply for `verb` in `phase`, or None when the command may run."""
    if phase in ALLOWED[verb]:
        return None
    if phase is Phase.CONNECTED:
        return replies.SEND_HELO_FIRST
    return _SPECIFIC.get((verb, phase), replies.BAD_SEQUENCE)
