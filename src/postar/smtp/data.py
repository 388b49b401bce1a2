"""Message content readers: DATA (dot-stuffed text, RFC 5321 4.5.2) and BDAT chunks (RFC 3030).

Both are incremental: each call takes the bytes at hand, returns the content they decode to and
how many input bytes it used, and keeps in its own state only which kind of line start it is at
(or one pending CR), so memory stays bounded by what one `receive_data()` call brought.

SMTP smuggling: only CRLF "." CRLF ends DATA. A bare LF or bare CR is a line end for the content
(turned into CRLF, or flagged for rejection) but never the start of an end-of-data marker, so
LF "." LF, CRLF "." LF, LF "." CRLF and CR "." CR are all content. A lax receiver that took one
of those for the end would read the bytes after it as new commands: a second message nobody
authenticated.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

_CR, _LF, _DOT = 13, 10, 46


class LineStart(enum.Enum):
    MIDDLE = 0  # inside a line
    AFTER_CRLF = 1  # at a line start reached by a real CRLF: ".\r\n" here ends the data
    AFTER_BARE = 2  # at a line start reached by a bare CR or LF: never an end marker


@dataclass(slots=True)
class Scan:
    content: bytes  # decoded content, CRLF line ends
    consumed: int  # input bytes used; the rest must be offered again with more data
    ended: bool  # the CRLF.CRLF terminator was consumed
    bare_newline: bool  # a bare CR or LF was seen in this piece


class DotReader:
    """Decode DATA content: unstuff dots, normalise bare line ends, find CRLF.CRLF."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        # The DATA command line itself ended in CRLF, so the content starts at a line start:
        # a lone "." right away is an empty message (RFC 5321 4.1.1.4).
        self.state = LineStart.AFTER_CRLF

    def feed(self, buf: bytes | bytearray) -> Scan:
        """Decode what buf holds. Linear in len(buf) whatever its line ends: each byte is
        looked at a bounded number of times (a client sending a bare LF on every line of a big
        message must not cost quadratic CPU)."""
        out = bytearray()
        n = len(buf)
        i = 0
        bare = False
        state = self.state
        # [i, dirty_end) is known to hold a bare CR or LF: decode it line by line, with the
        # next CR and LF positions cached so no byte is searched twice.
        dirty_end = next_cr = next_lf = -1
        while i < n:
            if state is not LineStart.MIDDLE:
                if buf[i] == _DOT:
                    if i + 1 >= n:
                        break  # need the next byte to tell "." CRLF from a stuffed dot
                    if state is LineStart.AFTER_CRLF and buf[i + 1] == _CR:
                        if i + 2 >= n:
                            break
                        if buf[i + 2] == _LF:
                            # RFC 5321 4.1.1.4: CRLF "." CRLF, the end of mail data
                            self.state = LineStart.AFTER_CRLF
                            return Scan(bytes(out), i + 3, True, bare)
                    # RFC 5321 4.5.2: a line starting with "." had one more "." put in front
                    # by the client; drop the first.
                    i += 1
                state = LineStart.MIDDLE
                continue
            if i >= dirty_end:
                # Fast path: everything up to the next CRLF "." is ordinary text if it has no
                # bare CR or LF, and can be copied in one piece.
                p = buf.find(b"\r\n.", i)
                end = p if p != -1 else n
                if p == -1 and end > i and buf[end - 1] == _CR:
                    end -= 1  # a trailing CR waits for its LF
                region = buf[i:end]
                crlf = region.count(b"\r\n")
                if region.count(b"\r") == crlf and region.count(b"\n") == crlf:
                    out += region
                    i = end
                    if p != -1:
                        out += b"\r\n"
                        i = p + 2
                        state = LineStart.AFTER_CRLF
                    elif region.endswith(b"\r\n"):
                        state = LineStart.AFTER_CRLF
                    if i == end and p == -1:
                        break
                    continue
                dirty_end = end
            # Slow path: one line of the dirty region. A CR before dirty_end always has its
            # next byte in buf: the region stops before a trailing CR and before CRLF ".".
            if next_cr < i:
                next_cr = buf.find(b"\r", i, dirty_end)
                if next_cr == -1:
                    next_cr = dirty_end
            if next_lf < i:
                next_lf = buf.find(b"\n", i, dirty_end)
                if next_lf == -1:
                    next_lf = dirty_end
            e = min(next_cr, next_lf)
            if e >= dirty_end:
                out += buf[i:dirty_end]  # the line goes on past the region
                i = dirty_end
                continue
            if e == next_cr and buf[e + 1] == _LF:
                out += buf[i : e + 2]
                i = e + 2
                state = LineStart.AFTER_CRLF
                continue
            # A bare CR or LF: a line end for the content, turned into CRLF.
            out += buf[i:e]
            out += b"\r\n"
            i = e + 1
            bare = True
            state = LineStart.AFTER_BARE
        self.state = state
        return Scan(bytes(out), i, False, bare)


class ChunkNormalizer:
    """Turn bare CR and LF in BDAT content into CRLF, across chunk boundaries.

    RFC 3030 passes BDAT octets untouched, but the message still has to be a valid RFC 5322
    message with CRLF line ends unless BODY=BINARYMIME, which we do not offer; so the same
    bare-newline policy as for DATA applies.
    """

    __slots__ = ("pending_cr",)

    def __init__(self) -> None:
        self.pending_cr = False

    def feed(self, data: bytes | bytearray) -> tuple[bytes, bool]:
        """Return (normalised content, whether a bare CR or LF was seen)."""
        if self.pending_cr:
            data = b"\r" + data
            self.pending_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self.pending_cr = True  # the LF may come in the next chunk
        crlf = data.count(b"\r\n")
        if data.count(b"\r") == crlf and data.count(b"\n") == crlf:
            return bytes(data), False
        fixed = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        return bytes(fixed), True

    def finish(self) -> tuple[bytes, bool]:
        """End of the last chunk: a CR still waiting is a bare CR."""
        if self.pending_cr:
            self.pending_cr = False
            return b"\r\n", True
        return b"", False
