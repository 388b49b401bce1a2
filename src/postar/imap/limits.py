"""The named limits of the IMAP receiver: every buffer it keeps is bounded by one of these."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class LiteralMode(Enum):
    """Which non-synchronising literal extension the server advertises (RFC 7888)."""

    NONE = "none"  # only synchronising literals {n}
    PLUS = "LITERAL+"  # {n+} of any size up to max_literal_size
    MINUS = "LITERAL-"  # {n+} only up to 4096 octets (RFC 7888 section 5, RFC 9051 4.3)


# RFC 7888 section 5: with LITERAL- a non-synchronising literal may carry at most 4096 octets.
LITERAL_MINUS_MAX = 4096


@dataclass(frozen=True)
class ImapLimits:
    # RFC 7162 section 4 asks servers to accept command lines of at least 8192 octets;
    # long UID sets from sync clients make 64 KiB a kinder default.
    max_line_length: int = 65_536
    max_literal_size: int = 64 * 1024 * 1024  # also the APPENDLIMIT a server should advertise
    max_command_size: int = 80 * 1024 * 1024  # lines plus literals of one command
    max_nesting_depth: int = 64  # parentheses and NOT/OR recursion in one command
    max_sequence_ranges: int = 100_000  # comma-separated elements of one sequence set
    max_append_messages: int = 1_000  # MULTIAPPEND messages in one command
