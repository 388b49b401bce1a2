"""SEARCH keys (RFC 9051 section 6.4.4, RFC 3501 6.4.4, RFC 7162 MODSEQ, RFC 5032 OLDER/YOUNGER,
RFC 8474 EMAILID/THREADID, RFC 5182 "$"), their types and grammar, and the ESEARCH/SEARCHRES
return options (RFC 9051 section 6.4.4, RFC 4731, RFC 5182).

Search strings are decoded with the command's CHARSET into str; the behaviour half compares.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from datetime import date
from enum import Enum

from postar.imap.codes import BadCharset
from postar.imap.dates import DateError, parse_search_date
from postar.imap.errors import ErrorStatus, SyntaxProblem
from postar.imap.reader import Reader
from postar.imap.sequence import SequenceSet

# Charsets we decode search strings in; the BADCHARSET code lists them (RFC 9051 7.1).
SUPPORTED_CHARSETS = ("UTF-8", "US-ASCII", "ISO-8859-1", "ISO-8859-15", "WINDOWS-1252")


class DateField(Enum):
    INTERNAL = "INTERNAL"  # BEFORE / ON / SINCE: INTERNALDATE, date only (RFC 9051 6.4.4)
    SENT = "SENT"  # SENTBEFORE / SENTON / SENTSINCE: the Date: header


class DateOp(Enum):
    BEFORE = "BEFORE"
    ON = "ON"
    SINCE = "SINCE"


class EnvelopeField(Enum):
    BCC = "BCC"
    CC = "CC"
    FROM = "FROM"
    SUBJECT = "SUBJECT"
    TO = "TO"


@dataclass(frozen=True)
class All:
    pass


@dataclass(frozen=True)
class Flag:
    """ANSWERED/DELETED/DRAFT/FLAGGED/SEEN/KEYWORD and their UN- forms."""

    flag: str
    present: bool


@dataclass(frozen=True)
class Recent:
    """RFC 3501 RECENT (present) and OLD (absent); NEW is And(Recent, Flag(\\Seen, False))."""

    present: bool


@dataclass(frozen=True)
class EnvelopeContains:
    field: EnvelopeField
    value: str


@dataclass(frozen=True)
class Header:
    """HEADER name value; an empty value matches every message with the field."""

    name: str
    value: str


@dataclass(frozen=True)
class Text:
    """BODY (body_only) or TEXT (header and body)."""

    value: str
    body_only: bool


@dataclass(frozen=True)
class DateCompare:
    field: DateField
    op: DateOp
    date: date


@dataclass(frozen=True)
class Size:
    larger: bool  # LARGER n (> n) or SMALLER n (< n)
    octets: int


@dataclass(frozen=True)
class Numbers:
    """A sequence set of message numbers, or UID set (UID key); may be "$" (RFC 5182)."""

    set: SequenceSet
    uid: bool


@dataclass(frozen=True)
class ModSeq:
    """RFC 7162 section 3.1.5: MODSEQ [entry-name entry-type] mod-sequence-valzer."""

    modseq: int
    entry: str | None = None  # "/flags/\\draft"
    entry_type: str | None = None  # "priv" / "shared" / "all"


@dataclass(frozen=True)
class Age:
    """RFC 5032 OLDER n (older=True) / YOUNGER n, in seconds against INTERNALDATE."""

    older: bool
    seconds: int


@dataclass(frozen=True)
class ObjectId:
    """RFC 8474 section 6: EMAILID / THREADID."""

    kind: str  # "EMAILID" or "THREADID"
    value: str


@dataclass(frozen=True)
class Not:
    key: SearchKey


@dataclass(frozen=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True)
class And:
    keys: tuple[SearchKey, ...]


SearchKey = (
    All
    | Flag
    | Recent
    | EnvelopeContains
    | Header
    | Text
    | DateCompare
    | Size
    | Numbers
    | ModSeq
    | Age
    | ObjectId
    | Not
    | Or
    | And
)


class SearchReturn(Enum):
    """RFC 9051 search-return-opt / RFC 4731 / RFC 5182 SAVE."""

    MIN = "MIN"
    MAX = "MAX"
    ALL = "ALL"
    COUNT = "COUNT"
    SAVE = "SAVE"


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_DATE_KEYS = {
    "BEFORE": (DateField.INTERNAL, DateOp.BEFORE),
    "ON": (DateField.INTERNAL, DateOp.ON),
    "SINCE": (DateField.INTERNAL, DateOp.SINCE),
    "SENTBEFORE": (DateField.SENT, DateOp.BEFORE),
    "SENTON": (DateField.SENT, DateOp.ON),
    "SENTSINCE": (DateField.SENT, DateOp.SINCE),
}
_ENTRY_TYPES = ("priv", "shared", "all")


def check_charset(name: str) -> str:
    """The canonical name of a supported charset, or a NO [BADCHARSET] (RFC 9051 6.4.4)."""
    upper = name.upper()
    for supported in SUPPORTED_CHARSETS:
        if codecs.lookup(supported).name == _lookup(upper):
            return supported
    raise SyntaxProblem(
        "Unsupported charset", BadCharset(SUPPORTED_CHARSETS), status=ErrorStatus.NO
    )


def _lookup(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError, TypeError):
        return None


class SearchParser:
    """Parses search-key lists with one charset for all strings."""

    def __init__(self, reader: Reader, charset: str = "UTF-8") -> None:
        self.r = reader
        self.charset = charset

    def _text(self) -> str:
        raw = self.r.astring()
        try:
            return raw.decode(self.charset)
        except UnicodeDecodeError:
            raise SyntaxProblem("String not valid in the given charset") from None

    def _date(self) -> date:
        r = self.r
        quoted = r.peek() == 0x22
        raw = r.quoted() if quoted else r.atom()
        try:
            return parse_search_date(raw.decode("ascii"))
        except (DateError, UnicodeDecodeError):
            raise SyntaxProblem("Invalid date") from None

    def keys(self) -> SearchKey:
        """search-key *(SP search-key) up to the end or a ")"."""
        keys = [self.key()]
        while self.r.try_sp():
            keys.append(self.key())
        return keys[0] if len(keys) == 1 else And(tuple(keys))

    def key(self) -> SearchKey:
        r = self.r
        r.enter()  # NOT/OR/parentheses recurse: bound the depth (RFC-agnostic safety limit)
        try:
            return self._key()
        finally:
            r.leave()

    def _key(self) -> SearchKey:
        r = self.r
        c = r.peek()
        if c == ord("("):
            r.expect(b"(")
            inner = self.keys()
            r.expect(b")")
            return inner if isinstance(inner, And) else And((inner,))
        if c is not None and (0x30 <= c <= 0x39 or c in b"*$"):
            return Numbers(r.sequence_set(), uid=False)
        word = r.keyword()
        if word in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[word]
            return Flag(flag, present)
        if word == "ALL":
            return All()
        if word in ("KEYWORD", "UNKEYWORD"):
            r.sp()
            return Flag(r.atom().decode("ascii"), word == "KEYWORD")
        if word in ("BCC", "CC", "FROM", "SUBJECT", "TO"):
            r.sp()
            return EnvelopeContains(EnvelopeField(word), self._text())
        if word in ("BODY", "TEXT"):
            r.sp()
            return Text(self._text(), body_only=word == "BODY")
        if word in _DATE_KEYS:
            r.sp()
            field, op = _DATE_KEYS[word]
            return DateCompare(field, op, self._date())
        if word == "HEADER":
            r.sp()
            name = r.astring()
            if not name or b":" in name or not all(0x21 <= b <= 0x7E for b in name):
                raise SyntaxProblem("Invalid header field name")
            r.sp()
            return Header(name.decode("ascii"), self._text())
        if word in ("LARGER", "SMALLER"):
            r.sp()
            return Size(word == "LARGER", r.number(bits=64))
        if word == "NOT":
            r.sp()
            return Not(self.key())
        if word == "OR":
            r.sp()
            left = self.key()
            r.sp()
            return Or(left, self.key())
        if word == "UID":
            r.sp()
            return Numbers(r.sequence_set(), uid=True)
        if word in ("RECENT", "OLD"):  # RFC 3501 only
            return Recent(word == "RECENT")
        if word == "NEW":  # RFC 3501: "equivalent to (RECENT UNSEEN)"
            return And((Recent(True), Flag("\\Seen", False)))
        if word == "MODSEQ":
            return self._modseq()
        if word in ("OLDER", "YOUNGER"):
            r.sp()
            return Age(word == "OLDER", r.number(nonzero=True))
        if word in ("EMAILID", "THREADID"):
            r.sp()
            return ObjectId(word, _object_id(r))
        raise SyntaxProblem("Unknown search key")

    def _modseq(self) -> ModSeq:
        r = self.r
        r.sp()
        entry = entry_type = None
        if r.peek() == 0x22:
            # entry-name = entry-flag-name = DQUOTE "/flags/" attr-flag DQUOTE
            raw = r.quoted().decode("ascii", "replace")
            if not raw.lower().startswith("/flags/") or len(raw) <= 7:
                raise SyntaxProblem("Invalid MODSEQ entry name")
            entry = raw
            r.sp()
            entry_type = r.keyword().lower()
            if entry_type not in _ENTRY_TYPES:
                raise SyntaxProblem("Invalid MODSEQ entry type")
            r.sp()
        return ModSeq(r.number(bits=64), entry, entry_type)


def _object_id(r: Reader) -> str:
    # RFC 8474 objectid = 1*255(ALPHA / DIGIT / "_" / "-")
    raw = r.atom()
    if len(raw) > 255 or not all(chr(b).isalnum() or b in b"_-" for b in raw):
        raise SyntaxProblem("Invalid object id")
    return raw.decode("ascii")


def return_options(r: Reader) -> tuple[SearchReturn, ...]:
    """ "(" [search-return-opt *(SP search-return-opt)] ")"; empty means ALL (RFC 4731)."""
    r.open_paren()
    opts: list[SearchReturn] = []
    if r.peek() != ord(")"):
        while True:
            try:
                opts.append(SearchReturn(r.keyword()))
            except ValueError:
                raise SyntaxProblem("Unknown search return option") from None
            if not r.try_sp():
                break
    r.close_paren()
    return tuple(dict.fromkeys(opts)) or (SearchReturn.ALL,)
