"""[relay] smarthost: every message through one upstream, with AUTH and require_tls."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from postar.config import Config, QueueConfig, RelayConfig, StoreConfig
from postar.queue.worker import OutboundWorker
from postar.store.interface import Store, open_store_backend
from postar.store.model import QueuedRecipient
from tests.support.server import free_port
from tests.support.smtppeer import SMTPPeer

MSG = b"From: alice@example.org\r\nSubject: via smarthost\r\n\r\nbody\r\n"


def check_login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"relay", b"s3cret")
    return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(
        hostname="mail.example.org",
        data_dir=tmp_path / "data",
        store=StoreConfig(fsync=False),
        queue=QueueConfig(connect_timeout=2, command_timeout=2, data_timeout=2),
    )


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    s = open_store_backend(config)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def deliver(store: Store, config: Config) -> None:
    worker = OutboundWorker(store, config)
    await worker.run_due()
    await worker.drain()
    await worker.stop(grace=1)


def relay(config: Config, port: int, **kw: Any) -> Config:
    return replace(config, relay=RelayConfig(smarthost=f"127.0.0.1:{port}", **kw))


async def test_smarthost_with_auth_over_verified_tls(
    store: Store, config: Config, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    cfg = relay(config, port, username="relay", password="s3cret", ca_file=ca_file)
    with SMTPPeer(
        "127.0.0.1", port, tls_context=server_ctx, require_starttls=True,
        authenticator=check_login, auth_required=True,
    ) as peer:  # fmt: skip
        # Recipients in two domains: one transaction through the smarthost, no MX lookups.
        await store.enqueue(
            "alice@example.org",
            [QueuedRecipient("bob@one.test"), QueuedRecipient("carol@two.test")],
            MSG,
        )
        await deliver(store, cfg)
    [got] = peer.received
    assert got.tls and got.auth_data == b"relay"
    assert sorted(got.recipients) == ["bob@one.test", "carol@two.test"]
    assert await store.list_queue() == []


async def test_require_tls_refuses_a_smarthost_without_starttls(
    store: Store, config: Config
) -> None:
    port = free_port()
    with SMTPPeer("127.0.0.1", port) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@one.test")], MSG)
        await deliver(store, relay(config, port, username="relay", password="s3cret"))
    assert peer.received == []
    [entry] = await store.list_queue()
    assert "TLS is required" in (entry.last_error or "")


async def test_require_tls_refuses_an_unverifiable_certificate(
    store: Store, config: Config
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_ctx)  # a CA we do not trust
    port = free_port()
    with SMTPPeer("127.0.0.1", port, tls_context=server_ctx) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@one.test")], MSG)
        await deliver(store, relay(config, port))
    assert peer.received == []
    [entry] = await store.list_queue()
    assert "TLS required" in (entry.last_error or "")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_wrong_password_defers(store: Store, config: Config) -> None:
    port = free_port()
    with SMTPPeer(
        "127.0.0.1", port, authenticator=check_login, auth_required=True,
        auth_require_tls=False,
    ) as peer:  # fmt: skip
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@one.test")], MSG)
        await deliver(
            store, relay(config, port, username="relay", password="wrong", require_tls=False)
        )
    assert peer.received == []
    [entry] = await store.list_queue()
    assert "AUTH 535" in (entry.last_error or "")


async def test_opportunistic_starttls_to_mx_route(store: Store, config: Config) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("mx.other.test").configure_cert(server_ctx)  # name mismatch too
    port = free_port()
    cfg = replace(config, relay=RelayConfig(routes={"one.test": f"127.0.0.1:{port}"}))
    with SMTPPeer("127.0.0.1", port, tls_context=server_ctx) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@one.test")], MSG)
        await deliver(store, cfg)
    [got] = peer.received
    assert got.tls  # RFC 7435: encrypted although the certificate proves nothing
