"""One accepted connection, as a protocol handler sees it.

A handler is ``async def handle(conn: Connection) -> None``: it loops ``await conn.recv()``,
feeds the bytes to its sans-I/O core, ``conn.write()``s the replies, ``await conn.drain()``s,
calls ``await conn.start_tls()`` on STARTTLS/STLS, and returns when the session is over.

Theory of operation (the invariants every change here must keep):

- Connection is the asyncio.Protocol itself and owns its read buffer (no StreamReader): the
  stdlib's StreamWriter.start_tls() leaves the reader stale (cpython#152431) and start_tls can
  lose or misplace buffered bytes (cpython#142352, uvloop#707).
- STARTTLS injection: every plaintext byte buffered when start_tls() is called is discarded,
  never fed to the handler after the upgrade (CVE-2011-0411 and its kin). The handler must drop
  what its own core still buffers too.
- Bounded memory. Reading pauses once the buffer holds READ_HIGH_WATER bytes and resumes at
  READ_LOW_WATER, so a peer that sends faster than the handler reads fills the kernel's socket
  buffer, not ours (at most one more transport read, 256 KiB, can land after the pause).
  Writing: the transport pauses us above WRITE_HIGH_WATER and drain() waits; a peer that reads
  nothing for `write_timeout` seconds is aborted, so its replies cannot pile up.
- Timeouts are per wait, not per session: recv() raises IdleTimeout after `idle_timeout`
  seconds without input, drain() raises WriteTimeout after `write_timeout` seconds without
  the peer reading. close() gives the peer `write_timeout` seconds to take the last bytes.
- One reader: recv() is not re-entrant. write() and drain() may be called from other tasks
  (an IMAP IDLE notifier), as long as the handler owns the ordering of what it writes.
- Small: __slots__, an empty bytearray while idle, timers only while waiting.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import secrets
import ssl
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from .proxy import ProxyInfo

READ_HIGH_WATER = 64 * 1024
READ_LOW_WATER = 16 * 1024
WRITE_HIGH_WATER = 64 * 1024
DEFAULT_RECV_SIZE = 64 * 1024
# How long close() keeps a plain TCP connection half-open, dropping input, so our last bytes
# reach a peer that is still sending (see close()).
LINGER_SECONDS = 2.0

# Connection ids: a random 32-bit start, then a counter, so ids are unique within a process
# and unlikely to repeat across restarts; 8 hex digits stay short in every log line.
_conn_ids = itertools.count(secrets.randbits(32))


def new_conn_id() -> str:
    return f"{next(_conn_ids) & 0xFFFFFFFF:08x}"


@functools.lru_cache(maxsize=4096)  # once per accepted connection, mostly the same few peers
def normalize_ip(ip: str) -> str:
    """Canonical text of an address; an IPv4-mapped IPv6 address becomes plain IPv4."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


class IdleTimeout(TimeoutError):
    """The peer sent nothing for the role's idle timeout; the handler may say goodbye."""


class WriteTimeout(TimeoutError):
    """The peer read none of our output for `write_timeout` seconds; the connection is aborted."""


class ShuttingDown(Exception):
    """The server is stopping and no input is pending: send the protocol's goodbye and return.

    Raised by recv() only when it would otherwise wait, so a command already received is
    still answered.
    """


class TLSHandshakeError(ConnectionError):
    """The TLS handshake after STARTTLS failed or timed out; the connection is closed."""


class Connection(asyncio.Protocol):
    """A stream connection with an owned, bounded read buffer. See the module docstring."""

    __slots__ = (
        "_buffer",
        "_close_timer",
        "_closed_waiter",
        "_closing",
        "_drain_waiters",
        "_eof",
        "_handshake_timeout",
        "_loop",
        "_lost",
        "_made_waiter",
        "_read_high",
        "_read_low",
        "_read_paused",
        "_recv_waiter",
        "_shutting_down",
        "_ssl_context",
        "_transport",
        "_write_high",
        "_write_paused",
        "conn_id",
        "idle_timeout",
        "local_ip",
        "local_port",
        "peer_ip",
        "peer_port",
        "proxy",
        "role",
        "tls_cipher",
        "tls_version",
        "write_timeout",
    )

    def __init__(
        self,
        role: str,
        *,
        idle_timeout: float | None,
        write_timeout: float | None,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float = 30.0,
        peer: tuple[str, int] | None = None,
        proxy: ProxyInfo | None = None,
        conn_id: str | None = None,
        read_high_water: int = READ_HIGH_WATER,
        read_low_water: int = READ_LOW_WATER,
        write_high_water: int = WRITE_HIGH_WATER,
    ) -> None:
        """`peer` overrides the socket's peer address (the client named by a PROXY header)."""
        if not 0 <= read_low_water <= read_high_water:
            raise ValueError("need 0 <= read_low_water <= read_high_water")
        self.role = role
        self.conn_id = conn_id or new_conn_id()
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.proxy = proxy
        self.peer_ip = normalize_ip(peer[0]) if peer else ""
        self.peer_port = peer[1] if peer else 0
        self.local_ip = ""
        self.local_port = 0
        self.tls_version: str | None = None
        self.tls_cipher: str | None = None
        self._ssl_context = ssl_context
        self._handshake_timeout = handshake_timeout
        self._read_high = read_high_water
        self._read_low = read_low_water
        self._write_high = write_high_water
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._lost = False
        self._closing = False
        self._read_paused = False
        self._write_paused = False
        self._shutting_down = False
        self._recv_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._closed_waiter: asyncio.Future[None] | None = None
        self._made_waiter: asyncio.Future[None] | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------------- what handlers read

    @property
    def tls_active(self) -> bool:
        return self.tls_version is not None

    @property
    def can_start_tls(self) -> bool:
        """True if STARTTLS may be offered: a context exists and TLS is not on yet."""
        return self._ssl_context is not None and not self.tls_active

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.peer_ip).is_loopback
        except ValueError:
            return False

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def closed(self) -> bool:
        """The transport is gone or going: nothing written now reaches the peer."""
        return self._lost or self._closing

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned by recv()."""
        return len(self._buffer)

    @property
    def reading_paused(self) -> bool:
        return self._read_paused

    @property
    def write_buffer_size(self) -> int:
        t = self._transport
        return 0 if t is None or self._lost else t.get_write_buffer_size()

    def __repr__(self) -> str:
        return f"<Connection {self.conn_id} {self.role} {self.peer_ip}:{self.peer_port}>"

    # ----------------------------------------------------------------- the handler's API

    async def recv(self, max_bytes: int = DEFAULT_RECV_SIZE) -> bytes:
        """Up to `max_bytes` received bytes; b"" once the peer has closed its side.

        Raises IdleTimeout after `idle_timeout` seconds without input, and ShuttingDown when
        the server stops while nothing is pending.
        """
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if not self._buffer:
            if self._eof or self._closing:
                return b""
            if self._shutting_down:
                raise ShuttingDown
            if self._recv_waiter is not None:
                raise RuntimeError("recv() is already waiting in another task")
            loop = self._get_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._recv_waiter = waiter
            timer = (
                loop.call_later(self.idle_timeout, self._idle_expired, waiter)
                if self.idle_timeout is not None
                else None
            )
            try:
                await waiter
            finally:
                if timer is not None:
                    timer.cancel()
                self._recv_waiter = None
            if not self._buffer:
                return b""
        buf = self._buffer
        if len(buf) <= max_bytes:
            data = bytes(buf)
            # A fresh empty buffer gives back the capacity a burst made the old one grow to.
            self._buffer = bytearray()
        else:
            data = bytes(buf[:max_bytes])
            del buf[:max_bytes]
        if self._read_paused and len(self._buffer) <= self._read_low and not self._lost:
            self._read_paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        """Queue bytes for the peer; follow with ``await drain()`` to respect back-pressure.

        Bytes written after the connection is lost or closing are dropped; drain() reports it.
        """
        if self._lost or self._closing or not data:
            return
        assert self._transport is not None, "write() before the connection was made"
        self._transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark.

        Raises ConnectionResetError if the connection is gone, WriteTimeout (after aborting
        the connection) if the peer reads nothing for `write_timeout` seconds.
        """
        if self._lost:
            raise ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        loop = self._get_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        timer = (
            loop.call_later(self.write_timeout, self._write_expired, waiter)
            if self.write_timeout is not None
            else None
        )
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if self._drain_waiters is not None and waiter in self._drain_waiters:
                self._drain_waiters.remove(waiter)

    async def start_tls(self) -> None:
        """Upgrade to TLS in place (STARTTLS, STLS), after the "go ahead" reply was written.

        Discards every plaintext byte received so far, then runs the handshake with the
        listener's handshake timeout; raises TLSHandshakeError (connection closed) on failure.
        """
        if self.tls_active:
            raise RuntimeError("TLS is already active")
        if self._ssl_context is None:
            raise RuntimeError(f"no TLS context on the {self.role} listener")
        if self._lost or self._closing or self._transport is None:
            raise ConnectionResetError("connection lost")
        transport = self._transport
        # Pause before dropping the buffer, so no plaintext byte can slip in between the drop
        # and the moment the TLS layer owns the socket (start_tls resumes reading itself).
        transport.pause_reading()
        self._buffer = bytearray()
        self._read_paused = False
        # The plaintext transport's write-pause state no longer applies once TLS wraps it.
        self._write_paused = False
        loop = self._get_loop()
        try:
            tls_transport = await loop.start_tls(
                transport,
                self,
                self._ssl_context,
                server_side=True,
                ssl_handshake_timeout=self._handshake_timeout,
            )
        except (OSError, ssl.SSLError, EOFError) as exc:
            # asyncio's SSL layer does not report connection_lost for a handshake that never
            # finished, so mark the connection lost here (wait_closed() must not hang).
            transport.abort()
            self.connection_lost(exc)
            raise TLSHandshakeError(f"TLS handshake failed: {exc!r}") from exc
        except BaseException:
            # Cancelled mid-handshake (server stopping): the same bookkeeping, then re-raise.
            transport.abort()
            self.connection_lost(None)
            raise
        if tls_transport is None or self._lost:
            self.connection_lost(None)
            raise TLSHandshakeError("connection lost during the TLS handshake")
        self._transport = tls_transport
        tls_transport.set_write_buffer_limits(high=self._write_high)
        self._record_tls(tls_transport)
        self._wake_drainers(None)

    def close(self) -> None:
        """Close after the queued bytes are sent; aborts if the peer will not take them."""
        if self._lost or self._closing or self._transport is None:
            return
        self._closing = True
        self._wake_recv()
        transport = self._transport
        if not self._eof and transport.can_write_eof():
            # Lingering close (Apache's lingering_close): closing a socket with unread input
            # makes the kernel send RST and drop what it has not yet sent, so a pipelining
            # client would lose our last replies (the 421 ending a command flood). Send FIN
            # after the queued bytes, drop further input, and close once the peer closes or
            # LINGER_SECONDS pass. TLS transports cannot half-close; they close at once.
            if self._read_paused:
                self._read_paused = False
                transport.resume_reading()
            try:
                transport.write_eof()
            except OSError:
                # ENOTCONN: the peer's reset arrived before our FIN; nothing is left to send
                # or to linger for.
                transport.abort()
                return
            self._close_timer = self._get_loop().call_later(LINGER_SECONDS, self._end_linger)
            return
        self._end_linger()

    def _end_linger(self) -> None:
        transport = self._transport
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if transport is None or self._lost:
            return
        transport.close()
        if self.write_timeout is not None and not self._lost:
            # A peer that never reads would keep a closing transport (and its buffer) forever.
            self._close_timer = self._get_loop().call_later(self.write_timeout, transport.abort)

    def abort(self) -> None:
        """Drop the connection at once, discarding queued output."""
        if self._lost or self._transport is None:
            return
        self._closing = True
        self._transport.abort()

    async def wait_closed(self) -> None:
        if self._lost:
            return
        if self._closed_waiter is None:
            self._closed_waiter = self._get_loop().create_future()
        await asyncio.shield(self._closed_waiter)

    def request_shutdown(self) -> None:
        """Called by the listener on stop: wake an idle recv() with ShuttingDown."""
        self._shutting_down = True
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done() and not self._buffer:
            waiter.set_exception(ShuttingDown())

    # ----------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the Transport interface without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        self._transport.set_write_buffer_limits(high=self._write_high)
        if not self.peer_ip:
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple) and len(peer) >= 2:
                self.peer_ip = normalize_ip(str(peer[0]))
                self.peer_port = int(peer[1])
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple) and len(local) >= 2:
            self.local_ip = normalize_ip(str(local[0]))
            self.local_port = int(local[1])
        self._record_tls(transport)
        self._resolve_made()

    def data_received(self, data: bytes) -> None:
        if self._lost or self._closing:
            return  # closing: nobody reads it any more (and lingering must not buffer it)
        self._buffer += data
        if not self._read_paused and len(self._buffer) >= self._read_high:
            self._read_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        self._wake_recv()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_recv()
        if self._closing:
            self._end_linger()  # the peer has taken our last bytes and closed: so do we
            return True
        # Keep our side open: a client may half-close after QUIT and still expect the reply.
        # TLS has no half-close (asyncio's SSL layer warns and closes), so say so only on TCP.
        return self.tls_version is None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._eof = True
        self._wake_recv()
        self._wake_drainers(ConnectionResetError("connection lost"))
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._closed_waiter is not None and not self._closed_waiter.done():
            self._closed_waiter.set_result(None)
        self._resolve_made()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainers(None)

    # ----------------------------------------------------------------- internals

    async def wait_made(self) -> None:
        """For the listener: wait until connection_made (or connection_lost) has run.

        asyncio calls connection_made before connect_accepted_socket() returns; uvloop
        schedules it for the next loop iteration.
        """
        if self._transport is not None or self._lost:
            return
        if self._made_waiter is None:
            self._made_waiter = self._get_loop().create_future()
        await self._made_waiter

    def _resolve_made(self) -> None:
        waiter = self._made_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _record_tls(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        self.tls_version = ssl_object.version() or "TLS"
        cipher = ssl_object.cipher()
        self.tls_cipher = cipher[0] if cipher else None

    def _wake_recv(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drainers(self, exc: Exception | None) -> None:
        waiters = self._drain_waiters
        if not waiters:
            return
        self._drain_waiters = None
        for waiter in waiters:
            if waiter.done():
                continue
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def _idle_expired(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(IdleTimeout(f"no input for {self.idle_timeout} s"))

    def _write_expired(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        waiter.set_exception(WriteTimeout(f"peer read nothing for {self.write_timeout} s"))
        self.abort()
