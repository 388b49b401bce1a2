"""Parse a raw message once into its stored structure: offsets, types, envelope, search text.

Theory of operation. The message is never copied and never run through the stdlib email
package: header blocks (small) are sliced and decoded, bodies are only searched. A multipart body
is split top-down: the parent's delimiters are found with bytes.find over the parent's range, then
each child is parsed inside its own range. A child that lacks its closing delimiter therefore
ends where its parent says, and a stray delimiter of an outer level cannot leak into an inner one.

Invariants, for every part p of a message of n bytes:
    0 <= p.start <= p.body_start <= p.end <= n
    a child's range lies inside its parent's body range, children in order, not overlapping
    raw[p.start:p.body_start] is the header block including the blank line (RFC 5322 2.1)
    raw[p.body_start:p.end] is the body, without the line break that precedes the next
        delimiter (RFC 2046 5.1.1: "the CRLF preceding the boundary delimiter line is
        conceptually attached to the boundary")

parse_message never raises on any input; what it had to guess is listed in defects.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Callable

from postar.mime.address import parse_address_list
from postar.mime.headers import (
    first_token,
    first_values,
    parse_content_disposition,
    parse_content_type,
    parse_language,
    split_fields,
)
from postar.mime.structure import BodyPart, Envelope, ParsedMessage
from postar.mime.text import fill_search_text

Buffer = bytes | bytearray | memoryview | mmap.mmap

MAX_DEPTH = 50  # nesting of multiparts and encapsulated messages
MAX_PARTS = 10_000  # body parts per message; a stored BODYSTRUCTURE must stay small
MAX_HEADER_BYTES = 1 << 20  # header bytes read for fields; offsets still cover the whole block

_CR, _LF, _SP, _HT, _DASH = 13, 10, 32, 9, 45
_HEADER_END = re.compile(rb"\n\r?\n")
_CHUNK = 1 << 22
_ENCAPSULATED = {("message", "rfc822"), ("message", "global")}
# RFC 2046 5.2.1 and RFC 6532 3.7: an encapsulated message is 7bit, 8bit or binary; a base64
# one cannot be given offsets into the stored message, so it stays an opaque leaf.
_IDENTITY = {"7bit", "8bit", "binary"}


class _Source:
    """The raw message behind one small interface: find, count lines, slice, read a byte.

    bytes, bytearray and mmap have find; a memoryview is searched with a compiled regex, which
    accepts any buffer without copying it.
    """

    def __init__(self, raw: Buffer) -> None:
        if isinstance(raw, memoryview) and (raw.format != "B" or raw.ndim != 1):
            raw = raw.cast("B")
        self.raw = raw
        self.size = len(raw)
        self._find: Callable[[bytes, int, int], int] | None = getattr(raw, "find", None)
        self._patterns: dict[bytes, re.Pattern[bytes]] = {}

    def find(self, needle: bytes, start: int, end: int) -> int:
        if self._find is not None:
            return self._find(needle, start, end)
        pattern = self._patterns.get(needle)
        if pattern is None:
            pattern = self._patterns[needle] = re.compile(re.escape(needle))
        match = pattern.search(self.raw, start, end)
        return -1 if match is None else match.start()

    def search(self, pattern: re.Pattern[bytes], start: int, end: int) -> re.Match[bytes] | None:
        return pattern.search(self.raw, start, end)

    def byte(self, index: int) -> int:
        return self.raw[index]

    def slice(self, start: int, end: int) -> bytes:
        return bytes(self.raw[start:end])

    def count_lf(self, start: int, end: int) -> int:
        raw = self.raw
        if isinstance(raw, bytes | bytearray):
            return raw.count(b"\n", start, end)
        # mmap and memoryview have no count: copy bounded chunks, never the whole body.
        total = 0
        for pos in range(start, end, _CHUNK):
            total += bytes(raw[pos : min(end, pos + _CHUNK)]).count(b"\n")
        return total


class _Parser:
    def __init__(self, source: _Source) -> None:
        self.src = source
        self.defects: list[str] = []
        self.parts = 0

    def defect(self, text: str) -> None:
        if text not in self.defects:
            self.defects.append(text)

    # --- headers -------------------------------------------------------------------------

    def header_end(self, start: int, end: int) -> int:
        """Offset of the body: just after the blank line, or end when there is none."""
        src = self.src
        if start >= end:
            return end
        first = src.byte(start)
        if first == _LF:
            return start + 1
        if first == _CR and start + 1 < end and src.byte(start + 1) == _LF:
            return start + 2
        match = src.search(_HEADER_END, start, end)
        return end if match is None else match.end()

    def lines(self, start: int, end: int) -> int:
        """Text lines as IMAP counts them: line breaks, plus an unterminated last line."""
        if start >= end:
            return 0
        count = self.src.count_lf(start, end)
        if self.src.byte(end - 1) != _LF:
            count += 1
        return count

    # --- parts -----------------------------------------------------------------------------

    def part(
        self, start: int, end: int, *, digest: bool, depth: int
    ) -> tuple[BodyPart, list[tuple[str, str]]]:
        """Parse the part in raw[start:end]; digest says its parent is multipart/digest."""
        self.parts += 1
        body_start = self.header_end(start, end)
        fields = split_fields(self.src.slice(start, min(body_start, start + MAX_HEADER_BYTES)))
        part = BodyPart(start=start, body_start=body_start, end=end)
        value = first_values(fields).get
        ctype = parse_content_type(value("content-type"))
        if ctype is None:
            # RFC 2046 5.1.5: in a digest the default is message/rfc822; elsewhere RFC 2045 5.2
            # makes it text/plain; charset=us-ascii, also for an invalid Content-Type.
            if digest:
                part.type, part.subtype = "message", "rfc822"
            else:
                part.type, part.subtype = "text", "plain"
                part.params = (("charset", "us-ascii"),)
        else:
            part.type, part.subtype, part.params = ctype
        part.encoding = first_token(value("content-transfer-encoding")) or "7bit"
        part.encoding = part.encoding.lower()
        part.id = value("content-id")
        part.description = value("content-description")
        part.md5 = value("content-md5")
        part.disposition, part.disposition_params = parse_content_disposition(
            value("content-disposition")
        )
        part.language = parse_language(value("content-language"))
        part.location = value("content-location")

        if part.type == "multipart":
            self.multipart(part, depth)
        elif (part.type, part.subtype) in _ENCAPSULATED:
            part.lines = self.lines(body_start, end)
            self.encapsulated(part, depth)
        elif part.type == "text":
            part.lines = self.lines(body_start, end)
        return part, fields

    def encapsulated(self, part: BodyPart, depth: int) -> None:
        if part.encoding not in _IDENTITY:
            self.defect(f"{part.type}/{part.subtype} with {part.encoding} encoding left opaque")
            return
        if depth >= MAX_DEPTH:
            self.defect(f"nesting deeper than {MAX_DEPTH}: message left opaque")
            return
        inner, fields = self.part(part.body_start, part.end, digest=False, depth=depth + 1)
        part.message = inner
        part.message_envelope = envelope(fields)

    def multipart(self, part: BodyPart, depth: int) -> None:
        boundary = part.param("boundary")
        if depth >= MAX_DEPTH:
            self.defect(f"nesting deeper than {MAX_DEPTH}: multipart left unsplit")
        elif not boundary:
            self.defect("multipart without boundary")
        elif self.parts >= MAX_PARTS:
            self.defect(f"more than {MAX_PARTS} parts: multipart left unsplit")
        else:
            digest = part.subtype == "digest"
            for child_start, child_end in self.split(part, boundary):
                if self.parts >= MAX_PARTS:
                    self.defect(f"more than {MAX_PARTS} parts: rest of multipart not split")
                    break
                child, _ = self.part(child_start, child_end, digest=digest, depth=depth + 1)
                part.children.append(child)
        if not part.children:
            # IMAP's body-type-mpart needs at least one body (RFC 9051 section 9); like Dovecot,
            # stand in an empty text/plain, placed at the start of the body.
            self.parts += 1
            at = part.body_start
            part.children.append(
                BodyPart(start=at, body_start=at, end=at, params=(("charset", "us-ascii"),))
            )

    def split(self, part: BodyPart, boundary: str) -> list[tuple[int, int]]:
        """(start, end) of each body part between the delimiters of a multipart body.

        RFC 2046 5.1.1: a delimiter is "--" boundary at the start of a line, followed by optional
        white space (transport padding) and the line break; the close delimiter adds "--".
        Matching the whole line keeps "--abc" from matching an inner boundary "abc-1".
        """
        needle = b"--" + boundary.encode("utf-8", "surrogateescape")
        src = self.src
        lo, hi = part.body_start, part.end
        if not boundary.isascii() and src.find(needle, lo, hi) < 0:
            # The header was not UTF-8, so split_fields read it as Latin-1.
            needle = b"--" + boundary.encode("latin-1", "replace")
        ranges: list[tuple[int, int]] = []
        open_at = -1  # start of the current part, -1 while in the preamble
        pos = lo
        closed = False
        while True:
            hit = src.find(needle, pos, hi)
            if hit < 0:
                break
            pos = hit + 1
            if hit > lo and src.byte(hit - 1) != _LF:
                continue
            after = hit + len(needle)
            close = after + 1 < hi and src.byte(after) == _DASH and src.byte(after + 1) == _DASH
            if close:
                after += 2
            while after < hi and src.byte(after) in (_SP, _HT):
                after += 1
            if after < hi:
                byte = src.byte(after)
                if byte == _LF:
                    after += 1
                elif byte == _CR and after + 1 < hi and src.byte(after + 1) == _LF:
                    after += 2
                else:
                    continue
            if open_at >= 0:
                ranges.append((open_at, self.before_break(open_at, hit)))
            if close:
                closed = True
                break
            open_at = after
            pos = after
        if not closed:
            if open_at >= 0:
                self.defect("missing closing boundary")
                ranges.append((open_at, hi))
            else:
                self.defect("boundary not found in multipart body")
        return ranges

    def before_break(self, start: int, delimiter: int) -> int:
        """End of a part body: the line break before the delimiter belongs to the delimiter."""
        end = delimiter
        if end > start and self.src.byte(end - 1) == _LF:
            end -= 1
            if end > start and self.src.byte(end - 1) == _CR:
                end -= 1
        return end


def envelope(fields: list[tuple[str, str]]) -> Envelope:
    """The ENVELOPE of a message from its header fields (RFC 9051 section 7.5.2)."""
    value = first_values(fields).get
    from_ = parse_address_list(value("from"))
    sender = parse_address_list(value("sender"))
    reply_to = parse_address_list(value("reply-to"))
    return Envelope(
        date=value("date"),
        subject=value("subject"),
        from_=from_,
        # RFC 9051 7.5.2: an absent or empty Sender or Reply-To is reported as the From value.
        sender=sender or from_,
        reply_to=reply_to or from_,
        to=parse_address_list(value("to")),
        cc=parse_address_list(value("cc")),
        bcc=parse_address_list(value("bcc")),
        in_reply_to=value("in-reply-to"),
        message_id=value("message-id"),
    )


def parse_message(raw: Buffer, *, with_text: bool = True) -> ParsedMessage:
    """Parse a raw message (bytes, bytearray, memoryview or mmap); never raises.

    with_text fills search_headers and search_body (see postar.mime.text), which reads the
    text parts; turn it off when only the structure is wanted.
    """
    source = _Source(raw)
    parser = _Parser(source)
    root, fields = parser.part(0, source.size, digest=False, depth=0)
    parsed = ParsedMessage(
        size=source.size,
        envelope=envelope(fields),
        root=root,
        defects=tuple(parser.defects),
    )
    if with_text:
        fill_search_text(parsed, source.slice, fields)
    return parsed
