"""FETCH attributes (RFC 9051 section 6.4.5, RFC 3501 6.4.5, RFC 3516, RFC 7162, RFC 8474):
their types, and their grammar.

fetch-att   = "ENVELOPE" / "FLAGS" / "INTERNALDATE" / "RFC822.SIZE" / "BODY" ["STRUCTURE"] /
              "UID" / "BODY" section [partial] / "BODY.PEEK" section [partial] /
              "BINARY" [".PEEK"] section-binary [partial] / "BINARY.SIZE" section-binary
            + RFC 3501 RFC822 / RFC822.HEADER / RFC822.TEXT, RFC 7162 MODSEQ,
              RFC 8474 EMAILID / THREADID
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from postar.imap.errors import SyntaxProblem
from postar.imap.reader import Reader


class FetchItem(Enum):
    """Attributes without a section."""

    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822_SIZE = "RFC822.SIZE"
    ENVELOPE = "ENVELOPE"
    BODY = "BODY"  # BODYSTRUCTURE without extension data
    BODYSTRUCTURE = "BODYSTRUCTURE"
    UID = "UID"
    MODSEQ = "MODSEQ"  # RFC 7162 section 3.1.4.1
    EMAILID = "EMAILID"  # RFC 8474 section 5.1
    THREADID = "THREADID"  # RFC 8474 section 5.2
    RFC822 = "RFC822"  # RFC 3501: BODY[], answered as "RFC822"
    RFC822_HEADER = "RFC822.HEADER"  # RFC 3501: BODY.PEEK[HEADER], answered as "RFC822.HEADER"
    RFC822_TEXT = "RFC822.TEXT"  # RFC 3501: BODY[TEXT], answered as "RFC822.TEXT"


class SectionText(Enum):
    HEADER = "HEADER"
    HEADER_FIELDS = "HEADER.FIELDS"
    HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
    TEXT = "TEXT"
    MIME = "MIME"  # only after a part number (RFC 9051 section-text)


@dataclass(frozen=True)
class Section:
    """section-spec: part numbers (empty = the whole message) and an optional text spec."""

    part: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()  # header field names for HEADER.FIELDS[.NOT], as sent

    def spec(self) -> str:
        """The text between the brackets, as echoed in the FETCH response (RFC 9051 7.5.2)."""
        parts = [".".join(str(p) for p in self.part)] if self.part else []
        if self.text is not None:
            parts.append(self.text.value)
        spec = ".".join(parts)
        if self.fields:
            spec += " (" + " ".join(self.fields) + ")"
        return spec


@dataclass(frozen=True)
class Partial:
    """<origin.count>: octets from `origin`, at most `count` (RFC 9051 section 6.4.5)."""

    origin: int
    count: int


@dataclass(frozen=True)
class FetchBody:
    """BODY[section]<partial> or BODY.PEEK[...] (peek does not set \\Seen)."""

    section: Section
    partial: Partial | None = None
    peek: bool = False


@dataclass(frozen=True)
class FetchBinary:
    """BINARY[part]<partial> or BINARY.PEEK[...] (RFC 3516 section 4.2)."""

    part: tuple[int, ...]
    partial: Partial | None = None
    peek: bool = False


@dataclass(frozen=True)
class FetchBinarySize:
    """BINARY.SIZE[part] (RFC 3516 section 4.2)."""

    part: tuple[int, ...]


FetchAtt = FetchItem | FetchBody | FetchBinary | FetchBinarySize

# RFC 9051 section 6.4.5 macros.
MACROS: dict[str, tuple[FetchAtt, ...]] = {
    "ALL": (FetchItem.FLAGS, FetchItem.INTERNALDATE, FetchItem.RFC822_SIZE, FetchItem.ENVELOPE),
    "FAST": (FetchItem.FLAGS, FetchItem.INTERNALDATE, FetchItem.RFC822_SIZE),
    "FULL": (
        FetchItem.FLAGS,
        FetchItem.INTERNALDATE,
        FetchItem.RFC822_SIZE,
        FetchItem.ENVELOPE,
        FetchItem.BODY,
    ),
}

_SIMPLE = {item.value: item for item in FetchItem}


def _part_numbers(words: list[str]) -> tuple[int, ...]:
    part: list[int] = []
    for w in words:
        if not w.isdigit() or w.startswith("0") or len(w) > 10:
            raise SyntaxProblem("Invalid section part number")
        part.append(int(w))
    return tuple(part)


def _section(r: Reader) -> Section:
    r.expect(b"[")
    if r.try_char(b"]"):
        return Section()
    words = r.word().split(".")
    if "" in words:
        raise SyntaxProblem("Invalid section")
    i = 0
    while i < len(words) and words[i][:1].isdigit():
        i += 1
    part = _part_numbers(words[:i])
    rest = ".".join(words[i:])
    if not rest:
        r.expect(b"]")
        return Section(part)
    try:
        text = SectionText(rest)
    except ValueError:
        raise SyntaxProblem("Invalid section") from None
    if text is SectionText.MIME and not part:
        raise SyntaxProblem("MIME needs a part number")
    fields: tuple[str, ...] = ()
    if text in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT):
        r.sp()
        r.open_paren()
        names = [r.astring()]
        while r.try_sp():
            names.append(r.astring())
        r.close_paren()
        for name in names:
            # RFC 5322 field-name: printable ASCII except ":".
            if not name or b":" in name or not all(0x21 <= c <= 0x7E for c in name):
                raise SyntaxProblem("Invalid header field name")
        fields = tuple(n.decode("ascii") for n in names)
    r.expect(b"]")
    return Section(part, text, fields)


def _binary_part(r: Reader) -> tuple[int, ...]:
    r.expect(b"[")
    if r.try_char(b"]"):
        return ()
    part = _part_numbers(r.word().split("."))
    r.expect(b"]")
    return part


def _partial(r: Reader) -> Partial | None:
    if not r.try_char(b"<"):
        return None
    origin = r.number(bits=64)
    r.expect(b".")
    count = r.number(nonzero=True, bits=64)
    r.expect(b">")
    return Partial(origin, count)


def fetch_att(r: Reader) -> FetchAtt:
    name = r.word()
    if name in ("BODY", "BODY.PEEK") and r.peek() == ord("["):
        section = _section(r)
        return FetchBody(section, _partial(r), peek=name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK"):
        part = _binary_part(r)
        return FetchBinary(part, _partial(r), peek=name == "BINARY.PEEK")
    if name == "BINARY.SIZE":
        return FetchBinarySize(_binary_part(r))
    item = _SIMPLE.get(name)
    if item is None:
        raise SyntaxProblem("Unknown fetch attribute")
    return item


def fetch_atts(r: Reader) -> tuple[FetchAtt, ...]:
    """Macro, single attribute, or parenthesised list."""
    if r.peek() == ord("("):
        r.open_paren()
        atts = [fetch_att(r)]
        while r.try_sp():
            atts.append(fetch_att(r))
        r.close_paren()
        return tuple(atts)
    save = r.pos
    word = r.word()
    if word in MACROS:
        return MACROS[word]
    r.pos = save
    return (fetch_att(r),)
