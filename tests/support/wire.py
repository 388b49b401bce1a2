"""Raw-socket clients and checks for the abuse, crash-safety and memory tests.

smtplib and poplib refuse to send what a hostile client sends (NUL bytes, 10 MB lines,
pipelined commands across STARTTLS), so these tests speak the protocols byte by byte.
Every read has a deadline, so a server that stops answering fails a test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import poplib
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import DOMAIN, PASSWORD, PostarServer

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
READ_TIMEOUT = 15.0


class Closed(Exception):
    """The server closed the connection (EOF or reset) before a full reply arrived."""


def client_tls_context() -> ssl.SSLContext:
    # The server's certificate is self-signed on first start; these tests check what
    # crosses the upgraded channel, not the certificate.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class LineClient:
    """A socket with its own read buffer; lines end in LF (CR kept out of the result)."""

    def __init__(self, port: int, timeout: float = READ_TIMEOUT) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout
        )
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line = bytes(self.buf[:nl]).rstrip(b"\r")
                del self.buf[: nl + 1]
                return line
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise Closed(str(exc)) from exc
            if not chunk:
                raise Closed(f"EOF with {len(self.buf)} bytes of a partial line")
            self.buf += chunk

    def at_eof(self, timeout: float = READ_TIMEOUT) -> bool:
        """True if the server closes its side (after any bytes still buffered) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(READ_TIMEOUT)

    def nothing_pending(self, wait: float = 0.3) -> bool:
        """No further bytes arrive within `wait` seconds (an unanswered extra reply would)."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(READ_TIMEOUT)
        self.buf += chunk
        return False

    def wrap_tls(self) -> None:
        """Start TLS on the socket as it is: bytes the server sent in clear are not read."""
        assert not self.buf, f"cleartext left unread before TLS: {bytes(self.buf)!r}"
        self.sock = client_tls_context().wrap_socket(self.sock, server_hostname="localhost")

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0), the way a crashed client or a cut cable looks."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
        self.sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class SMTPWire(LineClient):
    def reply(self) -> Reply:
        """One SMTP reply, multi-line ones joined (RFC 5321 4.2.1: "250-" continues)."""
        lines: list[str] = []
        while True:
            raw = self.line()
            text = raw.decode("utf-8", "replace")
            assert len(raw) >= 3 and raw[:3].isdigit(), f"not an SMTP reply: {raw[:200]!r}"
            lines.append(text)
            if raw[3:4] != b"-":
                return Reply(int(raw[:3]), tuple(lines))

    def cmd(self, line: bytes | str) -> Reply:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    @classmethod
    def open(cls, port: int, ehlo: bool = True) -> SMTPWire:
        client = cls(port)
        greeting = client.reply()
        assert greeting.code == 220, greeting
        if ehlo:
            reply = client.cmd("EHLO client.test")
            assert reply.code == 250, reply
        return client


class POP3Wire(LineClient):
    def status(self) -> bytes:
        line = self.line()
        assert line.startswith((b"+OK", b"-ERR", b"+ ")), f"not a POP3 status: {line[:200]!r}"
        return line

    def cmd(self, line: bytes | str) -> bytes:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.status()

    @classmethod
    def open(cls, port: int) -> POP3Wire:
        client = cls(port)
        greeting = client.status()
        assert greeting.startswith(b"+OK"), greeting
        return client

    def login(self, user: str = ALICE, password: str = PASSWORD) -> None:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        reply = self.cmd(f"PASS {password}")
        assert reply.startswith(b"+OK"), reply


def send_bulk(client: LineClient, total: int, chunk: bytes) -> int:
    """Send `total` bytes of repeated `chunk`; stop quietly if the server hangs up first.

    Returns how many bytes the kernel took. A server that closes a flooding client is doing
    its job, so a reset here is an outcome to check, not a test error.
    """
    sent = 0
    try:
        while sent < total:
            piece = chunk[: total - sent]
            client.sock.sendall(piece)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


class Sender(threading.Thread):
    """Sends bytes from a thread, so the test can read replies while a flood goes out."""

    def __init__(self, client: LineClient, data: bytes, piece: int = 65536) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.data = data
        self.piece = piece
        self.sent = 0
        self.error: OSError | None = None

    def run(self) -> None:
        view = memoryview(self.data)
        try:
            while self.sent < len(view):
                self.client.sock.sendall(view[self.sent : self.sent + self.piece])
                self.sent += min(self.piece, len(view) - self.sent)
        except OSError as exc:
            self.error = exc


# ---- the checks every abuse test makes ------------------------------------------------------


def unique_message(tag: str, size: int = 0) -> tuple[str, bytes]:
    """A message with a unique Message-ID-like marker, and its body (CRLF lines)."""
    marker = f"{tag}-{uuid.uuid4().hex}"
    filler = b"".join(b"filler line %d\r\n" % i for i in range(size // 16 + 1))[:size]
    body = (
        f"From: sender@remote.test\r\nSubject: {tag}\r\nX-Test-Id: {marker}\r\n\r\n".encode()
        + filler
        + f"marker {marker}\r\n".encode()
    )
    return marker, body


def deliver_message(server: PostarServer, rcpt: str, body: bytes) -> None:
    """One complete transaction from another session (smtplib), which must be accepted."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=READ_TIMEOUT) as smtp:
        refused = smtp.sendmail("sender@remote.test", [rcpt], body)
    assert not refused, refused


def deliver(server: PostarServer, rcpt: str = BOB, tag: str = "other") -> str:
    """Deliver a fresh unique message; returns its marker."""
    marker, body = unique_message(tag)
    deliver_message(server, rcpt, body)
    return marker


def fetch_all(server: PostarServer, user: str = ALICE) -> list[bytes]:
    """Every message in the user's INBOX, as POP3 RETR gives it (dot-unstuffed, CRLF lines)."""
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=READ_TIMEOUT)
    try:
        pop.user(user)
        pop.pass_(PASSWORD)
        count, _size = pop.stat()
        messages = []
        for i in range(1, count + 1):
            _resp, lines, _octets = pop.retr(i)
            messages.append(b"\r\n".join(lines) + b"\r\n")
        return messages
    finally:
        pop.quit()


def stat(server: PostarServer, user: str = ALICE) -> int:
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=READ_TIMEOUT)
    try:
        pop.user(user)
        pop.pass_(PASSWORD)
        count, _size = pop.stat()
        return int(count)
    finally:
        pop.quit()


def other_session_works(server: PostarServer) -> None:
    """Another client completes a transaction and finds the message: the server is still fine."""
    marker = deliver(server, BOB, tag="witness")
    assert any(marker.encode() in m for m in fetch_all(server, BOB)), "witness not delivered"


def assert_no_traceback(server: PostarServer) -> None:
    log = server.log()
    assert "Traceback" not in log, log[-4000:]


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def all_closed(server: PostarServer) -> bool:
    """The server has finished with every connection made so far, the harness's readiness
    probes included (one per port: logged as opened and closed, as refused by the limits, or
    as a failed TLS handshake on the implicit-TLS ports)."""
    log = server.log()
    opened, closed = log.count("conn.open "), log.count("conn.close ")
    failed = sum(
        log.count(event)
        for event in ("tls.handshake_failed ", "conn.setup_failed ", "conn.refused ")
    )
    return opened == closed and closed + failed >= len(server.ports)


@contextlib.contextmanager
def running_server(
    root: Path, extra_config: str = "", users: tuple[str, ...] = (ALICE, BOB)
) -> Iterator[PostarServer]:
    """A started server with example.test and the given users; stopped cleanly afterwards.

    The stop must succeed with exit code 0 and the log must hold no traceback: an abuse test
    that leaves the server crashed or half-broken has found a bug even if its replies looked
    right.
    """
    server = PostarServer(root, extra_config=extra_config)
    server.add_domain(DOMAIN)
    for user in users:
        server.add_user(user)
    server.start()
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"server exited with {code}:\n{server.log()[-3000:]}"
        assert_no_traceback(server)
