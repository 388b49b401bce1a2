"""LITERAL+ and LITERAL- (RFC 7888) as advertised and as enforced, over a real session.

RFC 7888 section 5: a server advertises one of the two, never both; with LITERAL- a
non-synchronizing literal larger than 4096 octets is refused, for APPEND with a tagged BAD
carrying TOOBIG. RFC 9051 section 4.3: IMAP4rev2 itself carries the LITERAL- rule, so a server
that advertises IMAP4rev2 cannot refuse small {n+} literals.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postar.imap import commands as c
from postar.imap.capabilities import capabilities
from postar.imap.limits import LiteralMode
from postar.imap.session import ImapSession, ImapSettings
from postar.imap.testing import command
from tests.unit.imap.imap_session_helpers import (
    PASSWORD,
    Client,
    Env,
    MemoryTransport,
    environment,
)

LITERALS = {"LITERAL+", "LITERAL-"}


@pytest.mark.parametrize("authenticated", [False, True])
@pytest.mark.parametrize(
    ("mode", "advertised"), [(LiteralMode.PLUS, "LITERAL+"), (LiteralMode.MINUS, "LITERAL-")]
)
def test_exactly_one_literal_capability(
    authenticated: bool, mode: LiteralMode, advertised: str
) -> None:
    caps = capabilities(
        authenticated=authenticated,
        can_start_tls=False,
        plaintext_allowed=True,
        mechanisms=["PLAIN"],
        append_limit=1024,
        literal_mode=mode,
    )
    assert LITERALS & set(caps) == {advertised}
    assert "IMAP4rev2" in caps


def test_no_literal_plus_at_all_contradicts_imap4rev2() -> None:
    with pytest.raises(ValueError):
        ImapSettings(literal_mode=LiteralMode.NONE)


@pytest.mark.parametrize("mode", [LiteralMode.PLUS, LiteralMode.MINUS])
def test_rfc_7888_example_in_either_mode(mode: LiteralMode) -> None:
    # RFC 7888 section 3: "A001 LOGIN {11+}" / "FRED FOOBAR {7+}" / "fat man".
    data = b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man\r\n"
    assert command(data, literal_mode=mode) == c.Login(
        tag="A001", username="FRED FOOBAR", password="fat man"
    )


async def session_client(env: Env, mode: LiteralMode) -> Client:
    transport = MemoryTransport()
    settings = ImapSettings(hostname="imap.test", literal_mode=mode)
    session = ImapSession(env.store, env.auth, transport, settings)
    client = Client(session, transport)
    env.clients.append(client)
    await client.greeting()
    answer = await client.command(b'L1 LOGIN alice@example.org "' + PASSWORD.encode() + b'"')
    assert b"L1 OK" in answer, answer
    return client


def message_of(size: int) -> bytes:
    head = b"From: a@example.org\r\nSubject: big\r\n\r\n"
    return head + b"x" * (size - len(head))


async def test_literal_minus_session(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        client = await session_client(env, LiteralMode.MINUS)
        answer = await client.command(b"a1 CAPABILITY")
        assert b" LITERAL- " in answer and b"LITERAL+" not in answer

        # 4096 octets is the most a {n+} may carry under LITERAL-.
        client.send(b"a2 APPEND INBOX {4096+}\r\n" + message_of(4096) + b"\r\n")
        assert b"a2 OK [APPENDUID " in await client.read_until(b"\r\na2 ")

        # One more octet: the client sends it anyway; the server drops it and answers a
        # tagged BAD with TOOBIG (RFC 7888 section 5), and the session goes on.
        client.send(b"a3 APPEND INBOX {4097+}\r\n" + message_of(4097) + b"\r\na4 NOOP\r\n")
        answer = await client.read_until(b"\r\na4 ")
        assert b"a3 BAD [TOOBIG] " in answer and b"a4 OK" in answer
        status = await client.command(b"a5 STATUS INBOX (MESSAGES)")
        assert b"(MESSAGES 1)" in status

        # The same size as a synchronizing literal is fine: the server invites it.
        client.send(b"a6 APPEND INBOX {4097}\r\n")
        assert (await client.read_until(b"+ ")).startswith(b"+ ")
        client.send(message_of(4097) + b"\r\n")
        assert b"a6 OK [APPENDUID " in await client.read_until(b"\r\na6 ")


async def test_literal_plus_session_takes_large_non_sync_literals(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        client = await session_client(env, LiteralMode.PLUS)
        answer = await client.command(b"a1 CAPABILITY")
        assert b" LITERAL+ " in answer and b"LITERAL-" not in answer
        client.send(b"a2 APPEND INBOX {10000+}\r\n" + message_of(10000) + b"\r\n")
        assert b"a2 OK [APPENDUID " in await client.read_until(b"\r\na2 ")
