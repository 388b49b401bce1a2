"""Sequence sets (RFC 9051 section 9 sequence-set, RFC 5182 "$") and their compact encoding.

A set is held as a flat array of (first, last) pairs of unsigned 32-bit values, "*" stored as 0
(0 is never a valid message number or UID, RFC 9051 nz-number), so a million ranges cost 8 MB,
not the hundreds a list of tuples would. Resolving against the largest number in use gives a
`ResolvedSet`: sorted, merged ranges with O(log n) membership and a lazy ascending iterator.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator

STAR = 0  # "*": the largest number in use (RFC 9051 section 9, seq-number)
MAX_NUMBER = 0xFFFF_FFFF  # RFC 9051 nz-number: 32-bit unsigned, non-zero
_ELEMENT_RE = re.compile(rb"([1-9][0-9]{0,9}|\*)(?::([1-9][0-9]{0,9}|\*))?")


class SequenceSetError(ValueError):
    """Text that is not a sequence set, or one with more ranges than allowed."""


class ResolvedSet:
    """A sequence set with "*" replaced: disjoint ascending ranges (first <= last)."""

    __slots__ = ("_firsts", "_lasts")

    def __init__(self, firsts: array[int], lasts: array[int]) -> None:
        self._firsts = firsts
        self._lasts = lasts

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        i = bisect_right(self._firsts, number) - 1
        return i >= 0 and number <= self._lasts[i]

    def __iter__(self) -> Iterator[int]:
        for first, last in zip(self._firsts, self._lasts, strict=True):
            yield from range(first, last + 1)

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in zip(self._firsts, self._lasts, strict=True))

    def ranges(self) -> Iterator[tuple[int, int]]:
        return zip(self._firsts, self._lasts, strict=True)

    @property
    def max(self) -> int | None:
        return self._lasts[-1] if self._lasts else None

    @property
    def min(self) -> int | None:
        return self._firsts[0] if self._firsts else None


class SequenceSet:
    """A parsed sequence-set, or the saved search result "$" (RFC 5182 section 2.1)."""

    __slots__ = ("_pairs", "saved")

    def __init__(self, pairs: Iterable[tuple[int, int]] = (), *, saved: bool = False) -> None:
        flat = array("I")
        for first, last in pairs:
            if not (0 <= first <= MAX_NUMBER and 0 <= last <= MAX_NUMBER):
                raise SequenceSetError("number out of range")
            flat.append(first)
            flat.append(last)
        if saved and flat:
            raise SequenceSetError('"$" stands alone')
        self._pairs = flat
        self.saved = saved

    @classmethod
    def saved_result(cls) -> SequenceSet:
        """ "$": the result of the last SEARCH ... RETURN (SAVE) (RFC 5182 section 2.1)."""
        return cls(saved=True)

    @classmethod
    def parse(cls, text: bytes | str, *, max_ranges: int = 1_000_000) -> SequenceSet:
        data = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
        if data == b"$":
            return cls.saved_result()
        # Count before building anything, so an oversized set costs no memory.
        if data.count(b",") + 1 > max_ranges:
            raise SequenceSetError(f"more than {max_ranges} ranges")
        flat = array("I")
        for element in data.split(b","):
            m = _ELEMENT_RE.fullmatch(element)
            if m is None:
                raise SequenceSetError("invalid sequence set")
            first = STAR if m[1] == b"*" else int(m[1])
            last = first if m[2] is None else (STAR if m[2] == b"*" else int(m[2]))
            if first > MAX_NUMBER or last > MAX_NUMBER:
                raise SequenceSetError("number out of range")
            flat.append(first)
            flat.append(last)
        result = cls()
        result._pairs = flat
        return result

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """The compact set of `numbers` (ESEARCH ALL, COPYUID): sorted, runs as ranges."""
        result = cls()
        flat = result._pairs
        for n in sorted(set(numbers)):
            if not 1 <= n <= MAX_NUMBER:
                raise SequenceSetError("number out of range")
            if flat and flat[-1] + 1 == n:
                flat[-1] = n
            else:
                flat.append(n)
                flat.append(n)
        return result

    @classmethod
    def from_ordered(cls, numbers: Iterable[int]) -> SequenceSet:
        """Keep the given order (COPYUID pairs source and destination UIDs by position,
        RFC 4315 section 3), joining only ascending runs."""
        result = cls()
        flat = result._pairs
        for n in numbers:
            if not 1 <= n <= MAX_NUMBER:
                raise SequenceSetError("number out of range")
            if flat and flat[-2] <= flat[-1] and flat[-1] + 1 == n:
                flat[-1] = n
            else:
                flat.append(n)
                flat.append(n)
        return result

    def pairs(self) -> Iterator[tuple[int, int]]:
        """The ranges as written, "*" as STAR (0)."""
        it = iter(self._pairs)
        return zip(it, it, strict=True)

    def __len__(self) -> int:
        return len(self._pairs) // 2

    @property
    def uses_star(self) -> bool:
        return STAR in self._pairs

    def resolve(self, largest: int) -> ResolvedSet:
        """Replace "*" with `largest` and merge. A range n:m equals m:n (RFC 9051 section 9),
        so "559:*" with largest 500 is 500:559 and includes 500, as RFC 9051 6.4.9 asks for
        UID ranges. Numbers above `largest` stay: the caller decides whether that is an error
        (message numbers, RFC 9051 section 9) or ignored (UIDs)."""
        if self.saved:
            raise SequenceSetError('"$" must be replaced by the saved result first')
        keys = array("Q")
        for first, last in self.pairs():
            first = largest if first == STAR else first
            last = largest if last == STAR else last
            if first > last:
                first, last = last, first
            if last == 0:  # "*" in an empty mailbox denotes nothing
                continue
            keys.append((max(first, 1) << 32) | last)
        firsts = array("I")
        lasts = array("I")
        for key in sorted(keys):
            first, last = key >> 32, key & 0xFFFF_FFFF
            if lasts and first <= lasts[-1] + 1:
                if last > lasts[-1]:
                    lasts[-1] = last
            else:
                firsts.append(first)
                lasts.append(last)
        return ResolvedSet(firsts, lasts)

    def normalized(self, largest: int) -> SequenceSet:
        """The same members written compactly: ascending, merged, without "*"."""
        resolved = self.resolve(largest)
        return SequenceSet(resolved.ranges())

    def __str__(self) -> str:
        if self.saved:
            return "$"
        parts = []
        for first, last in self.pairs():
            a = "*" if first == STAR else str(first)
            if first == last:
                parts.append(a)
            else:
                parts.append(a + ":" + ("*" if last == STAR else str(last)))
        return ",".join(parts)

    def encode(self) -> bytes:
        return str(self).encode("ascii")

    def __repr__(self) -> str:
        text = str(self)
        if len(text) > 60:
            text = text[:57] + "..."
        return f"SequenceSet({text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SequenceSet):
            return NotImplemented
        return self.saved == other.saved and self._pairs == other._pairs

    def __hash__(self) -> int:
        return hash((self.saved, self._pairs.tobytes()))
