"""The body of a RETR/TOP answer (RFC 1939 section 3), encoded chunk by chunk.

- Dot-stuffing: every line starting with "." gets one more "." in front. A line starts after
  any LF, so even a bare LF in a stored message cannot make a client see an early terminator.
- The terminator is CRLF "." CRLF; a message not ending in a line break gets a CRLF first.
- TOP n (RFC 1939 section 7): the header, the blank line after it, then n body lines; a message
  without a blank line is all header and is sent whole.
- Chunks are never joined: each is copied once (by bytes.replace, only where a dot needs
  stuffing; otherwise passed through), so a 50 MB message costs one chunk of memory at a time.
"""

from __future__ import annotations

from postar.mime.dotlines import DOT_LINE


def dot_stuff(chunk: bytes, at_line_start: bool) -> bytes:
    """chunk with a "." added before every line that starts with "."; at_line_start: the
    chunk's first byte starts a line."""
    out = chunk.replace(b"\n.", b"\n..") if DOT_LINE.search(chunk) else chunk
    if at_line_start and chunk[:1] == b".":
        out = b"." + out
    return out


def terminator(data: bytes) -> bytes:
    """What ends an answer whose body ends with data: CRLF "." CRLF, after a CRLF of our own
    if the message does not end with a line break."""
    return b".\r\n" if not data or data.endswith(b"\n") else b"\r\n.\r\n"


class MessageEncoder:
    def __init__(self, top_lines: int | None = None) -> None:
        if top_lines is not None and top_lines < 0:
            raise ValueError("top_lines must be >= 0")
        self.is_top = top_lines is not None
        self._remaining = top_lines
        self._in_header = top_lines is not None
        self._line_has_content = False  # TOP: the current line holds more than "\r"
        self._at_line_start = True
        self.done = False  # TOP: all wanted lines were encoded; the rest is not needed

    def feed(self, chunk: bytes) -> bytes:
        if self.done or not chunk:
            return b""
        if self._remaining is not None:
            cut = self._top_cut(chunk)
            if cut is not None:
                chunk = chunk[:cut]
                self.done = True
        out = dot_stuff(chunk, self._at_line_start)
        self._at_line_start = chunk.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        return b".\r\n" if self._at_line_start else b"\r\n.\r\n"

    def _top_cut(self, chunk: bytes) -> int | None:
        """Index just past the last line TOP wants, or None if that line is not in chunk."""
        assert self._remaining is not None
        pos = 0
        while True:
            nl = chunk.find(b"\n", pos)
            if nl < 0:
                if chunk[pos:].strip(b"\r"):
                    self._line_has_content = True
                return None
            if self._in_header:
                blank = not self._line_has_content and not chunk[pos:nl].strip(b"\r")
                if blank:
                    self._in_header = False
                    if self._remaining == 0:
                        return nl + 1
            else:
                self._remaining -= 1
                if self._remaining == 0:
                    return nl + 1
            self._line_has_content = False
            pos = nl + 1
