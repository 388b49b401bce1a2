"""MTA-STS (RFC 8461) on the outbound path, against real sockets on loopback: the policy's
TXT record from a dnslib server, the policy from an HTTPS server with a trustme certificate for
mta-sts.<domain>, and aiosmtpd MX peers with STARTTLS certificates from the same test CA
(trusted through `[relay] ca_file`, the test aid; `mta_sts_port` points at the HTTPS server).
The worker runs in-process over a real store; every wait is bounded by the short timeouts."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from postar.config import Config, DNSConfig, QueueConfig, RelayConfig, StoreConfig
from postar.queue.worker import OutboundWorker
from postar.store.interface import Store, open_store_backend
from postar.store.model import QueuedRecipient
from tests.support.dnsserver import LocalDNS
from tests.support.httpsserver import HTTPSServer
from tests.support.server import free_port
from tests.support.smtppeer import SMTPPeer

pytestmark = pytest.mark.integration

D = "sts.test"
RCPT = f"bob@{D}"
MSG = b"From: alice@example.org\r\nSubject: sts\r\n\r\nbody\r\n"
POLICY_PATH = "/.well-known/mta-sts.txt"


def policy(mode: str = "enforce", *mx: str) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx or (f"mx1.{D}",))]
    return ("\r\n".join([*lines, "max_age: 86400"]) + "\r\n").encode()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, name: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(ctx)
    return ctx


@pytest.fixture
def dns() -> Iterator[LocalDNS]:
    with LocalDNS() as server:
        server.add(D, "MX", (10, f"mx1.{D}"))
        server.add(f"mx1.{D}", "A", "127.0.0.2")
        server.add(f"mta-sts.{D}", "A", "127.0.0.1")
        server.add(f"_mta-sts.{D}", "TXT", "v=STSv1; id=20261127;")
        yield server


@pytest.fixture
def https(ca: trustme.CA) -> Iterator[HTTPSServer]:
    with HTTPSServer(server_context(ca, f"mta-sts.{D}")) as server:
        server.set(POLICY_PATH, policy())
        yield server


@pytest.fixture
def config(tmp_path: Path, ca: trustme.CA, dns: LocalDNS, https: HTTPSServer) -> Config:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Config(
        hostname="mail.example.org",
        data_dir=tmp_path / "data",
        store=StoreConfig(fsync=False),
        queue=QueueConfig(connect_timeout=2, command_timeout=3, data_timeout=3),
        dns=DNSConfig(nameservers=(dns.nameserver,), timeout=2),
        relay=RelayConfig(mx_port=free_port(), mta_sts_port=https.port, ca_file=ca_file),
    )


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    s = open_store_backend(config)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def send(store: Store, config: Config, worker: OutboundWorker | None = None) -> None:
    await store.enqueue("alice@example.org", [QueuedRecipient(RCPT)], MSG)
    own = worker is None
    worker = worker or OutboundWorker(store, config)
    await worker.run_due()
    await worker.drain()
    if own:
        await worker.stop(grace=1)


async def last_error(store: Store) -> str:
    [entry] = await store.list_queue()
    return entry.last_error or ""


async def test_enforce_delivers_over_verified_tls_and_caches_the_policy(
    store: Store, config: Config, ca: trustme.CA, https: HTTPSServer
) -> None:
    ctx = server_context(ca, f"mx1.{D}")
    with SMTPPeer("127.0.0.2", config.relay.mx_port, tls_context=ctx) as peer:
        worker = OutboundWorker(store, config)
        try:
            await send(store, config, worker)
            await send(store, config, worker)
        finally:
            await worker.stop(grace=1)
    assert [r.tls for r in peer.received] == [True, True]
    assert await store.list_queue() == []
    # One fetch for two messages: the TXT id did not change (RFC 8461 3.3).
    assert https.requests == [(POLICY_PATH, f"mta-sts.{D}")]


async def test_enforce_defers_when_the_certificate_names_another_host(
    store: Store, config: Config, ca: trustme.CA
) -> None:
    ctx = server_context(ca, "mx.elsewhere.test")  # trusted CA, wrong name
    with SMTPPeer("127.0.0.2", config.relay.mx_port, tls_context=ctx) as peer:
        await send(store, config)
    assert peer.received == []
    error = await last_error(store)
    assert "MTA-STS policy of sts.test" in error and "TLS required" in error


async def test_enforce_defers_when_the_mx_offers_no_starttls(store: Store, config: Config) -> None:
    with SMTPPeer("127.0.0.2", config.relay.mx_port) as peer:
        await send(store, config)
    assert peer.received == []
    assert "offers no STARTTLS" in await last_error(store)


async def test_enforce_defers_with_an_untrusted_ca(store: Store, config: Config) -> None:
    ctx = server_context(trustme.CA(), f"mx1.{D}")  # right name, CA nobody trusts
    with SMTPPeer("127.0.0.2", config.relay.mx_port, tls_context=ctx) as peer:
        await send(store, config)
    assert peer.received == []
    assert "MTA-STS policy" in await last_error(store)


async def test_enforce_skips_mx_hosts_the_policy_does_not_name(
    store: Store, config: Config, ca: trustme.CA, dns: LocalDNS
) -> None:
    # A forged, more preferred MX (what an attacker on the DNS path would add) is never tried.
    dns.add(D, "MX", (5, "evil.attacker.test"))
    dns.add("evil.attacker.test", "A", "127.0.0.3")
    port = config.relay.mx_port
    with (
        SMTPPeer("127.0.0.3", port, tls_context=server_context(ca, "evil.attacker.test")) as evil,
        SMTPPeer("127.0.0.2", port, tls_context=server_context(ca, f"mx1.{D}")) as good,
    ):
        await send(store, config)
    assert evil.received == []
    assert [r.recipients for r in good.received] == [[RCPT]]


async def test_enforce_with_no_matching_mx_defers_without_connecting(
    store: Store, config: Config, https: HTTPSServer, ca: trustme.CA
) -> None:
    https.set(POLICY_PATH, policy("enforce", "*.other.test"))
    ctx = server_context(ca, f"mx1.{D}")
    with SMTPPeer("127.0.0.2", config.relay.mx_port, tls_context=ctx) as peer:
        await send(store, config)
    assert peer.received == []
    error = await last_error(store)
    assert "no MX host matches the policy" in error
    [entry] = await store.list_queue()
    assert entry.attempts == 1  # deferred (4.7.5), not bounced


async def test_testing_mode_delivers_and_logs(
    store: Store,
    config: Config,
    https: HTTPSServer,
    ca: trustme.CA,
    caplog: pytest.LogCaptureFixture,
) -> None:
    https.set(POLICY_PATH, policy("testing"))
    ctx = server_context(ca, "mx.elsewhere.test")
    with (
        caplog.at_level(logging.WARNING, logger="postar.queue"),
        SMTPPeer("127.0.0.2", config.relay.mx_port, tls_context=ctx) as peer,
    ):
        await send(store, config)
    [got] = peer.received
    assert got.tls  # opportunistic TLS after the verified attempt failed
    assert await store.list_queue() == []
    assert any(r.getMessage() == "mta-sts testing: would defer" for r in caplog.records)


@pytest.mark.parametrize(
    ("status", "ctype", "headers"),
    [
        (404, "text/plain", {}),
        (301, "text/plain", {"Location": "https://elsewhere.test/policy"}),  # not followed
        (200, "text/html", {}),
    ],
)
async def test_no_valid_policy_means_opportunistic_delivery(
    store: Store,
    config: Config,
    https: HTTPSServer,
    ca: trustme.CA,
    status: int,
    ctype: str,
    headers: dict[str, str],
) -> None:
    https.set(POLICY_PATH, policy(), status=status, ctype=ctype, headers=headers)
    ctx = server_context(ca, "mx.elsewhere.test")
    with SMTPPeer("127.0.0.2", config.relay.mx_port, tls_context=ctx) as peer:
        await send(store, config)
    assert [r.tls for r in peer.received] == [True]
    assert len(https.requests) == 1


async def test_policy_host_with_a_wrong_certificate_is_no_policy(
    store: Store, config: Config, ca: trustme.CA
) -> None:
    # The policy server's certificate must be valid for mta-sts.<domain> (RFC 8461 3.3).
    with HTTPSServer(server_context(ca, "www.sts.test")) as bad:
        bad.set(POLICY_PATH, policy())
        cfg = replace(config, relay=replace(config.relay, mta_sts_port=bad.port))
        with SMTPPeer("127.0.0.2", cfg.relay.mx_port) as peer:  # no STARTTLS at all
            await send(store, cfg)
    assert [r.tls for r in peer.received] == [False]


async def test_mta_sts_off(store: Store, config: Config) -> None:
    cfg = replace(config, relay=replace(config.relay, mta_sts=False))
    with SMTPPeer("127.0.0.2", cfg.relay.mx_port) as peer:
        await send(store, cfg)
    assert len(peer.received) == 1
