"""Server's side of the SMTP worker processes: handing accepted connections to a Handoff
(the worker pool) with the limiter slot held until its release, and adopt(), which serves
a socket another process accepted."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

from net_helpers import make_config, read_line, wait_until

from postar.config import ListenAddress
from postar.net import Connection, RoleHandler, Server
from postar.net.proxy import ProxyInfo

TIMEOUT = 5.0
BUSY = b"421 4.7.0 busy\r\n"


class Greeter:
    """A stand-in SMTP handler: greets with its peer's address, ends at the first line."""

    def __init__(self) -> None:
        self.peers: list[str] = []

    async def __call__(self, conn: Connection) -> None:
        self.peers.append(conn.peer_ip)
        conn.write(f"220 local {conn.peer_ip}\r\n".encode())
        await conn.drain()
        await read_line(conn)

    @property
    def role_handler(self) -> RoleHandler:
        return RoleHandler(self, too_busy_message=BUSY)


class FakeHandoff:
    """Records what it is handed; takes it (True) or leaves it to the server (False)."""

    def __init__(self, roles: frozenset[str], take: bool) -> None:
        self.roles = roles
        self.take = take
        self.handed: list[tuple[socket.socket, tuple[str, int], str, Callable[[], None]]] = []

    def hand(
        self,
        client: socket.socket,
        peer: tuple[str, int],
        proxy: ProxyInfo | None,
        role: str,
        release: Callable[[], None],
    ) -> bool:
        assert proxy is None  # no PROXY role configured here
        self.handed.append((client, peer, role, release))
        return self.take


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)


async def _line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), TIMEOUT)


def _smtp_server(tmp_path: Path, handoff: FakeHandoff, greeter: Greeter, per_ip: int) -> Server:
    config = make_config(tmp_path, limits={"connections_per_ip": per_ip})
    return Server(
        config,
        {"smtp": greeter.role_handler},
        listen={"smtp": ListenAddress("127.0.0.1", 0)},
        handoff=handoff,
    )


async def test_a_connection_handed_over_keeps_its_slot_until_released(tmp_path: Path) -> None:
    fake = FakeHandoff(frozenset({"smtp"}), take=True)
    greeter = Greeter()
    server = _smtp_server(tmp_path, fake, greeter, per_ip=1)
    await server.start()
    writers: list[asyncio.StreamWriter] = []
    try:
        port = server.addresses("smtp")[0][1]
        reader, writer = await _connect(port)
        writers.append(writer)
        await wait_until(lambda: len(fake.handed) == 1)
        sock, peer, role, release = fake.handed[0]
        assert role == "smtp" and peer[0] == "127.0.0.1"
        # Handed, not served here: no local session, yet the client still counts.
        assert greeter.peers == [] and server.connection_count == 0
        assert server.limiter.count_for("127.0.0.1") == 1
        # What was handed over is the client's connection itself.
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, b"220 from elsewhere\r\n")
        assert await _line(reader) == b"220 from elsewhere\r\n"

        # With connections_per_ip = 1 the held slot refuses a second client, here, before
        # any hand-over: the limits stay this process's whatever the workers do.
        reader2, writer2 = await _connect(port)
        writers.append(writer2)
        assert await _line(reader2) == BUSY
        assert await asyncio.wait_for(reader2.read(), TIMEOUT) == b""
        assert len(fake.handed) == 1

        sock.close()  # the worker's session ended...
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        release()  # ...and it said so: the slot is free again
        assert server.limiter.count_for("127.0.0.1") == 0
        _, writer3 = await _connect(port)
        writers.append(writer3)
        await wait_until(lambda: len(fake.handed) == 2)
        assert server.limiter.count_for("127.0.0.1") == 1
        fake.handed[1][0].close()
        fake.handed[1][3]()
        assert server.limiter.count == 0
    finally:
        for w in writers:
            w.close()
        await server.stop(grace=1.0)


async def test_a_connection_the_handoff_declines_is_served_here(tmp_path: Path) -> None:
    # No worker alive (all restarting): the owner serves the client itself.
    fake = FakeHandoff(frozenset({"smtp"}), take=False)
    greeter = Greeter()
    server = _smtp_server(tmp_path, fake, greeter, per_ip=5)
    await server.start()
    try:
        reader, writer = await _connect(server.addresses("smtp")[0][1])
        assert await _line(reader) == b"220 local 127.0.0.1\r\n"
        assert len(fake.handed) == 1  # asked first
        assert server.connection_count == 1
        assert server.limiter.count_for("127.0.0.1") == 1  # taken once, not twice
        writer.write(b"QUIT\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()  # the server lingers until the client closes too (connection.py)
        await wait_until(lambda: server.limiter.count == 0 and server.connection_count == 0)
    finally:
        await server.stop(grace=1.0)


async def test_roles_the_handoff_does_not_take_are_never_offered(tmp_path: Path) -> None:
    fake = FakeHandoff(frozenset({"submission"}), take=True)
    greeter = Greeter()
    server = _smtp_server(tmp_path, fake, greeter, per_ip=5)
    await server.start()
    try:
        reader, writer = await _connect(server.addresses("smtp")[0][1])
        assert await _line(reader) == b"220 local 127.0.0.1\r\n"
        assert fake.handed == []
        writer.close()
    finally:
        await server.stop(grace=1.0)


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(client, accepted): a real TCP connection over loopback, as an accept loop sees it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=TIMEOUT)
        accepted, _ = listener.accept()
    return client, accepted


async def test_adopt_serves_a_given_socket_and_reports_its_end(tmp_path: Path) -> None:
    greeter = Greeter()
    # A worker's server: no listeners, and no start().
    server = Server(make_config(tmp_path), {"smtp": greeter.role_handler}, listen={})
    loop = asyncio.get_running_loop()
    ended: list[str] = []
    client, accepted = _tcp_pair()
    try:
        # The peer is what the owner saw (a PROXY source, say), not the socket's address.
        server.adopt(accepted, ("192.0.2.7", 4242), None, "smtp", lambda: ended.append("a"))
        client.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=client)
        assert await _line(reader) == b"220 local 192.0.2.7\r\n"
        assert greeter.peers == ["192.0.2.7"]
        assert server.limiter.count_for("192.0.2.7") == 1 and ended == []
        writer.write(b"QUIT\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()  # the server lingers until the client closes too (connection.py)
        await wait_until(lambda: ended == ["a"])
        assert server.limiter.count == 0 and server.connection_count == 0

        # A role it has no handler for: closed at once, and still reported as ended, so the
        # owner's slot is not held forever.
        client2, accepted2 = _tcp_pair()
        with client2:
            server.adopt(accepted2, ("192.0.2.8", 1), None, "imap", lambda: ended.append("b"))
            assert ended == ["a", "b"]
            client2.setblocking(False)
            assert await asyncio.wait_for(loop.sock_recv(client2, 10), TIMEOUT) == b""

        await server.stop(grace=1.0)
        # After a stop, the same: refused, reported.
        client3, accepted3 = _tcp_pair()
        with client3:
            server.adopt(accepted3, ("192.0.2.9", 1), None, "smtp", lambda: ended.append("c"))
            assert ended == ["a", "b", "c"] and greeter.peers == ["192.0.2.7"]
    finally:
        client.close()
        await server.stop(grace=1.0)
