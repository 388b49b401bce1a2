"""Connections and listeners over real loopback sockets, on asyncio and uvloop.

The handlers here are echo-like stand-ins for the protocol servers: a greeting, one reply per
line, STARTTLS, QUIT. Lines are read a byte at a time (net_helpers.read_line) so that bytes
after a line stay in the Connection's own buffer, which is what the STARTTLS injection test
must see discarded.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import random
import socket
import ssl
from pathlib import Path

import pytest
from net_helpers import make_config, port_of, read_line, running_server, wait_until

from postar.config import ListenAddress
from postar.net import (
    Connection,
    IdleTimeout,
    RoleHandler,
    Server,
    ShuttingDown,
    WriteTimeout,
)
from postar.net.connection import READ_HIGH_WATER, WRITE_HIGH_WATER
from postar.net.proxy import format_v1_header, format_v2_header

TIMEOUT = 10.0


class Echo:
    """Greets, answers "echo <line>", INFO with what the connection knows, STARTTLS, QUIT."""

    def __init__(self) -> None:
        self.conns: list[Connection] = []
        self.buffered_at_starttls: list[int] = []
        self.ran = asyncio.Event()

    async def __call__(self, conn: Connection) -> None:
        self.conns.append(conn)
        self.ran.set()
        conn.write(b"hello " + conn.conn_id.encode() + b"\r\n")
        await conn.drain()
        try:
            while True:
                line = (await read_line(conn)).rstrip(b"\r\n")
                if line == b"" and conn.buffered == 0 and conn.closed:
                    return
                if line == b"STARTTLS":
                    self.buffered_at_starttls.append(conn.buffered)
                    conn.write(b"ready\r\n")
                    await conn.drain()
                    await conn.start_tls()
                    continue
                if line == b"QUIT":
                    conn.write(b"bye\r\n")
                    await conn.drain()
                    return
                if line == b"INFO":
                    info = (
                        f"{conn.peer_ip} {conn.peer_port} {conn.local_port} "
                        f"{conn.tls_version} {conn.is_loopback} {conn.role}\r\n"
                    )
                    conn.write(info.encode())
                elif line == b"SLOW":
                    await asyncio.sleep(0.3)
                    conn.write(b"done\r\n")
                elif not line:
                    return  # EOF
                else:
                    conn.write(b"echo " + line + b"\r\n")
                await conn.drain()
        except ShuttingDown:
            conn.write(b"bye shutting down\r\n")
            await conn.drain()
        except IdleTimeout:
            conn.write(b"timeout\r\n")
            await conn.drain()


async def open_client(
    port: int, host: str = "127.0.0.1", ssl_ctx: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(
        asyncio.open_connection(
            host, port, ssl=ssl_ctx, server_hostname="localhost" if ssl_ctx else None
        ),
        TIMEOUT,
    )


async def line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), TIMEOUT)


async def at_eof(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    except ConnectionResetError:
        return True


# ----------------------------------------------------------------------------- basics


async def test_recv_write_and_connection_facts(tmp_path: Path) -> None:
    echo = Echo()
    async with running_server(make_config(tmp_path), {"smtp": echo}) as server:
        port = port_of(server, "smtp")
        reader, writer = await open_client(port)
        greeting = await line(reader)
        assert greeting.startswith(b"hello ") and len(greeting.strip()) == len("hello ") + 8
        writer.write(b"one\r\ntwo\r\n")
        assert await line(reader) == b"echo one\r\n"
        assert await line(reader) == b"echo two\r\n"
        writer.write(b"INFO\r\n")
        client_port = writer.get_extra_info("sockname")[1]
        assert await line(reader) == f"127.0.0.1 {client_port} {port} None True smtp\r\n".encode()
        writer.write(b"QUIT\r\n")
        assert await line(reader) == b"bye\r\n"
        assert await at_eof(reader)
        writer.close()
        await wait_until(lambda: server.connection_count == 0)
        assert server.limiter.count == 0
        ids = {c.conn_id for c in echo.conns}
        assert len(ids) == len(echo.conns)


async def test_ipv6_listener(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    async with running_server(make_config(tmp_path), {"pop3": Echo()}, host="::1") as server:
        reader, writer = await open_client(port_of(server, "pop3"), host="::1")
        await line(reader)
        writer.write(b"INFO\r\n")
        assert (await line(reader)).startswith(b"::1 ")
        writer.close()


async def test_taken_port_names_the_listener_and_binds_nothing(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    server = Server(
        make_config(tmp_path),
        {"imap": Echo(), "pop3": Echo()},
        listen={"imap": ListenAddress("127.0.0.1", 0), "pop3": ListenAddress("127.0.0.1", port)},
    )
    try:
        with pytest.raises(OSError, match=f"cannot listen for pop3 on 127.0.0.1:{port}: "):
            await server.start()
        assert server.addresses("imap") == []  # all or none: imap's socket was closed again
    finally:
        taken.close()


async def test_client_eof_ends_handler(tmp_path: Path) -> None:
    echo = Echo()
    async with running_server(make_config(tmp_path), {"smtp": echo}) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        await line(reader)
        writer.write(b"last\r\n")
        writer.write_eof()  # half-close: the reply must still arrive
        assert await line(reader) == b"echo last\r\n"
        assert await at_eof(reader)
        writer.close()
        await wait_until(lambda: server.connection_count == 0)


async def test_idle_timeout(tmp_path: Path) -> None:
    handlers = {"pop3": RoleHandler(Echo(), idle_timeout=0.2)}
    async with running_server(make_config(tmp_path), handlers) as server:
        reader, writer = await open_client(port_of(server, "pop3"))
        await line(reader)
        started = asyncio.get_running_loop().time()
        assert await line(reader) == b"timeout\r\n"
        assert 0.15 <= asyncio.get_running_loop().time() - started < 5
        assert await at_eof(reader)
        writer.close()


async def test_idle_timeout_from_limits_config(tmp_path: Path) -> None:
    config = make_config(tmp_path, limits={"smtp_idle_timeout": 0.2})
    async with running_server(config, {"submission": Echo()}) as server:
        reader, writer = await open_client(port_of(server, "submission"))
        await line(reader)
        assert await line(reader) == b"timeout\r\n"
        writer.close()


# ----------------------------------------------------------------------------- TLS


async def test_starttls_upgrade(
    tmp_path: Path, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    echo = Echo()
    async with running_server(
        make_config(tmp_path), {"imap": echo}, ssl_context=server_ssl_context
    ) as server:
        reader, writer = await open_client(port_of(server, "imap"))
        await line(reader)
        writer.write(b"STARTTLS\r\n")
        assert await line(reader) == b"ready\r\n"
        await asyncio.wait_for(
            writer.start_tls(client_ssl_context, server_hostname="localhost"), TIMEOUT
        )
        writer.write(b"INFO\r\n")
        info = (await line(reader)).split()
        assert info[3] in (b"TLSv1.2", b"TLSv1.3")
        assert echo.conns[0].tls_active and echo.conns[0].tls_cipher
        assert not echo.conns[0].can_start_tls
        writer.write(b"QUIT\r\n")
        assert await line(reader) == b"bye\r\n"
        writer.close()


async def test_starttls_discards_injected_plaintext(
    tmp_path: Path, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    echo = Echo()
    async with running_server(
        make_config(tmp_path), {"smtp": echo}, ssl_context=server_ssl_context
    ) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        await line(reader)
        # One write, one segment: the injected command arrives with STARTTLS, in plaintext.
        writer.write(b"STARTTLS\r\nINJECTED\r\n")
        assert await line(reader) == b"ready\r\n"
        await asyncio.wait_for(
            writer.start_tls(client_ssl_context, server_hostname="localhost"), TIMEOUT
        )
        writer.write(b"PING\r\n")
        assert await line(reader) == b"echo PING\r\n"
        # The bytes were in the Connection's buffer when STARTTLS ran, and were dropped.
        assert echo.buffered_at_starttls == [len(b"INJECTED\r\n")]
        writer.close()


async def test_starttls_failed_handshake_closes(
    tmp_path: Path, server_ssl_context: ssl.SSLContext
) -> None:
    echo = Echo()
    async with running_server(
        make_config(tmp_path), {"smtp": echo}, ssl_context=server_ssl_context
    ) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        await line(reader)
        writer.write(b"STARTTLS\r\n")
        assert await line(reader) == b"ready\r\n"
        writer.write(b"this is not a TLS ClientHello\r\n" * 4)
        assert await at_eof(reader)
        writer.close()
        await wait_until(lambda: server.connection_count == 0)
        assert server.limiter.count == 0


async def test_starttls_unavailable_on_plain_role(tmp_path: Path) -> None:
    seen: list[BaseException] = []

    async def handler(conn: Connection) -> None:
        assert not conn.can_start_tls
        try:
            await conn.start_tls()
        except RuntimeError as exc:
            seen.append(exc)

    async with running_server(make_config(tmp_path), {"http": handler}) as server:
        reader, writer = await open_client(port_of(server, "http"))
        assert await at_eof(reader)
        writer.close()
    assert len(seen) == 1


async def test_implicit_tls(
    tmp_path: Path, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    echo = Echo()
    async with running_server(
        make_config(tmp_path), {"imaps": echo}, ssl_context=server_ssl_context
    ) as server:
        reader, writer = await open_client(port_of(server, "imaps"), ssl_ctx=client_ssl_context)
        await line(reader)
        assert echo.conns[0].tls_active  # before the handler wrote its greeting
        writer.write(b"INFO\r\n")
        assert (await line(reader)).split()[3] in (b"TLSv1.2", b"TLSv1.3")
        writer.write(b"STARTTLS\r\n")  # not allowed a second time: the handler fails
        assert await line(reader) == b"ready\r\n"
        assert await at_eof(reader)
        writer.close()


async def test_bulk_transfer_over_tls_both_ways(
    tmp_path: Path, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """Megabytes through the TLS layer (with its read buffer shrunk by Server.start) arrive
    complete and in order, in both directions."""
    size = 3 * 1024 * 1024 + 17

    async def sink(conn: Connection) -> None:
        digest = hashlib.sha256()
        received = 0
        while received < size:
            data = await conn.recv()
            if not data:
                return
            digest.update(data)
            received += len(data)
        conn.write(digest.hexdigest().encode() + b"\r\n")
        for offset in range(0, size, 65536):
            conn.write(payload[offset : offset + 65536])
            await conn.drain()

    payload = random.Random(7).randbytes(size)
    async with running_server(
        make_config(tmp_path), {"imaps": sink}, ssl_context=server_ssl_context
    ) as server:
        reader, writer = await open_client(port_of(server, "imaps"), ssl_ctx=client_ssl_context)
        writer.write(payload)
        await asyncio.wait_for(writer.drain(), TIMEOUT)
        assert await line(reader) == hashlib.sha256(payload).hexdigest().encode() + b"\r\n"
        echoed = await asyncio.wait_for(reader.readexactly(size), TIMEOUT)
        assert echoed == payload
        writer.close()


async def test_implicit_tls_handshake_timeout(
    tmp_path: Path, server_ssl_context: ssl.SSLContext
) -> None:
    echo = Echo()
    async with running_server(
        make_config(tmp_path),
        {"pop3s": echo},
        ssl_context=server_ssl_context,
        tls_handshake_timeout=0.3,
    ) as server:
        reader, writer = await open_client(port_of(server, "pop3s"))
        assert await at_eof(reader)  # we sent no ClientHello
        assert not echo.ran.is_set()
        writer.close()
        await wait_until(lambda: server.connection_count == 0)
        assert server.limiter.count == 0


async def test_self_signed_context_when_none_given(tmp_path: Path) -> None:
    async with running_server(make_config(tmp_path), {"submissions": Echo()}) as server:
        assert server.ssl_context is not None
        ctx = ssl.create_default_context(cafile=str(tmp_path / "tls" / "selfsigned.crt"))
        reader, writer = await open_client(port_of(server, "submissions"), ssl_ctx=ctx)
        assert (await line(reader)).startswith(b"hello ")
        writer.close()


# ----------------------------------------------------------------------------- PROXY


async def test_proxy_v1(tmp_path: Path) -> None:
    config = make_config(tmp_path, proxy_roles=("smtp",))
    echo = Echo()
    async with running_server(config, {"smtp": echo}) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        header = format_v1_header(("203.0.113.9", 41000), ("198.51.100.1", 25))
        writer.write(header + b"INFO\r\n")  # same segment: nothing after the header is lost
        await line(reader)
        assert (
            await line(reader)
            == b"203.0.113.9 41000 "
            + str(port_of(server, "smtp")).encode()
            + b" None False smtp\r\n"
        )
        assert echo.conns[0].proxy is not None and echo.conns[0].proxy.version == 1
        assert server.limiter.count_for("203.0.113.9") == 1
        writer.close()


async def test_proxy_v2_tcp6_then_implicit_tls_in_one_segment(
    tmp_path: Path, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """The header and the ClientHello arrive together (cpython#142352): the handshake must
    still see every byte of the ClientHello."""
    config = make_config(tmp_path, proxy_roles=("imaps",))
    async with running_server(config, {"imaps": Echo()}, ssl_context=server_ssl_context) as server:
        port = port_of(server, "imaps")
        header = format_v2_header(("2001:db8::7", 50000), ("2001:db8::1", 993))

        def client() -> bytes:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = client_ssl_context.wrap_bio(incoming, outgoing, server_hostname="localhost")
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                sock.sendall(header + outgoing.read())
                received = b""
                while b"\n" not in received or not received.count(b"\n") >= 2:
                    try:
                        if tls.version() is not None and not outgoing.pending:
                            chunk = tls.read(4096)
                            received += chunk
                            if received.count(b"\n") == 1:
                                tls.write(b"INFO\r\n")
                                sock.sendall(outgoing.read())
                            continue
                        tls.do_handshake()
                    except ssl.SSLWantReadError:
                        pass
                    if outgoing.pending:
                        sock.sendall(outgoing.read())
                    data = sock.recv(65536)
                    if not data:
                        break
                    incoming.write(data)
                return received

        received = await asyncio.wait_for(asyncio.to_thread(client), TIMEOUT)
        greeting, info = received.split(b"\r\n")[:2]
        assert greeting.startswith(b"hello ")
        assert info.startswith(b"2001:db8::7 50000 ")


async def test_proxy_v2_local_uses_real_endpoints(tmp_path: Path) -> None:
    config = make_config(tmp_path, proxy_roles=("pop3",))
    async with running_server(config, {"pop3": Echo()}) as server:
        reader, writer = await open_client(port_of(server, "pop3"))
        writer.write(format_v2_header(None, None, local=True))
        await line(reader)
        writer.write(b"INFO\r\n")
        assert (await line(reader)).startswith(b"127.0.0.1 ")
        writer.close()


async def test_proxy_from_untrusted_network_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path, proxy_roles=("smtp",), trusted=("10.0.0.0/8",))
    echo = Echo()
    async with running_server(config, {"smtp": echo}) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        writer.write(format_v1_header(("203.0.113.9", 1), ("198.51.100.1", 25)))
        assert await at_eof(reader)
        writer.close()
    assert not echo.ran.is_set()


@pytest.mark.parametrize(
    "data",
    [
        b"EHLO spammer.example\r\n",  # no header
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",  # invalid
        b"\x16\x03\x01\x00\xa5",  # TLS where the header should be
    ],
)
async def test_proxy_garbage_header_refused(tmp_path: Path, data: bytes) -> None:
    config = make_config(tmp_path, proxy_roles=("smtp",))
    echo = Echo()
    async with running_server(config, {"smtp": echo}) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        writer.write(data)
        assert await at_eof(reader)
        writer.close()
        await wait_until(lambda: server.connection_count == 0)
    assert not echo.ran.is_set()


async def test_proxy_truncated_header_times_out(tmp_path: Path) -> None:
    config = make_config(tmp_path, proxy_roles=("smtp",), proxy_timeout=0.3)
    echo = Echo()
    async with running_server(config, {"smtp": echo}) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        writer.write(format_v2_header(("192.0.2.1", 1), ("192.0.2.2", 2))[:20])
        started = asyncio.get_running_loop().time()
        assert await at_eof(reader)
        assert asyncio.get_running_loop().time() - started >= 0.25
        writer.close()
    assert not echo.ran.is_set()


# ----------------------------------------------------------------------------- limits


BUSY = b"421 4.7.0 Too many connections\r\n"


async def test_per_ip_limit_sends_too_busy_message(tmp_path: Path) -> None:
    config = make_config(tmp_path, limits={"connections_per_ip": 2})
    handlers = {"smtp": RoleHandler(Echo(), too_busy_message=BUSY)}
    async with running_server(config, handlers) as server:
        port = port_of(server, "smtp")
        clients = [await open_client(port) for _ in range(2)]
        for reader, _ in clients:
            assert (await line(reader)).startswith(b"hello")
        reader3, writer3 = await open_client(port)
        assert await line(reader3) == BUSY
        assert await at_eof(reader3)
        writer3.close()
        # A slot freed is a slot usable again.
        clients[0][1].write(b"QUIT\r\n")
        assert await line(clients[0][0]) == b"bye\r\n"
        await wait_until(lambda: server.limiter.count == 1)
        reader4, writer4 = await open_client(port)
        assert (await line(reader4)).startswith(b"hello")
        for _, writer in [*clients, (None, writer4)]:
            writer.close()


async def test_total_limit_across_listeners(tmp_path: Path) -> None:
    config = make_config(tmp_path, limits={"connections_total": 2})
    handlers = {
        "pop3": RoleHandler(Echo(), too_busy_message=b"-ERR [SYS/TEMP] busy\r\n"),
        "imap": RoleHandler(Echo(), too_busy_message=b"* BYE busy\r\n"),
    }
    async with running_server(config, handlers) as server:
        a = await open_client(port_of(server, "pop3"))
        b = await open_client(port_of(server, "imap"))
        for reader, _ in (a, b):
            await line(reader)
        reader, writer = await open_client(port_of(server, "imap"))
        assert await line(reader) == b"* BYE busy\r\n"
        reader, writer2 = await open_client(port_of(server, "pop3"))
        assert await line(reader) == b"-ERR [SYS/TEMP] busy\r\n"
        for w in (a[1], b[1], writer, writer2):
            w.close()


async def test_proxy_limits_count_the_real_client(tmp_path: Path) -> None:
    config = make_config(tmp_path, proxy_roles=("smtp",), limits={"connections_per_ip": 1})
    handlers = {"smtp": RoleHandler(Echo(), too_busy_message=BUSY)}
    async with running_server(config, handlers) as server:
        port = port_of(server, "smtp")
        opened = []
        for client_ip in ("192.0.2.1", "192.0.2.2", "192.0.2.1"):
            reader, writer = await open_client(port)
            writer.write(format_v1_header((client_ip, 1000), ("192.0.2.100", 25)))
            opened.append((reader, writer))
        assert (await line(opened[0][0])).startswith(b"hello")
        assert (await line(opened[1][0])).startswith(b"hello")  # same proxy, other client
        assert await line(opened[2][0]) == BUSY
        for _, w in opened:
            w.close()


# ----------------------------------------------------------------------------- shutdown


async def test_graceful_stop_finishes_in_flight_command(tmp_path: Path) -> None:
    echo = Echo()
    server = Server(
        make_config(tmp_path), {"imap": echo}, listen={"imap": ListenAddress("127.0.0.1", 0)}
    )
    await server.start()
    port = port_of(server, "imap")
    busy_reader, busy_writer = await open_client(port)
    idle_reader, idle_writer = await open_client(port)
    await line(busy_reader)
    await line(idle_reader)
    busy_writer.write(b"SLOW\r\n")
    await asyncio.sleep(0.05)  # the SLOW command is in progress
    stop = asyncio.create_task(server.stop(grace=5))
    assert await line(idle_reader) == b"bye shutting down\r\n"
    assert await line(busy_reader) == b"done\r\n"  # the in-flight command completes
    assert await line(busy_reader) == b"bye shutting down\r\n"
    await asyncio.wait_for(stop, TIMEOUT)
    assert server.connection_count == 0
    with pytest.raises(OSError):
        await open_client(port)
    for w in (busy_writer, idle_writer):
        w.close()


async def test_stop_cancels_handlers_after_grace(tmp_path: Path) -> None:
    cancelled = asyncio.Event()

    async def stubborn(conn: Connection) -> None:
        conn.write(b"hi\r\n")
        try:
            await asyncio.sleep(3600)  # ignores shutdown entirely
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = Server(
        make_config(tmp_path), {"smtp": stubborn}, listen={"smtp": ListenAddress("127.0.0.1", 0)}
    )
    await server.start()
    reader, writer = await open_client(port_of(server, "smtp"))
    await line(reader)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(server.stop(grace=0.3), TIMEOUT)
    assert 0.25 <= asyncio.get_running_loop().time() - started < 5
    assert cancelled.is_set()
    assert await at_eof(reader)
    assert server.limiter.count == 0
    writer.close()


# ----------------------------------------------------------------------------- errors


async def test_handler_exception_logged_not_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(conn: Connection) -> None:
        conn.write(b"hi\r\n")
        await conn.drain()
        raise RuntimeError("secret internal detail")

    caplog.set_level(logging.INFO, logger="postar.net")
    async with running_server(make_config(tmp_path), {"smtp": broken}) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        assert await line(reader) == b"hi\r\n"
        rest = await asyncio.wait_for(reader.read(), TIMEOUT)
        assert b"secret" not in rest
        writer.close()
        await wait_until(lambda: server.connection_count == 0)
    errors = [r for r in caplog.records if r.getMessage() == "handler.error"]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR and errors[0].exc_info is not None
    assert len(getattr(errors[0], "conn", "")) == 8


async def test_bind_failure_binds_nothing(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    server = Server(
        make_config(tmp_path),
        {"smtp": Echo(), "pop3": Echo()},
        listen={"smtp": ListenAddress("127.0.0.1", 0), "pop3": ListenAddress("127.0.0.1", taken)},
    )
    try:
        with pytest.raises(OSError):
            await server.start()
        assert server.addresses("smtp") == []
    finally:
        blocker.close()


# ----------------------------------------------------------------------------- back-pressure


async def test_client_that_never_reads_is_bounded_and_dropped(tmp_path: Path) -> None:
    chunk = b"x" * 16384
    result: dict[str, object] = {}

    async def flood(conn: Connection) -> None:
        written = 0
        max_buffer = 0
        try:
            while True:
                conn.write(chunk)
                written += len(chunk)
                await conn.drain()
                max_buffer = max(max_buffer, conn.write_buffer_size)
        except WriteTimeout as exc:
            result["error"] = exc
        finally:
            result["written"] = written
            result["max_buffer"] = max_buffer

    async with running_server(make_config(tmp_path), {"imap": flood}, write_timeout=0.5) as server:
        sock = socket.create_connection(("127.0.0.1", port_of(server, "imap")))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        try:
            await wait_until(lambda: "error" in result, timeout=TIMEOUT)
            assert isinstance(result["error"], WriteTimeout)
            # After each drain the process holds at most the high-water mark plus one write;
            # the rest sits in kernel socket buffers, which are bounded too.
            assert isinstance(result["max_buffer"], int)
            assert result["max_buffer"] <= WRITE_HIGH_WATER + len(chunk)
            assert isinstance(result["written"], int)
            assert result["written"] < 64 * 1024 * 1024
            await wait_until(lambda: server.connection_count == 0)
        finally:
            sock.close()


async def test_ten_megabytes_without_newline_bounded(tmp_path: Path) -> None:
    line_limit = 4096
    stats: dict[str, int | bool] = {"max_buffered": 0, "paused": False, "discarded": 0}

    async def liner(conn: Connection) -> None:
        # A handler with a bounded line buffer: an over-long line is skipped to its end,
        # then answered (style.md principle 9).
        pending = bytearray()
        skipping = False
        while True:
            data = await conn.recv(4096)
            stats["max_buffered"] = max(int(stats["max_buffered"]), conn.buffered)
            stats["paused"] = bool(stats["paused"]) or conn.reading_paused
            if not data:
                return
            await asyncio.sleep(0)  # a slow consumer: let the buffer fill up
            pending += data
            while True:
                nl = pending.find(b"\n")
                if nl < 0:
                    if len(pending) > line_limit:
                        stats["discarded"] = int(stats["discarded"]) + len(pending)
                        pending.clear()
                        skipping = True
                    break
                line_bytes = bytes(pending[: nl + 1])
                del pending[: nl + 1]
                if skipping:
                    skipping = False
                    conn.write(b"500 line too long\r\n")
                elif line_bytes.strip() == b"QUIT":
                    conn.write(b"bye\r\n")
                    await conn.drain()
                    return
                await conn.drain()

    async with running_server(make_config(tmp_path), {"smtp": liner}) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        blob = b"A" * (1024 * 1024)
        for _ in range(10):
            writer.write(blob)
            await asyncio.wait_for(writer.drain(), TIMEOUT)
        writer.write(b"\r\nQUIT\r\n")
        assert await line(reader) == b"500 line too long\r\n"
        assert await line(reader) == b"bye\r\n"
        writer.close()
    assert stats["discarded"] >= 10 * 1024 * 1024 - line_limit
    # Reading paused at the high-water mark; one more transport read may land after it.
    assert stats["paused"] is True
    assert int(stats["max_buffered"]) <= READ_HIGH_WATER + 256 * 1024


async def test_write_after_close_and_drain_after_loss(tmp_path: Path) -> None:
    outcome: list[str] = []

    async def handler(conn: Connection) -> None:
        conn.write(b"hi\r\n")
        await conn.drain()
        assert await conn.recv() == b""  # the client closed
        await asyncio.sleep(0.1)
        conn.write(b"nobody listens\r\n")  # dropped or queued, never raises
        try:
            for _ in range(50):
                conn.write(b"y" * 65536)
                await conn.drain()
                await asyncio.sleep(0.01)
        except ConnectionResetError:
            outcome.append("reset")
        conn.close()
        conn.write(b"after close")  # ignored
        await conn.wait_closed()
        outcome.append("closed")

    async with running_server(make_config(tmp_path), {"smtp": handler}) as server:
        reader, writer = await open_client(port_of(server, "smtp"))
        await line(reader)
        writer.close()
        await wait_until(lambda: "closed" in outcome)
    assert outcome == ["reset", "closed"]


class _ResetTransport(asyncio.Transport):
    """A socket transport whose peer reset the connection: shutdown() fails with ENOTCONN."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 25)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    def abort(self) -> None:
        self.aborted = True


async def test_close_after_a_reset_aborts_instead_of_raising() -> None:
    # The peer's RST can arrive between its last bytes and our FIN: close() used to let
    # shutdown()'s ENOTCONN escape and end the listener's task with an unretrieved error.
    conn = Connection("smtp", idle_timeout=None, write_timeout=None)
    transport = _ResetTransport()
    conn.connection_made(transport)
    conn.close()
    assert transport.aborted and conn.closed
