"""POP3: the sans-I/O core (core.POP3Connection) and, in server.py, its asyncio glue.

RFC 1939, 2449 (CAPA, response codes, PIPELINING), 2595 (STLS), 3206, 5034 (SASL AUTH).
"""

from postar.pop3.core import GlueError, MaildropEntry, POP3Connection, POP3Settings
from postar.pop3.events import (
    NEED_DATA,
    SEND_PENDING,
    AuthRequest,
    AuthResponse,
    CloseConnection,
    Commit,
    Event,
    LoginRequest,
    NeedData,
    RetrRequest,
    SendPending,
    StartTLS,
)
from postar.pop3.replies import ResponseCode, auth_failure_reply
from postar.pop3.state import State

__all__ = [
    "NEED_DATA",
    "SEND_PENDING",
    "AuthRequest",
    "AuthResponse",
    "CloseConnection",
    "Commit",
    "Event",
    "GlueError",
    "LoginRequest",
    "MaildropEntry",
    "NeedData",
    "POP3Connection",
    "POP3Settings",
    "ResponseCode",
    "RetrRequest",
    "SendPending",
    "StartTLS",
    "State",
    "auth_failure_reply",
]
