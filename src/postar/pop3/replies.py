"""POP3 status lines and response codes (RFC 2449 section 8, RFC 3206, RFC 5034 section 6)."""

from __future__ import annotations

import enum

from postar.auth.sasl import FailureReason

CRLF = b"\r\n"


class ResponseCode(enum.Enum):
    # RFC 2449 section 8.1.1: the maildrop is locked by another session.
    IN_USE = "IN-USE"
    # RFC 2449 section 8.1.2: logged in too recently (LOGIN-DELAY capability).
    LOGIN_DELAY = "LOGIN-DELAY"
    # RFC 3206 section 4: a temporary failure on our side; retry later.
    SYS_TEMP = "SYS/TEMP"
    # RFC 3206 section 4: a permanent failure; a person must act.
    SYS_PERM = "SYS/PERM"
    # RFC 3206 section 5 / RFC 5034 section 6: the credentials are the problem.
    AUTH = "AUTH"


def ok(text: str = "") -> bytes:
    return b"+OK " + text.encode("utf-8") + CRLF if text else b"+OK" + CRLF


def err(text: str, code: ResponseCode | None = None) -> bytes:
    prefix = f"[{code.value}] " if code is not None else ""
    return b"-ERR " + (prefix + text).encode("utf-8") + CRLF


def auth_failure_reply(reason: FailureReason) -> tuple[ResponseCode | None, str]:
    """The code and text to pass to POP3Connection.authentication_failed for an auth result.

    Texts say what the client can do; they never say whether an account exists."""
    match reason:
        case FailureReason.INVALID_CREDENTIALS | FailureReason.AUTHZ_REFUSED:
            return ResponseCode.AUTH, "Authentication failed"
        case FailureReason.ENCRYPTION_REQUIRED:
            return ResponseCode.AUTH, "Plaintext authentication disallowed without TLS (use STLS)"
        case FailureReason.DISABLED:
            return ResponseCode.SYS_PERM, "Account disabled; contact your administrator"
        case FailureReason.LOCKED_OUT:
            return ResponseCode.SYS_TEMP, "Too many failed logins; try again later"
        case FailureReason.TEMPORARY:
            return ResponseCode.SYS_TEMP, "Temporary failure; try again later"
        case FailureReason.CANCELLED:
            return None, "Authentication cancelled"
        case FailureReason.MALFORMED:
            return None, "Invalid authentication data"
        case FailureReason.UNSUPPORTED_MECHANISM:
            return None, "Unsupported authentication mechanism"
