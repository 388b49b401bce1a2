"""The SMTP client against scripted servers: the bytes it sends, the replies it believes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from postar.config import QueueConfig
from postar.queue.client import Envelope, SMTPClient, SMTPConnectionError, dot_stuff

CONFIG = QueueConfig(connect_timeout=2, command_timeout=2, data_timeout=2, line_length=200)
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> int:
        server = await asyncio.start_server(script, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for s in servers:
        s.close()


async def read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    return await reader.readuntil(marker)


def test_dot_stuffing() -> None:
    # RFC 5321 4.5.2: every line starting with "." gets one more; CRLF at the end.
    assert dot_stuff(b".a\r\nb\r\n.\r\n..c") == b"..a\r\nb\r\n..\r\n...c\r\n"


async def test_pipelined_transaction(serve: Callable[[Script], Awaitable[int]]) -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 peer ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-peer\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-DSN\r\n250 8BITMIME\r\n")
        # RFC 2920: nothing is answered until DATA arrives; a client waiting for the MAIL
        # reply would time out here.
        group = await read_until(reader, b"DATA\r\n")
        seen.append(group)
        writer.write(b"250 2.1.0 ok\r\n550 5.1.1 no\r\n250 2.1.5 ok\r\n354 go\r\n")
        seen.append(await read_until(reader, b"\r\n.\r\n"))
        writer.write(b"250 2.0.0 queued\r\n")
        await writer.drain()
        await reader.read()

    port = await serve(script)
    client = await SMTPClient.connect("127.0.0.1", port, CONFIG, "peer")
    await client.ehlo("me.test")
    env = Envelope(
        "a@x.test",
        ["bad@y.test", "good@y.test"],
        notify=[("FAILURE",), ()],
        orcpt=["rfc822;bad+1@y.test", None],
        ret="HDRS",
        envid="id 1",
    )
    result = await client.send(env, "Subject: é\r\n\r\n.line\r\n".encode())
    client.abort()
    assert [r.code for r in result.recipients] == [550, 250]
    assert result.data is not None and result.data.code == 250 and result.dsn_passed
    lines = seen[0].decode().split("\r\n")
    assert lines[0] == "MAIL FROM:<a@x.test> SIZE=22 BODY=8BITMIME RET=HDRS ENVID=id+201"
    assert lines[1] == "RCPT TO:<bad@y.test> NOTIFY=FAILURE ORCPT=rfc822;bad+2B1@y.test"
    assert lines[2] == "RCPT TO:<good@y.test>"
    assert seen[1] == "Subject: é\r\n\r\n..line\r\n.\r\n".encode()


async def test_size_limit_and_smtputf8_refused_before_sending(
    serve: Callable[[Script], Awaitable[int]],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 peer\r\n")
        await reader.readline()
        writer.write(b"250-peer\r\n250 SIZE 10\r\n")
        await reader.read()

    port = await serve(script)
    client = await SMTPClient.connect("127.0.0.1", port, CONFIG, "peer")
    await client.ehlo("me.test")
    big = await client.send(Envelope("a@x.test", ["b@y.test"]), b"x" * 11)
    assert big.recipients[0].code == 552 and big.recipients[0].enhanced == "5.3.4"
    utf8 = await client.send(Envelope("a@x.test", ["bé@y.test"]), b"x")
    assert utf8.recipients[0].enhanced == "5.6.7"  # RFC 6531 3.2: no downgrade
    client.abort()


async def test_reply_code_change_mid_reply_is_garbage(
    serve: Callable[[Script], Awaitable[int]],
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-peer\r\n554 changed\r\n")
        await reader.read()

    port = await serve(script)
    with pytest.raises(SMTPConnectionError, match="code changed"):
        await SMTPClient.connect("127.0.0.1", port, CONFIG, "peer")


async def test_too_many_reply_lines(serve: Callable[[Script], Awaitable[int]]) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-x\r\n" * 1000)
        await reader.read()

    port = await serve(script)
    with pytest.raises(SMTPConnectionError, match="longer than 100 lines"):
        await SMTPClient.connect("127.0.0.1", port, CONFIG, "peer")


@pytest.mark.parametrize("size", [1, 64 * 1024 - 2, 64 * 1024, 64 * 1024 + 1, 150_000])
async def test_message_body_sent_whole_across_data_blocks(
    serve: Callable[[Script], Awaitable[int]], size: int
) -> None:
    """The body goes in 64 KiB blocks, the last one with the final dot: every byte once, in
    order, whatever the size relative to a block."""
    raw = (b".line\r\n" + bytes(range(33, 127)) + b"\r\n") * (size // 103 + 1)
    raw = raw[:size]
    received: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 peer ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-peer\r\n250 PIPELINING\r\n")
        await read_until(reader, b"DATA\r\n")
        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
        data = b""
        while not data.endswith(b"\r\n.\r\n"):  # past the reader's 64 KiB readuntil limit
            chunk = await reader.read(65536)
            assert chunk, "connection closed before the final dot"
            data += chunk
        received.append(data)
        writer.write(b"250 2.0.0 queued\r\n")
        await writer.drain()
        await reader.read()

    port = await serve(script)
    client = await SMTPClient.connect("127.0.0.1", port, CONFIG, "peer")
    await client.ehlo("me.test")
    result = await client.send(Envelope("a@x.test", ["b@y.test"]), raw)
    client.abort()
    assert result.data is not None and result.data.code == 250
    assert received == [dot_stuff(raw) + b".\r\n"]
