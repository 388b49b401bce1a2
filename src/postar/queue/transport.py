"""The client side of one TCP connection: an owned, bounded read buffer and STARTTLS.

Why not StreamReader: the stdlib's StreamWriter.start_tls() leaves the reader stale
(cpython#152431) and start_tls() can lose or misplace buffered bytes (cpython#142352), the same
reasons net/connection.py owns its buffer on the server side. Invariants:

- STARTTLS response injection: every plaintext byte buffered when start_tls() is called is
  discarded (RFC 3207 section 6; CVE-2011-1575 and kin on the client side).
- Bounded memory: reading pauses when the buffer holds more than `max_line` + 64 KiB, and a
  line longer than `max_line` is a protocol error (a peer sending endless garbage costs us at
  most that much).
- Every wait has a timeout (RFC 5321 4.5.3.2): readline() and drain() take one each.
"""

from __future__ import annotations

import asyncio
import ssl

SLACK = 64 * 1024


class PeerProtocolError(Exception):
    """The peer broke the protocol (a line too long, garbage in a reply)."""


class ClientTransport(asyncio.Protocol):
    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._eof = False
        self._lost: Exception | None = None
        self.tls_version: str | None = None
        self.tls_cipher: str | None = None
        self.peer_cert: dict[str, object] | None = None

    @classmethod
    async def connect(
        cls, host: str, port: int, *, timeout: float, max_line: int
    ) -> ClientTransport:
        loop = asyncio.get_running_loop()
        proto = cls(max_line)
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: proto, host, port)
        return proto

    # ---- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > self.max_line + SLACK and self._transport and not self._read_paused:
            self._transport.pause_reading()
            self._read_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("connection closed by peer")
        self._eof = True
        self._wake()
        if self._drain_waiter and not self._drain_waiter.done():
            self._drain_waiter.set_exception(self._lost)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _wake(self) -> None:
        if self._waiter and not self._waiter.done():
            self._waiter.set_result(None)

    # ---- what the client calls ---------------------------------------------------------------
    @property
    def tls_active(self) -> bool:
        return self.tls_version is not None

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\n", 0, self.max_line + 1)
        if end < 0:
            return None
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        if self._read_paused and len(self._buffer) <= self.max_line:
            self._read_paused = False
            if self._transport is not None:
                self._transport.resume_reading()
        return line

    async def readline(self, timeout: float) -> bytes:
        """One line including its LF; raises TimeoutError, PeerProtocolError, ConnectionError."""
        # A line already buffered (the rest of a multi-line reply, pipelined replies that came
        # in one segment) needs no timer: most reply lines of a transaction are read this way.
        line = self._take_line()
        if line is not None:
            return line
        async with asyncio.timeout(timeout):
            while True:
                line = self._take_line()
                if line is not None:
                    return line
                if len(self._buffer) > self.max_line:
                    raise PeerProtocolError(f"reply line longer than {self.max_line} bytes")
                if self._eof:
                    raise self._lost or ConnectionResetError("connection closed by peer")
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    def write(self, data: bytes) -> None:
        if self._transport is None or self._lost is not None:
            raise self._lost or ConnectionResetError("not connected")
        self._transport.write(data)

    async def drain(self, timeout: float) -> None:
        if self._lost is not None:
            raise self._lost
        if not self._write_paused:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._drain_waiter
        finally:
            self._drain_waiter = None

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str | None, timeout: float
    ) -> None:
        assert self._transport is not None
        transport = self._transport
        transport.pause_reading()
        self._buffer.clear()  # RFC 3207 section 6: nothing from before TLS is believed
        self._read_paused = False
        self._write_paused = False
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                self,
                context,
                server_side=False,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except BaseException:
            transport.abort()
            raise
        if tls is None:
            raise ConnectionResetError("connection lost during the TLS handshake")
        self._transport = tls
        ssl_object = tls.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls_version = ssl_object.version()
            cipher = ssl_object.cipher()
            self.tls_cipher = cipher[0] if cipher else None
            self.peer_cert = ssl_object.getpeercert() or None

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
