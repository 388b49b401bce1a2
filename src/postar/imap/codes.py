"""Response codes: the bracketed part of a status response (RFC 9051 section 7.1 and extensions).

Each code is a typed value with `encode()`, giving the bytes between "[" and "]".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from postar.imap.sequence import SequenceSet
from postar.imap.strings import encode_astring, encode_flag


class Code(Enum):
    """Codes that carry no data."""

    ALERT = "ALERT"  # RFC 9051 7.1
    ALREADYEXISTS = "ALREADYEXISTS"
    AUTHENTICATIONFAILED = "AUTHENTICATIONFAILED"
    AUTHORIZATIONFAILED = "AUTHORIZATIONFAILED"
    CANNOT = "CANNOT"
    CLIENTBUG = "CLIENTBUG"
    CLOSED = "CLOSED"  # RFC 7162 section 3.2.11 / RFC 9051 7.1
    CONTACTADMIN = "CONTACTADMIN"
    CORRUPTION = "CORRUPTION"
    EXPIRED = "EXPIRED"
    EXPUNGEISSUED = "EXPUNGEISSUED"
    HASCHILDREN = "HASCHILDREN"
    INUSE = "INUSE"
    LIMIT = "LIMIT"
    NONEXISTENT = "NONEXISTENT"
    NOPERM = "NOPERM"
    OVERQUOTA = "OVERQUOTA"
    PARSE = "PARSE"
    PRIVACYREQUIRED = "PRIVACYREQUIRED"
    READ_ONLY = "READ-ONLY"
    READ_WRITE = "READ-WRITE"
    SERVERBUG = "SERVERBUG"
    TRYCREATE = "TRYCREATE"
    UIDNOTSTICKY = "UIDNOTSTICKY"  # RFC 4315 section 3
    UNAVAILABLE = "UNAVAILABLE"
    UNKNOWN_CTE = "UNKNOWN-CTE"  # RFC 3516 section 4.3
    NOMODSEQ = "NOMODSEQ"  # RFC 7162 section 3.1.2.2
    TOOBIG = "TOOBIG"  # RFC 4469 section 4, RFC 7888 section 4
    COMPRESSIONACTIVE = "COMPRESSIONACTIVE"  # RFC 4978 section 3
    NOTSAVED = "NOTSAVED"  # RFC 5182 section 2.4
    USEATTR = "USEATTR"  # RFC 6154 section 6

    def encode(self) -> bytes:
        return self.value.encode()


@dataclass(frozen=True)
class CapabilityCode:
    capabilities: tuple[str, ...]

    def encode(self) -> bytes:
        return " ".join(("CAPABILITY", *self.capabilities)).encode()


@dataclass(frozen=True)
class PermanentFlags:
    flags: tuple[str, ...]  # may include "\\*" (RFC 9051 7.1)

    def encode(self) -> bytes:
        return b"PERMANENTFLAGS (" + b" ".join(encode_flag(f) for f in self.flags) + b")"


@dataclass(frozen=True)
class BadCharset:
    charsets: tuple[str, ...] = ()

    def encode(self) -> bytes:
        if not self.charsets:
            return b"BADCHARSET"
        return b"BADCHARSET (" + b" ".join(encode_astring(c) for c in self.charsets) + b")"


@dataclass(frozen=True)
class NumberCode:
    """UIDNEXT, UIDVALIDITY, UNSEEN (RFC 3501 only) and HIGHESTMODSEQ (RFC 7162 3.1.2.1)."""

    name: str
    value: int

    def encode(self) -> bytes:
        return f"{self.name} {self.value}".encode()


def uid_next(value: int) -> NumberCode:
    return NumberCode("UIDNEXT", value)


def uid_validity(value: int) -> NumberCode:
    return NumberCode("UIDVALIDITY", value)


def unseen(value: int) -> NumberCode:
    return NumberCode("UNSEEN", value)


def highest_modseq(value: int) -> NumberCode:
    return NumberCode("HIGHESTMODSEQ", value)


@dataclass(frozen=True)
class AppendUid:
    """RFC 4315 section 3: a uid-set for MULTIAPPEND, one UID otherwise."""

    uidvalidity: int
    uids: SequenceSet

    def encode(self) -> bytes:
        return f"APPENDUID {self.uidvalidity} {self.uids}".encode()


@dataclass(frozen=True)
class CopyUid:
    """RFC 4315 section 3: source and destination UIDs, in matching order."""

    uidvalidity: int
    source: SequenceSet
    destination: SequenceSet

    def encode(self) -> bytes:
        return f"COPYUID {self.uidvalidity} {self.source} {self.destination}".encode()


@dataclass(frozen=True)
class Modified:
    """RFC 7162 section 3.1.3: messages whose UNCHANGEDSINCE test failed."""

    numbers: SequenceSet

    def encode(self) -> bytes:
        return f"MODIFIED {self.numbers}".encode()


@dataclass(frozen=True)
class MailboxId:
    """RFC 8474 section 4.1: objectid of a created mailbox."""

    object_id: str

    def encode(self) -> bytes:
        return f"MAILBOXID ({self.object_id})".encode()


@dataclass(frozen=True)
class OtherCode:
    """Any other code: an atom and optional text (RFC 9051 resp-text-code, last branch)."""

    atom: str
    text: str | None = None

    def encode(self) -> bytes:
        if self.text is None:
            return self.atom.encode()
        # RFC 9051 resp-text-code: atom [SP 1*<any TEXT-CHAR except "]">]
        text = "".join(c if " " <= c <= "~" and c != "]" else " " for c in self.text)
        return self.atom.encode() + b" " + text.encode()


ResponseCode = (
    Code
    | CapabilityCode
    | PermanentFlags
    | BadCharset
    | NumberCode
    | AppendUid
    | CopyUid
    | Modified
    | MailboxId
    | OtherCode
)
