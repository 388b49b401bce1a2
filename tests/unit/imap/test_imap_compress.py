"""COMPRESS=DEFLATE (RFC 4978): the session over raw deflate both ways, the switch, and a
decompression bomb that must stay small in memory."""

from __future__ import annotations

import asyncio
import tracemalloc
import zlib
from pathlib import Path

from postar.imap.compress import DeflateTransport
from tests.unit.imap.imap_session_helpers import TIMEOUT, Client, deliver, environment, message


class Peer:
    """The client's side of the compressed stream."""

    def __init__(self) -> None:
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.text = bytearray()

    def pack(self, data: bytes) -> bytes:
        return self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    async def until(self, client: Client, marker: bytes) -> bytes:
        async def wait() -> bytes:
            while marker not in b"\r\n" + self.text:
                client.t.wrote.clear()
                if client.t.output:
                    self.text += self.inflate.decompress(bytes(client.t.output))
                    client.t.output.clear()
                    continue
                await client.t.wrote.wait()
            end = (b"\r\n" + self.text).index(marker) + len(marker) - 2
            end = self.text.index(b"\r\n", end) + 2
            out = bytes(self.text[:end])
            del self.text[:end]
            return out

        return await asyncio.wait_for(wait(), TIMEOUT)


async def test_compress_deflate_session(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("squeezed", body="words " * 2000))
        c = await env.client()
        assert b" COMPRESS=DEFLATE" in await c.command(b"c1 CAPABILITY")
        assert b"a0 BAD" in await c.command(b"a0 COMPRESS GZIP")
        # "a2 NOOP" sent in clear right behind COMPRESS must be dropped at the switch.
        c.send(b"a1 COMPRESS DEFLATE\r\na2 NOOP\r\n")
        assert b"a1 OK" in await c.read_until(b"\r\na1 ")
        peer = Peer()
        # Split a command across writes: the inflater must carry state between them.
        packed = peer.pack(b"a3 SELECT INBOX\r\na4 FETCH 1 (BODY[TEXT])\r\n")
        c.send(packed[:7])
        c.send(packed[7:])
        answer = await peer.until(c, b"\r\na4 ")
        assert b"* 1 EXISTS" in answer and b"a3 OK" in answer
        assert b"words " * 100 in answer and b"a4 OK" in answer
        assert b"a2 " not in answer
        c.send(peer.pack(b"a5 COMPRESS DEFLATE\r\n"))
        assert b"a5 NO [COMPRESSIONACTIVE]" in await peer.until(c, b"\r\na5 ")
        c.send(peer.pack(b"a6 LOGOUT\r\n"))
        assert b"a6 OK" in await peer.until(c, b"\r\na6 ")


class FakeInner:
    """A connection whose peer sends `chunks`, then closes."""

    conn_id = "bomb"
    peer_ip = "127.0.0.1"
    tls_active = False
    can_start_tls = False

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.written = bytearray()

    async def recv(self, max_bytes: int = 65536) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        return None

    async def start_tls(self) -> None:
        raise ConnectionError


async def test_a_decompression_bomb_inflates_in_bounded_steps() -> None:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1024 * 1024)
    bomb = bytearray()
    for _ in range(256):  # 256 MiB inflated, about 250 KiB on the wire
        bomb += squeeze.compress(zeros)
    bomb += squeeze.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 512 * 1024
    transport = DeflateTransport(FakeInner([bytes(bomb)]))
    tracemalloc.start()
    try:
        total = 0
        biggest = 0
        while True:
            out = await transport.recv(65536)
            if not out:
                break
            total += len(out)
            biggest = max(biggest, len(out))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 256 * 1024 * 1024
    assert biggest <= 65536
    assert peak < 4 * 1024 * 1024  # the whole bomb never exists inflated


async def test_deflate_transport_writes_sync_flushed_raw_deflate() -> None:
    inner = FakeInner([b"not deflate at all \xff\xff\xff"])
    transport = DeflateTransport(inner)
    transport.write(b"* OK first\r\n")
    # Each write is complete by itself: a client inflates it without waiting for more.
    assert zlib.decompressobj(-15).decompress(bytes(inner.written)) == b"* OK first\r\n"
    try:
        await transport.recv()
    except ConnectionResetError:
        pass
    else:
        raise AssertionError("garbage was inflated")


async def test_a_bomb_in_a_command_line_gets_bad_not_memory(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        c.send(b"a1 COMPRESS DEFLATE\r\n")
        assert b"a1 OK" in await c.read_until(b"\r\na1 ")
        peer = Peer()
        # A 64 MiB line: the receiver's line limit refuses it, read to its end in bounded
        # steps, and the session goes on.
        squeeze = peer.deflate
        chunk = squeeze.compress(b"a2 NOOP " + b"x" * (64 * 1024 * 1024) + b"\r\n")
        tracemalloc.start()
        try:
            c.send(chunk + squeeze.flush(zlib.Z_SYNC_FLUSH))
            answer = await peer.until(c, b"BAD")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert b"BAD" in answer
        assert peak < 16 * 1024 * 1024
        c.send(peer.pack(b"a3 NOOP\r\n"))
        assert b"a3 OK" in await peer.until(c, b"\r\na3 ")
