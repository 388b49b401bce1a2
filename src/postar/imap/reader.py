"""Token reader over one received command: text segments with literals between them.

The receiver hands the parser a list alternating bytes (line text, literal markers removed)
and `Literal` payloads, always starting and ending with text. Strings read at a literal's
position take the literal. Every method raises SyntaxProblem on a mismatch, never anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from postar.imap.codes import Code
from postar.imap.errors import SyntaxProblem
from postar.imap.sequence import SequenceSet, SequenceSetError

# Byte classes of RFC 9051 section 9.
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x00, 0x20)) | {0x7F}
ATOM_CHARS = frozenset(range(0x01, 0x80)) - _ATOM_SPECIALS
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
LIST_CHARS = ATOM_CHARS | {ord("%"), ord("*"), ord("]")}  # list-mailbox: list-char
_SEQ_CHARS = frozenset(b"0123456789:*,$")
_DIGITS = frozenset(b"0123456789")
_WORD_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-")


@dataclass(frozen=True)
class Literal:
    data: bytes
    binary: bool  # literal8 ~{n} (RFC 3516 section 4.1)


class Reader:
    def __init__(
        self,
        segments: list[bytes | Literal],
        *,
        utf8: bool,
        max_depth: int,
        max_ranges: int,
    ) -> None:
        self._segments = segments
        self._index = 0
        text = segments[0]
        assert isinstance(text, bytes)
        self._text = text
        self.pos = 0
        self.utf8 = utf8
        self.max_depth = max_depth
        self.max_ranges = max_ranges
        self.depth = 0

    # -- position --------------------------------------------------------------------------

    def at_end(self) -> bool:
        return self.pos >= len(self._text) and self._index >= len(self._segments) - 1

    def peek(self) -> int | None:
        """The next text byte, or None at a literal or the end."""
        if self.pos < len(self._text):
            return self._text[self.pos]
        return None

    def at_literal(self) -> bool:
        return self.pos >= len(self._text) and self._index < len(self._segments) - 1

    def expect_end(self) -> None:
        if not self.at_end():
            raise SyntaxProblem("Unexpected extra arguments")

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise SyntaxProblem("Expected a space")
        self.pos += 1

    def try_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def expect(self, char: bytes) -> None:
        if self.peek() != char[0]:
            raise SyntaxProblem(f"Expected {char.decode()!r}")
        self.pos += 1

    def try_char(self, char: bytes) -> bool:
        if self.peek() == char[0]:
            self.pos += 1
            return True
        return False

    def open_paren(self) -> None:
        self.expect(b"(")
        self.enter()

    def close_paren(self) -> None:
        self.expect(b")")
        self.depth -= 1

    def enter(self) -> None:
        """Count one level of nesting (parentheses or a recursive key)."""
        self.depth += 1
        if self.depth > self.max_depth:
            raise SyntaxProblem("Too deeply nested", Code.LIMIT)

    def leave(self) -> None:
        self.depth -= 1

    # -- tokens ----------------------------------------------------------------------------

    def take(self, allowed: frozenset[int]) -> bytes:
        text = self._text
        start = pos = self.pos
        end = len(text)
        while pos < end and text[pos] in allowed:
            pos += 1
        self.pos = pos
        return text[start:pos]

    def atom(self) -> bytes:
        value = self.take(ATOM_CHARS)
        if not value:
            raise SyntaxProblem("Expected an atom")
        return value

    def keyword(self) -> str:
        """An atom, upper-cased for comparison with protocol keywords."""
        return self.atom().decode("ascii").upper()

    def word(self) -> str:
        """Letters, digits, '.' and '-': fetch-att and section names stop at '[' and '<'."""
        text = self._text
        start = pos = self.pos
        while pos < len(text) and text[pos] in _WORD_CHARS:
            pos += 1
        self.pos = pos
        if start == pos:
            raise SyntaxProblem("Expected a keyword")
        return text[start:pos].decode("ascii").upper()

    def number(self, *, nonzero: bool = False, bits: int = 32) -> int:
        digits = self.take(_DIGITS)
        if not digits or len(digits) > 20:
            raise SyntaxProblem("Expected a number")
        value = int(digits)
        # RFC 9051: number is 32-bit unsigned, number64 63-bit signed non-negative.
        if value >= (1 << bits if bits == 32 else 1 << 63) or (nonzero and value == 0):
            raise SyntaxProblem("Number out of range")
        return value

    def quoted(self) -> bytes:
        self.expect(b'"')
        text = self._text
        out = bytearray()
        pos = self.pos
        while True:
            if pos >= len(text):
                raise SyntaxProblem("Unterminated quoted string")
            c = text[pos]
            if c == 0x22:
                break
            if c == 0x5C:
                pos += 1
                # RFC 9051 QUOTED-CHAR: only quoted-specials may be escaped.
                if pos >= len(text) or text[pos] not in b'"\\':
                    raise SyntaxProblem("Invalid escape in quoted string")
                c = text[pos]
            elif c in (0x0D, 0x0A, 0x00):
                raise SyntaxProblem("Invalid character in quoted string")
            elif c >= 0x80 and not self.utf8:
                # RFC 3501 section 4.3: 7-bit only until UTF8=ACCEPT (RFC 6855 section 3).
                raise SyntaxProblem("8-bit character in quoted string")
            out.append(c)
            pos += 1
        self.pos = pos + 1
        value = bytes(out)
        if self.utf8 and not value.isascii():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SyntaxProblem("Invalid UTF-8 in quoted string") from exc
        return value

    def literal(self, *, binary_ok: bool = False) -> Literal:
        if not self.at_literal():
            raise SyntaxProblem("Expected a literal")
        lit = self._segments[self._index + 1]
        assert isinstance(lit, Literal)
        if lit.binary and not binary_ok:
            raise SyntaxProblem("literal8 not allowed here")
        # RFC 9051 literal: *CHAR8, which excludes NUL; only literal8 may carry it.
        if not lit.binary and b"\x00" in lit.data:
            raise SyntaxProblem("NUL in literal")
        self._index += 2
        text = self._segments[self._index]
        assert isinstance(text, bytes)
        self._text = text
        self.pos = 0
        return lit

    def string(self) -> bytes:
        if self.at_literal():
            return self.literal().data
        if self.peek() == 0x22:
            return self.quoted()
        raise SyntaxProblem("Expected a string")

    def astring(self) -> bytes:
        if self.at_literal() or self.peek() == 0x22:
            return self.string()
        value = self.take(ASTRING_CHARS)
        if not value:
            raise SyntaxProblem("Expected a string")
        return value

    def nstring(self) -> bytes | None:
        if self._text[self.pos : self.pos + 3].upper() == b"NIL" and (
            self.pos + 3 >= len(self._text) or self._text[self.pos + 3] not in ATOM_CHARS
        ):
            self.pos += 3
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        if self.at_literal() or self.peek() == 0x22:
            return self.string()
        value = self.take(LIST_CHARS)
        if not value:
            raise SyntaxProblem("Expected a mailbox pattern")
        return value

    def sequence_set(self) -> SequenceSet:
        raw = self.take(_SEQ_CHARS)
        if not raw:
            raise SyntaxProblem("Expected a sequence set")
        try:
            return SequenceSet.parse(raw, max_ranges=self.max_ranges)
        except SequenceSetError as exc:
            if "ranges" in str(exc):
                raise SyntaxProblem("Too many ranges in sequence set", Code.LIMIT) from exc
            raise SyntaxProblem("Invalid sequence set") from exc

    def flag(self) -> str:
        """flag = "\\" atom (system or extension flag) / atom (keyword), RFC 9051 section 9."""
        backslash = self.try_char(b"\\")
        value = self.atom().decode("ascii")
        if not backslash:
            return value
        # System flags are case-insensitive; keep one spelling (RFC 9051 section 2.3.2).
        for system in ("Answered", "Flagged", "Deleted", "Seen", "Draft", "Recent"):
            if value.lower() == system.lower():
                return "\\" + system
        return "\\" + value

    def flag_list(self) -> tuple[str, ...]:
        self.open_paren()
        flags: list[str] = []
        if not self.try_char(b")"):
            flags.append(self.flag())
            while self.try_sp():
                flags.append(self.flag())
            self.expect(b")")
        self.depth -= 1
        return tuple(flags)
