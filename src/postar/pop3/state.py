"""The POP3 session states (RFC 1939 section 3) and the commands each accepts, in one place.

AUTHORIZATION --USER/PASS or AUTH ok--> TRANSACTION --QUIT--> UPDATE (deletions committed)
AUTHORIZATION --QUIT--> closed, nothing changed; any state --EOF--> closed, nothing deleted.
Anything not listed for the current state is refused by core.POP3Connection in one place.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"


# RFC 1939 sections 4-6, RFC 2449 section 5 (CAPA in both states), RFC 2595 section 4 (STLS
# only in AUTHORIZATION), RFC 5034 section 4 (AUTH only in AUTHORIZATION). APOP is not offered.
COMMANDS: dict[State, frozenset[str]] = {
    State.AUTHORIZATION: frozenset({"CAPA", "USER", "PASS", "AUTH", "STLS", "QUIT"}),
    State.TRANSACTION: frozenset(
        {"CAPA", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP", "QUIT"}
    ),
    # UPDATE is entered by QUIT and left by closing; no command is read in it.
    State.UPDATE: frozenset(),
}

KNOWN_COMMANDS: frozenset[str] = frozenset().union(*COMMANDS.values())


class Pending(enum.Enum):
    """What the core waits for from the glue; no command is processed meanwhile, so pipelined
    commands are answered in order (RFC 2449 section 6.6)."""

    LOGIN = "login"  # LoginRequest: call authenticated() / authentication_failed()
    AUTH_EXCHANGE = "auth"  # AuthRequest: lines are SASL responses until the outcome
    TLS = "tls"  # StartTLS: call tls_started() once the handshake is done
    MESSAGE = "message"  # RetrRequest: message_data()* then message_end()
    COMMIT = "commit"  # Commit: commit_done() / commit_failed()
