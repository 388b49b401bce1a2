"""Everything between a socket and a protocol handler: listeners, TLS, STARTTLS, the PROXY
protocol, connection and rate limits, idle timeouts, graceful shutdown.

A protocol server is ``async def handle(conn: Connection) -> None``; the application maps
roles to handlers and runs a ``Server``. See connection.py and listener.py for the contract.
"""

from .connection import (
    Connection,
    IdleTimeout,
    ShuttingDown,
    TLSHandshakeError,
    WriteTimeout,
)
from .limits import Admission, ConnectionLimiter, KeyedTokenBuckets, TokenBucket
from .listener import (
    Handler,
    ListenerGroup,
    RoleHandler,
    Server,
    handlers_for,
    read_proxy_header,
    role_idle_timeout,
)
from .proxy import ProxyHeaderError, ProxyHeaderParser, ProxyInfo
from .tls import build_server_context, ensure_self_signed, load_server_context

__all__ = [
    "Admission",
    "Connection",
    "ConnectionLimiter",
    "Handler",
    "IdleTimeout",
    "KeyedTokenBuckets",
    "ListenerGroup",
    "ProxyHeaderError",
    "ProxyHeaderParser",
    "ProxyInfo",
    "RoleHandler",
    "Server",
    "ShuttingDown",
    "TLSHandshakeError",
    "TokenBucket",
    "WriteTimeout",
    "build_server_context",
    "ensure_self_signed",
    "handlers_for",
    "load_server_context",
    "read_proxy_header",
    "role_idle_timeout",
]
