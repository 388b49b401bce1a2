"""Minimal, fast SMTP and POP3 clients for moving thousands of messages in a test.

smtplib and poplib take a round trip per command; these pipeline (RFC 2920, RFC 2449) so that
a corpus of 6,000 messages moves in seconds of client time. They do only what a bulk test
needs, and check every reply: any unexpected answer raises BulkProtocolError with it.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Iterator

_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


class BulkProtocolError(Exception):
    """The server answered something the bulk client did not expect."""


class _LineReader:
    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb", buffering=1 << 16)

    def line(self) -> bytes:
        # A megabyte is far above any reply or stored line; a line longer than that means
        # the stream is broken, and readline must not grow without bound.
        data = self.file.readline(1 << 20)
        if not data:
            raise BulkProtocolError("connection closed by the server")
        return data


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 4.5.2: a line starting with "." gets one more; the message ends with CRLF."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return _LEADING_DOT.sub(b"..", message)


class BulkSMTP:
    """One SMTP connection sending many messages: MAIL, RCPT and DATA go in one write, then
    the dot-stuffed content (two round trips per message)."""

    def __init__(self, host: str, port: int, *, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = _LineReader(self.sock)
        self._expect(b"220")
        self.sock.sendall(b"EHLO bulk.remote.test\r\n")
        features = self._expect(b"250")
        if not any(f[4:].upper().startswith(b"PIPELINING") for f in features):
            raise BulkProtocolError("the server does not offer PIPELINING")

    def _reply(self) -> list[bytes]:
        lines = []
        while True:
            line = self.reader.line()
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return lines

    def _expect(self, code: bytes) -> list[bytes]:
        lines = self._reply()
        if not lines[-1].startswith(code):
            raise BulkProtocolError(f"expected {code.decode()}, got {lines!r}")
        return lines

    def send(self, sender: str, recipients: Iterable[str], message: bytes) -> bytes:
        """Deliver one message (CRLF line ends); returns the final 250 reply line."""
        rcpts = list(recipients)
        commands = [f"MAIL FROM:<{sender}> BODY=8BITMIME\r\n".encode()]
        commands += [f"RCPT TO:<{r}>\r\n".encode() for r in rcpts]
        self.sock.sendall(b"".join(commands) + b"DATA\r\n")
        self._expect(b"250")
        for _ in rcpts:
            self._expect(b"250")
        self._expect(b"354")
        self.sock.sendall(dot_stuff(message) + b".\r\n")
        return self._expect(b"250")[-1]

    def close(self) -> None:
        try:
            self.sock.sendall(b"QUIT\r\n")
            self._reply()
        except (OSError, BulkProtocolError):
            pass
        self.sock.close()


class BulkPOP3:
    """One POP3 session retrieving many messages with pipelined RETR commands."""

    WINDOW = 32  # commands in flight: enough to hide round trips, few enough to never stall

    def __init__(
        self, host: str, port: int, user: str, password: str, *, timeout: float = 60.0
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = _LineReader(self.sock)
        self._ok()
        self.sock.sendall(f"USER {user}\r\nPASS {password}\r\n".encode())
        self._ok()
        self._ok()

    def _ok(self) -> bytes:
        line = self.reader.line()
        if not line.startswith(b"+OK"):
            raise BulkProtocolError(f"expected +OK, got {line!r}")
        return line

    def stat(self) -> int:
        self.sock.sendall(b"STAT\r\n")
        return int(self._ok().split()[1])

    def _multiline(self) -> bytes:
        """The body of a multi-line reply, dot-unstuffed (RFC 1939 section 3)."""
        parts: list[bytes] = []
        while True:
            line = self.reader.line()
            if line == b".\r\n":
                return b"".join(parts)
            parts.append(line[1:] if line.startswith(b".") else line)

    def retrieve_all(self, count: int) -> Iterator[tuple[int, bytes]]:
        """(number, message) for messages 1..count, in order."""
        sent = 0
        for number in range(1, count + 1):
            while sent < min(count, number - 1 + self.WINDOW):
                sent += 1
                self.sock.sendall(f"RETR {sent}\r\n".encode())
            self._ok()
            yield number, self._multiline()

    def quit(self) -> None:
        self.sock.sendall(b"QUIT\r\n")
        self._ok()
        self.sock.close()
