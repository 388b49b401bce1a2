"""Accounts, passwords and SASL, shared by the SMTP, IMAP and POP3 servers.

- passwords: argon2id hashes and SCRAM-SHA-256 verifiers.
- sasl: the mechanisms (PLAIN, LOGIN, SCRAM-SHA-256) as sans-I/O step machines.
- authenticator: one whole AUTH/LOGIN conversation over two callbacks, with throttling.
- throttle: failed-login delays and lockouts per IP and per account.
- directory: recipient resolution (aliases, +detail, catch-all) and account management.
"""

from postar.auth.authenticator import AccountLookup, Authenticator, AuthResult, is_loopback
from postar.auth.directory import (
    AliasLoopError,
    Directory,
    DirectoryError,
    InvalidAddress,
    ResolvedRecipient,
    normalize_address,
)
from postar.auth.sasl import FailureReason
from postar.auth.throttle import LoginThrottle, ThrottleDecision

__all__ = [
    "AccountLookup",
    "AliasLoopError",
    "AuthResult",
    "Authenticator",
    "Directory",
    "DirectoryError",
    "FailureReason",
    "InvalidAddress",
    "LoginThrottle",
    "ResolvedRecipient",
    "ThrottleDecision",
    "is_loopback",
    "normalize_address",
]
