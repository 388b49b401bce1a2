"""Errors the peer caused, as values the protocol can answer with (never our own bugs).

A `ParseError` carries what the tagged (or untagged, when the tag is unknown) response needs:
status, optional response code and a fixed message that never echoes internals. Status BYE
means the connection must be closed after sending it (RFC 7888 section 4: an oversized
non-synchronising literal that the server will not read).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from postar.imap.codes import ResponseCode


class ErrorStatus(Enum):
    BAD = "BAD"
    NO = "NO"
    BYE = "BYE"


@dataclass(frozen=True)
class ParseError:
    tag: str | None  # None: the tag itself was unreadable, answer untagged "* BAD"
    message: str
    code: ResponseCode | None = None
    status: ErrorStatus = ErrorStatus.BAD

    @property
    def fatal(self) -> bool:
        return self.status is ErrorStatus.BYE


class SyntaxProblem(Exception):
    """Raised inside the parser; `postar.imap.parser` converts it to a ParseError."""

    def __init__(
        self, message: str, code: ResponseCode | None = None, status: ErrorStatus = ErrorStatus.BAD
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
