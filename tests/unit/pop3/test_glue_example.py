"""The POP3 core and postar.auth.Authenticator wired the way pop3/server.py will wire them,
over in-memory queues instead of a socket, with a real SASL client (scramp) on the other end."""

from __future__ import annotations

import asyncio
import base64

import scramp
from argon2 import PasswordHasher

from postar.auth import Authenticator
from postar.auth.passwords import derive_scram_secrets, hash_password
from postar.config import AuthConfig
from postar.pop3 import (
    AuthRequest,
    AuthResponse,
    CloseConnection,
    Commit,
    LoginRequest,
    MaildropEntry,
    NeedData,
    POP3Connection,
    POP3Settings,
    RetrRequest,
    StartTLS,
    auth_failure_reply,
)
from postar.store.model import Account

HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
MESSAGE = b"Subject: hi\r\n\r\n.hello\r\n"


class Accounts:
    def __init__(self) -> None:
        self.alice = Account(
            id=1,
            address="alice@example.com",
            domain="example.com",
            password_hash=hash_password("wonderland", HASHER),
            scram=derive_scram_secrets("wonderland"),
            quota_bytes=0,
        )

    async def get_account(self, address: str) -> Account | None:
        return self.alice if address == self.alice.address else None


async def serve(
    reader: asyncio.Queue[bytes], writer: asyncio.Queue[bytes], auth: Authenticator
) -> list[tuple[int, ...]]:
    """What pop3/server.py does per connection, minus sockets, TLS and the store."""
    peer_ip, tls = "203.0.113.5", False
    core = POP3Connection(
        POP3Settings(
            mechanisms=tuple(auth.mechanisms_for(tls, peer_ip)),
            plaintext_allowed=auth.plaintext_allowed(tls, peer_ip),
        )
    )
    commits: list[tuple[int, ...]] = []

    async def flush() -> None:
        if data := core.data_to_send():
            await writer.put(data)

    async def send_challenge(b64: bytes) -> None:
        core.send_auth_challenge(b64)
        await flush()

    async def receive_response() -> bytes | None:
        while True:
            event = core.next_event()
            await flush()
            if isinstance(event, AuthResponse):
                return event.line
            assert isinstance(event, NeedData)
            core.receive_data(await reader.get())

    while True:
        event = core.next_event()
        await flush()  # replies the core wrote while reaching this event
        match event:
            case NeedData():
                core.receive_data(await reader.get())
            case LoginRequest(username=user, password=password):
                result = await auth.login(user, password, tls_active=tls, peer_ip=peer_ip)
                if result.ok:
                    core.authenticated([MaildropEntry(len(MESSAGE), "7.1")], user)
                else:
                    assert result.failure is not None
                    core.authentication_failed(*auth_failure_reply(result.failure))
            case AuthRequest(mechanism=mech, initial_response=initial):
                result = await auth.authenticate(
                    mech, initial, send_challenge, receive_response,
                    tls_active=tls, peer_ip=peer_ip,
                )  # fmt: skip
                if result.ok:
                    core.authenticated([MaildropEntry(len(MESSAGE), "7.1")])
                else:
                    assert result.failure is not None
                    core.authentication_failed(*auth_failure_reply(result.failure))
            case RetrRequest():
                core.message_data(MESSAGE)
                core.message_end()
            case Commit(deleted_indexes=deleted):
                commits.append(deleted)
                core.commit_done()
            case StartTLS():
                raise AssertionError("no TLS in this test")
            case CloseConnection():
                return commits


async def test_scram_login_retr_dele_quit_through_the_authenticator() -> None:
    to_server: asyncio.Queue[bytes] = asyncio.Queue()
    to_client: asyncio.Queue[bytes] = asyncio.Queue()
    auth = Authenticator(Accounts(), AuthConfig(), hasher=HASHER)
    server = asyncio.create_task(serve(to_server, to_client, auth))
    received = bytearray()

    async def line() -> bytes:
        while b"\r\n" not in received:
            received.extend(await to_client.get())
        head, _, rest = bytes(received).partition(b"\r\n")
        received[:] = rest
        return head

    assert (await line()).startswith(b"+OK")
    # In the clear from a remote address: USER is refused, SCRAM is offered.
    await to_server.put(b"USER alice@example.com\r\n")
    assert (await line()).startswith(b"-ERR [AUTH]")
    client = scramp.ScramClient(["SCRAM-SHA-256"], "alice@example.com", "wonderland")
    first = base64.b64encode(client.get_client_first().encode())
    await to_server.put(b"AUTH SCRAM-SHA-256 " + first + b"\r\n")
    challenge = await line()
    assert challenge.startswith(b"+ ")
    client.set_server_first(base64.b64decode(challenge[2:]).decode())
    await to_server.put(base64.b64encode(client.get_client_final().encode()) + b"\r\n")
    final = await line()
    client.set_server_final(base64.b64decode(final[2:]).decode())  # server proved itself
    await to_server.put(b"\r\n")  # empty response to additional data with success
    assert await line() == b"+OK Maildrop has 1 messages (23 octets)"
    await to_server.put(b"RETR 1\r\nDELE 1\r\nQUIT\r\n")
    assert [await line() for _ in range(7)] == [
        b"+OK 23 octets", b"Subject: hi", b"", b"..hello", b".",
        b"+OK Message 1 deleted", b"+OK Postar POP3 server signing off (0 messages left)",
    ]  # fmt: skip
    assert await server == [(0,)]
