"""The command receiver: bytes in, typed commands out (sans-I/O, like h11's Connection).

Theory of operation
-------------------
The glue calls `receive_data(bytes)` with whatever arrived, then `next_command()` until it
returns NEED_DATA. Each call yields one of:

- a `Command`: a complete, parsed command, to execute;
- `NeedContinuation`: a synchronising literal {n} was announced and accepted; send
  "+ <text>" and keep feeding (RFC 9051 section 4.3);
- `ParseError`: answer it (tagged BAD/NO, or untagged BAD without a tag); status BYE means
  send "* BYE" and close (RFC 7888 section 4, an oversized non-synchronising literal);
- NEED_DATA: nothing more can be produced from the bytes held.

After AUTHENTICATE or IDLE the glue reads raw lines with `expect_line()` (SASL responses,
"DONE"), which shares the buffer, so bytes pipelined behind a line are never lost.

Invariants
----------
- One command is assembled at a time; bytes held are bounded by max_line_length for a line
  and by the literal limits for literal data (max_command_size for the whole command).
- A command that breaks a limit is skipped to its natural end without keeping its bytes:
  the end of the line, after reading (and dropping) any non-synchronising literal it carries.
  A synchronising literal on such a line is never invited: the answer ends the command
  (RFC 9051 section 7.5: a client aborts its command on a tagged answer instead of "+").
- A synchronising literal larger than allowed is refused without reading it (NO [TOOBIG]);
  a non-synchronising one larger than max_literal_size cannot be refused without the client
  sending it anyway, so it is a BYE [TOOBIG] (RFC 7888 section 4).
- The receiver never raises on peer input; its errors are values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

from postar.imap.codes import Code
from postar.imap.commands import Command
from postar.imap.errors import ErrorStatus, ParseError
from postar.imap.limits import LITERAL_MINUS_MAX, ImapLimits, LiteralMode
from postar.imap.parser import parse_command, read_tag
from postar.imap.reader import Literal

# RFC 9051 literal / RFC 3516 literal8 / RFC 7888 non-synchronising form, at the end of a line.
_LITERAL_RE = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")
_TAIL = 32  # bytes of a skipped line kept to spot a literal announcement at its end


class NeedData:
    """The sentinel NEED_DATA: feed more bytes."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@dataclass(frozen=True)
class NeedContinuation:
    """Send "+ text" CRLF: the client may now send the announced literal."""

    text: str = "Ready for literal data"


class _Mode(Enum):
    LINE = 1
    LITERAL = 2
    SKIP_LINE = 3
    SKIP_LITERAL = 4
    CLOSED = 5


class Receiver:
    def __init__(
        self,
        limits: ImapLimits | None = None,
        *,
        literal_mode: LiteralMode = LiteralMode.PLUS,
        binary: bool = True,
    ) -> None:
        self.limits = limits or ImapLimits()
        self.literal_mode = literal_mode
        self.binary = binary  # RFC 3516 BINARY advertised: literal8 ~{n} accepted
        # Set by the glue once UTF8=ACCEPT or IMAP4rev2 is enabled (RFC 6855, RFC 9051 5.1).
        self.utf8 = False
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no LF
        self._mode = _Mode.LINE
        self._segments: list[bytes | Literal] = []
        self._size = 0
        self._tag: str | None = None
        self._literal = bytearray()
        self._literal_left = 0
        self._literal_binary = False
        self._skip_tail = b""
        self._skip_error: ParseError | None = None
        self._fatal: ParseError | None = None

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._mode is not _Mode.CLOSED:
            self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes held: the glue may apply back-pressure on it."""
        return len(self._buf) + len(self._literal)

    def discard_buffer(self) -> bytes:
        """Drop (and return) unread bytes: after STARTTLS/COMPRESS, bytes received before the
        switch must not be taken as commands (RFC 9051 section 11.1, STARTTLS injection)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scanned = 0
        return data

    # -- output ----------------------------------------------------------------------------

    def next_command(self) -> Command | NeedContinuation | ParseError | NeedData:
        while True:
            mode = self._mode
            if mode is _Mode.CLOSED:
                return self._fatal if self._fatal is not None else NEED_DATA
            if mode is _Mode.LITERAL:
                if not self._read_literal():
                    return NEED_DATA
                continue
            if mode is _Mode.SKIP_LITERAL:
                if not self._skip_literal():
                    return NEED_DATA
                continue
            line = self._take_line()
            if line is None:
                return NEED_DATA
            result: Command | NeedContinuation | ParseError | None
            if mode is _Mode.SKIP_LINE:
                result = self._end_skipped_line(line)
            else:
                result = self._on_line(line)
            if result is not None:
                return result

    def expect_line(self) -> bytes | ParseError | NeedData:
        """One raw line without its CRLF (AUTHENTICATE responses, IDLE's DONE)."""
        line = self._take_line(raw=True)
        if line is None:
            return NEED_DATA
        if self._mode is _Mode.SKIP_LINE:
            self._finish()
            return ParseError(None, "Line too long", Code.TOOBIG)
        return line

    # -- lines -----------------------------------------------------------------------------

    def _take_line(self, *, raw: bool = False) -> bytes | None:
        """The next line, without CRLF (a bare LF is accepted too). In SKIP_LINE mode only its
        tail is returned. A line over the limit switches to SKIP_LINE; nothing is kept."""
        buf = self._buf
        lf = buf.find(b"\n", self._scanned)
        if lf < 0:
            if self._mode is _Mode.SKIP_LINE:
                self._skip_tail = (self._skip_tail + bytes(buf))[-_TAIL:]
                buf.clear()
                self._scanned = 0
            elif len(buf) > self.limits.max_line_length:
                self._start_skip(
                    ParseError(self._tag_for_error(bytes(buf[:256])), "Line too long", Code.TOOBIG)
                )
                self._skip_tail = bytes(buf[-_TAIL:])
                buf.clear()
                self._scanned = 0
            else:
                self._scanned = len(buf)
            return None
        end = lf - 1 if lf > 0 and buf[lf - 1] == 0x0D else lf
        line = bytes(buf[:end])
        del buf[: lf + 1]
        self._scanned = 0
        if self._mode is _Mode.SKIP_LINE:
            return (self._skip_tail + line)[-_TAIL:]
        if len(line) > self.limits.max_line_length and not raw:
            self._start_skip(
                ParseError(self._tag_for_error(line[:256]), "Line too long", Code.TOOBIG)
            )
            return line[-_TAIL:]
        if raw and len(line) > self.limits.max_line_length:
            self._mode = _Mode.SKIP_LINE
            return line[-_TAIL:]
        return line

    def _tag_for_error(self, first_bytes: bytes) -> str | None:
        if self._segments:
            return self._tag
        return read_tag(first_bytes)

    def _start_skip(self, error: ParseError) -> None:
        self._mode = _Mode.SKIP_LINE
        if self._skip_error is None:
            self._skip_error = error
        self._segments = []
        self._literal = bytearray()

    def _finish(self) -> None:
        self._mode = _Mode.LINE
        self._segments = []
        self._size = 0
        self._tag = None
        self._skip_tail = b""
        self._skip_error = None
        self._literal = bytearray()

    def _on_line(self, line: bytes) -> Command | NeedContinuation | ParseError | None:
        if self._mode is _Mode.SKIP_LINE:  # _take_line found the line too long
            return self._end_skipped_line(line)
        if not self._segments:
            if not line:
                return None  # RFC 9051 does not allow empty lines; ignoring them is kinder
            self._tag = read_tag(line[:256])
        self._size += len(line) + 2
        m = _LITERAL_RE.search(line)
        if m is None:
            self._segments.append(line)
            if self._size > self.limits.max_command_size:
                error = ParseError(self._tag, "Command too long", Code.TOOBIG)
                self._finish()
                return error
            segments = self._segments
            self._finish()
            return parse_command(segments, utf8=self.utf8, limits=self.limits)
        self._segments.append(line[: m.start()])
        return self._announce(int(m[2]), binary=bool(m[1]), sync=not m[3])

    def _announce(
        self, size: int, *, binary: bool, sync: bool
    ) -> NeedContinuation | ParseError | None:
        limits = self.limits
        tag = self._tag
        refusal: ParseError | None = None
        if size > limits.max_literal_size or self._size + size > limits.max_command_size:
            refusal = ParseError(tag, "Literal too large", Code.TOOBIG, ErrorStatus.NO)
        elif binary and not self.binary:
            refusal = ParseError(tag, "literal8 not supported")
        elif not sync and self.literal_mode is LiteralMode.NONE:
            refusal = ParseError(tag, "Non-synchronizing literals not supported")
        elif not sync and self.literal_mode is LiteralMode.MINUS and size > LITERAL_MINUS_MAX:
            # RFC 7888 section 5: LITERAL- allows {n+} only up to 4096 octets; a larger one is
            # read and dropped (section 4, choice 1), then a tagged BAD [TOOBIG] (a MUST for
            # APPEND). Past max_literal_size _skip_announced closes with BYE [TOOBIG] instead.
            refusal = ParseError(tag, "Non-synchronizing literal too large", Code.TOOBIG)
        if refusal is None:
            self._size += size
            self._literal_left = size
            self._literal_binary = binary
            self._literal = bytearray()
            self._mode = _Mode.LITERAL
            return NeedContinuation() if sync else None
        if sync:
            # Not invited, so never sent: the answer ends the command (RFC 9051 7.5).
            self._finish()
            return refusal
        return self._skip_announced(size, refusal)

    def _skip_announced(self, size: int, error: ParseError) -> ParseError | None:
        """The client sends a non-synchronising literal without waiting: drop it or close."""
        if size > self.limits.max_literal_size:
            # RFC 7888 section 4: reading it would cost the transfer; close with BYE [TOOBIG].
            self._fatal = ParseError(None, "Literal too large", Code.TOOBIG, ErrorStatus.BYE)
            self._mode = _Mode.CLOSED
            self._buf.clear()
            return self._fatal
        if self._skip_error is None:
            self._skip_error = error
        self._segments = []
        self._literal = bytearray()
        self._literal_left = size
        self._mode = _Mode.SKIP_LITERAL
        return None

    def _end_skipped_line(self, tail: bytes) -> ParseError | None:
        m = _LITERAL_RE.search(tail)
        error = self._skip_error or ParseError(self._tag, "Invalid command")
        if m is None or m[3] == b"":
            # End of the command (a synchronising literal here is refused by the answer).
            self._finish()
            return error
        return self._skip_announced(int(m[2]), error)

    # -- literals --------------------------------------------------------------------------

    def _read_literal(self) -> bool:
        take = min(self._literal_left, len(self._buf))
        if take:
            self._literal += self._buf[:take]
            del self._buf[:take]
            self._literal_left -= take
        if self._literal_left:
            return False
        self._segments.append(Literal(bytes(self._literal), self._literal_binary))
        self._literal = bytearray()
        self._mode = _Mode.LINE
        self._scanned = 0
        return True

    def _skip_literal(self) -> bool:
        take = min(self._literal_left, len(self._buf))
        del self._buf[:take]
        self._literal_left -= take
        if self._literal_left:
            return False
        self._mode = _Mode.SKIP_LINE
        self._skip_tail = b""
        self._scanned = 0
        return True
