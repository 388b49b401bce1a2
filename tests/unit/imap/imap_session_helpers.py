"""Drive an ImapSession with bytes, over an in-memory transport, against a real SQLiteStore.

`Client.command(b"a1 LOGIN ...")` sends one line and returns every byte the server wrote up
to and including the tagged answer, so tests read like RFC transcripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from postar.auth.authenticator import Authenticator
from postar.auth.passwords import hash_password
from postar.config import AuthConfig
from postar.imap.session import ImapSession, ImapSettings
from postar.mime.parser import parse_message
from postar.store.interface import Store
from postar.store.model import Account
from postar.store.sqlite.backend import SQLiteStore

PASSWORD = "secret pass"
TIMEOUT = 5.0


class MemoryTransport:
    """The parts of net.connection.Connection a session uses, in memory."""

    def __init__(self, peer_ip: str = "127.0.0.1") -> None:
        self.conn_id = "test0001"
        self.peer_ip = peer_ip
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.output = bytearray()
        self.wrote = asyncio.Event()
        self.tls_active = False
        self.can_start_tls = False

    async def recv(self, max_bytes: int = 65536) -> bytes:
        return await self.inbox.get()

    def write(self, data: bytes) -> None:
        self.output += data
        self.wrote.set()

    async def drain(self) -> None:
        return None

    async def start_tls(self) -> None:
        raise ConnectionError("no TLS in memory")


class Client:
    def __init__(self, session: ImapSession, transport: MemoryTransport) -> None:
        self.session = session
        self.t = transport
        self.task = asyncio.create_task(session.run())

    def send(self, data: bytes) -> None:
        self.t.inbox.put_nowait(data)

    async def read_until(self, marker: bytes) -> bytes:
        """Everything written until `marker` has appeared; the rest stays for later."""

        async def wait() -> bytes:
            while True:
                # A virtual CRLF in front, so a tagged line first in the buffer is found too.
                buf = b"\r\n" + bytes(self.t.output)
                i = buf.find(marker)
                if i >= 0:
                    end = buf.find(b"\r\n", i + len(marker))
                    end = len(buf) if end < 0 else end + 2
                    del self.t.output[: end - 2]
                    return buf[2:end]
                self.t.wrote.clear()
                await self.t.wrote.wait()

        return await asyncio.wait_for(wait(), TIMEOUT)

    async def command(self, line: bytes) -> bytes:
        tag = line.split(b" ", 1)[0]
        self.send(line + b"\r\n")
        return await self.read_until(b"\r\n" + tag + b" ")

    async def greeting(self) -> bytes:
        return await self.read_until(b"* OK")

    async def close(self) -> None:
        self.send(b"")
        try:
            await asyncio.wait_for(self.task, TIMEOUT)
        except (TimeoutError, asyncio.CancelledError):
            self.task.cancel()


def message(subject: str = "Hello", body: str = "Just a test.\r\n", **headers: str) -> bytes:
    lines = [
        "From: Bob Example <bob@example.net>",
        "To: alice@example.org",
        f"Subject: {subject}",
        "Date: Mon, 7 Feb 2022 21:52:25 -0800",
        "Message-ID: <" + subject.replace(" ", ".") + "@example.net>",
    ]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


async def deliver(store: Store, account: Account, raw: bytes, mailbox: str = "INBOX") -> int:
    box = await store.get_mailbox(account.id, mailbox)
    assert box is not None
    record = await store.append(account.id, box.id, raw, parse_message(raw))
    return record.uid


class Env:
    def __init__(self, store: Store, alice: Account, bob: Account, auth: Authenticator) -> None:
        self.store = store
        self.alice = alice
        self.bob = bob
        self.auth = auth
        self.clients: list[Client] = []

    async def client(
        self, *, login: str | None = "alice@example.org", peer_ip: str = "127.0.0.1"
    ) -> Client:
        transport = MemoryTransport(peer_ip)
        session = ImapSession(self.store, self.auth, transport, ImapSettings(hostname="imap.test"))
        client = Client(session, transport)
        self.clients.append(client)
        await client.greeting()
        if login is not None:
            answer = await client.command(
                b"L1 LOGIN " + login.encode() + b' "' + PASSWORD.encode() + b'"'
            )
            assert b"L1 OK" in answer, answer
        return client


@asynccontextmanager
async def environment(tmp: Path) -> AsyncIterator[Env]:
    store = SQLiteStore(tmp / "data", fsync=False)
    await store.open()
    try:
        await store.add_domain("example.org")
        hashed = hash_password(PASSWORD)
        alice = await store.add_account("alice@example.org", hashed, None)
        bob = await store.add_account("bob@example.org", hashed, None)
        auth = Authenticator(store, AuthConfig())
        env = Env(store, alice, bob, auth)
        try:
            yield env
        finally:
            for client in env.clients:
                await client.close()
    finally:
        await store.close()
