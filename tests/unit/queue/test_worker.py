"""The outbound worker against a real store, a DNS server on loopback and SMTP peers.

Each test queues mail the way smtp/server.py does (store.enqueue), runs one round of the
worker (run_due + drain) with a clock the test moves, and looks at what the peers received,
what is left in the queue and what landed in the sender's INBOX.
"""

from __future__ import annotations

import asyncio
import email
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dkim
import pytest

from postar.config import Config, DNSConfig, QueueConfig, RelayConfig, StoreConfig
from postar.queue import worker as worker_module
from postar.queue.dkim import create_keys
from postar.queue.worker import OutboundWorker
from postar.store.interface import Store, open_store_backend
from postar.store.model import QueuedRecipient, QueueEntry
from tests.support.dnsserver import LocalDNS
from tests.support.server import free_port
from tests.support.smtppeer import RawPeer, SMTPPeer

MSG = (
    b"From: Alice <alice@example.org>\r\nTo: bob@remote.test\r\nSubject: hi\r\n"
    b"Message-ID: <1@example.org>\r\n\r\nhello\r\n.dot line\r\n"
)


class Clock:
    def __init__(self) -> None:
        # The store stamps entries with the real time; this clock starts there and only
        # moves when a test says so.
        self.now = time.time() + 1

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dns() -> Iterator[LocalDNS]:
    with LocalDNS() as server:
        yield server


@pytest.fixture
def mx_port() -> int:
    return free_port()


@pytest.fixture
def config(tmp_path: Path, dns: LocalDNS, mx_port: int) -> Config:
    return Config(
        hostname="mail.example.org",
        data_dir=tmp_path / "data",
        store=StoreConfig(fsync=False),
        dns=DNSConfig(nameservers=(dns.nameserver,), timeout=2.0),
        relay=RelayConfig(mx_port=mx_port),
        queue=QueueConfig(
            retry_first_seconds=60, connect_timeout=2, command_timeout=2, data_timeout=2
        ),
    )


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    s = open_store_backend(config)
    await s.open()
    await s.add_domain("example.org")
    await s.add_account("alice@example.org", "$argon2id$fake", None)
    try:
        yield s
    finally:
        await s.close()


async def run_round(store: Store, config: Config, clock: Clock, **kw: Any) -> OutboundWorker:
    worker = OutboundWorker(store, config, clock=clock, **kw)
    await worker.run_due()
    await worker.drain()
    await worker.stop(grace=1)
    return worker


async def inbox(store: Store, address: str = "alice@example.org") -> list[bytes]:
    account = await store.get_account(address)
    assert account is not None
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    return [await store.read_blob(m.blob_id) for m in await store.list_messages(box.id)]


async def test_mx_preference_best_first(
    store: Store, config: Config, dns: LocalDNS, mx_port: int
) -> None:
    dns.add("remote.test", "MX", (20, "mx2.remote.test"))
    dns.add("remote.test", "MX", (10, "mx1.remote.test"))
    dns.add("mx1.remote.test", "A", "127.0.0.1")
    dns.add("mx2.remote.test", "A", "127.0.0.3")
    with SMTPPeer("127.0.0.1", mx_port) as best, SMTPPeer("127.0.0.3", mx_port) as worse:
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], MSG)
        await run_round(store, config, Clock())
    assert len(best.received) == 1 and worse.received == []
    got = best.received[0]
    assert got.sender == "alice@example.org" and got.recipients == ["bob@remote.test"]
    assert got.content.endswith(MSG)  # dot-stuffing undone by the peer: bytes intact
    assert await store.list_queue() == []


async def test_no_mx_falls_back_to_address(
    store: Store, config: Config, dns: LocalDNS, mx_port: int
) -> None:
    dns.add("remote.test", "A", "127.0.0.1")  # RFC 5321 5.1 implicit MX
    with SMTPPeer("127.0.0.1", mx_port) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], MSG)
        await run_round(store, config, Clock())
    assert len(peer.received) == 1


async def test_dead_mx_then_live_one(
    store: Store, config: Config, dns: LocalDNS, mx_port: int
) -> None:
    dns.add("remote.test", "MX", (10, "dead.remote.test"))
    dns.add("remote.test", "MX", (20, "live.remote.test"))
    dns.add("dead.remote.test", "A", "127.0.0.2")  # nothing listens there
    dns.add("live.remote.test", "A", "127.0.0.1")
    with SMTPPeer("127.0.0.1", mx_port) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], MSG)
        await run_round(store, config, Clock())
    assert len(peer.received) == 1
    assert await store.list_queue() == []


async def test_null_mx_bounces_at_once(store: Store, config: Config, dns: LocalDNS) -> None:
    dns.add("remote.test", "MX", (0, "."))
    await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], MSG)
    await run_round(store, config, Clock())
    assert await store.list_queue() == []
    [bounce] = await inbox(store)
    report = email.message_from_bytes(bounce)
    assert report.get_content_type() == "multipart/report"
    status = bounce.decode()
    assert "Action: failed" in status and "Status: 5.1.10" in status
    assert "Final-Recipient: rfc822; bob@remote.test" in status
    assert bounce.startswith(b"Return-Path: <>\r\n")


async def test_nxdomain_bounces_and_null_sender_gets_nothing(store: Store, config: Config) -> None:
    await store.enqueue("", [QueuedRecipient("bob@nowhere.test")], MSG)
    await store.enqueue("alice@example.org", [QueuedRecipient("x@nowhere.test")], MSG)
    await run_round(store, config, Clock())
    assert await store.list_queue() == []
    [bounce] = await inbox(store)  # one: the null sender's failure reports to nobody
    assert b"x@nowhere.test" in bounce and b"Status: 5.1.2" in bounce


async def test_4xx_then_250_after_retry(
    store: Store, config: Config, dns: LocalDNS, mx_port: int
) -> None:
    dns.add("remote.test", "A", "127.0.0.1")
    clock = Clock()
    with SMTPPeer("127.0.0.1", mx_port) as peer:
        peer.handler.rcpt_script["bob@remote.test"] = ["451 4.3.0 try later", "250 OK"]
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], MSG)
        await run_round(store, config, clock)
        assert peer.received == []
        [entry] = await store.list_queue()
        assert entry.attempts == 1 and "451 4.3.0" in (entry.last_error or "")
        assert entry.next_attempt == clock.now + 60  # retry_first_seconds
        await run_round(store, config, clock)  # not due yet: nothing happens
        assert peer.received == []
        clock.now += 61
        await run_round(store, config, clock)
    assert len(peer.received) == 1
    assert await store.list_queue() == []
    assert await inbox(store) == []  # no DSN for a delivered message without NOTIFY=SUCCESS


async def test_backoff_doubles_then_delay_warning_then_give_up(
    store: Store, config: Config, dns: LocalDNS, mx_port: int
) -> None:
    dns.add("remote.test", "A", "127.0.0.1")
    cfg = replace(
        config,
        queue=replace(config.queue, delay_warning_seconds=50, give_up_seconds=1000),
    )
    clock = Clock()
    with SMTPPeer("127.0.0.1", mx_port) as peer:
        peer.handler.rcpt_script["bob@remote.test"] = ["421 4.4.2 busy"]
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], MSG)
        start = clock.now
        await run_round(store, cfg, clock)
        [e] = await store.list_queue()
        assert e.next_attempt - clock.now == 60
        clock.now = e.next_attempt
        await run_round(store, cfg, clock)
        [e] = await store.list_queue()
        assert e.next_attempt - clock.now == 120  # doubled (RFC 5321 4.5.4.1 backoff)
        assert "delay_warned" in e.extra
        [warning] = await inbox(store)
        assert b"Action: delayed" in warning and b"Will-Retry-Until:" in warning
        assert b"text/rfc822-headers" in warning  # delay reports carry the header only
        clock.now = start + 1000
        await run_round(store, cfg, clock)
    assert await store.list_queue() == []
    messages = await inbox(store)
    assert len(messages) == 2  # one warning, one failure: the warning is not repeated
    assert b"Action: failed" in messages[1] and b"Status: 5.4.7" in messages[1]
    assert b"message/rfc822" in messages[1]  # the failure returns the whole message


async def test_5xx_fails_one_recipient_delivers_the_other(
    store: Store, config: Config, dns: LocalDNS, mx_port: int
) -> None:
    dns.add("remote.test", "A", "127.0.0.1")
    with SMTPPeer("127.0.0.1", mx_port) as peer:
        peer.handler.rcpt_script["nobody@remote.test"] = ["550 5.1.1 no such user"]
        await store.enqueue(
            "alice@example.org",
            [
                QueuedRecipient("nobody@remote.test", ("FAILURE",), "rfc822;nobody@remote.test"),
                QueuedRecipient("bob@remote.test"),
            ],
            MSG,
            ret="HDRS",
            envid="env-42",
        )
        await run_round(store, config, Clock())
    assert [r.recipients for r in peer.received] == [["bob@remote.test"]]
    assert await store.list_queue() == []
    [bounce] = await inbox(store)
    text = bounce.decode()
    assert "Original-Envelope-Id: env-42" in text
    assert "Original-Recipient: rfc822; nobody@remote.test" in text
    assert "Diagnostic-Code: smtp; remote.test said: 550 5.1.1 no such user" in text
    assert "bob@remote.test>: " not in text  # only the failed recipient is reported
    assert "text/rfc822-headers" in text and "hello" not in text.split("rfc822-headers")[1]


async def test_notify_never_and_success(
    store: Store, config: Config, dns: LocalDNS, mx_port: int
) -> None:
    dns.add("remote.test", "A", "127.0.0.1")
    with SMTPPeer("127.0.0.1", mx_port) as peer:
        peer.handler.rcpt_script["nobody@remote.test"] = ["550 5.1.1 no such user"]
        await store.enqueue(
            "alice@example.org",
            [
                QueuedRecipient("nobody@remote.test", ("NEVER",)),
                QueuedRecipient("bob@remote.test", ("SUCCESS",)),
            ],
            MSG,
        )
        await run_round(store, config, Clock())
    [report] = await inbox(store)
    assert b"Action: relayed" in report  # aiosmtpd has no DSN extension: RFC 3461 "relayed"
    assert b"nobody@remote.test" not in report


async def test_remote_sender_gets_dsn_queued_with_null_sender(
    store: Store, config: Config, dns: LocalDNS
) -> None:
    dns.add("remote.test", "MX", (0, "."))
    await store.enqueue("carol@elsewhere.test", [QueuedRecipient("bob@remote.test")], MSG)
    await run_round(store, config, Clock())
    [dsn] = await store.list_queue()
    assert dsn.sender == "" and [r.address for r in dsn.recipients] == ["carol@elsewhere.test"]


async def test_loop_detected(store: Store, config: Config, dns: LocalDNS, mx_port: int) -> None:
    dns.add("remote.test", "A", "127.0.0.1")
    looping = b"Received: from a by b; x\r\n" * 60 + MSG
    with SMTPPeer("127.0.0.1", mx_port) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], looping)
        await run_round(store, config, Clock())
    assert peer.received == []
    [bounce] = await inbox(store)
    assert b"Status: 5.4.6" in bounce


@pytest.mark.parametrize(
    ("greeting", "error"),
    [
        (b"", "timeout after 2s"),  # never answers: RFC 5321 4.5.3.2.1 greeting timeout
        (b"garbage without a reply code\r\n", "garbage reply line"),
        (b"220-" + b"x" * 100_000, "longer than 8192 bytes"),  # one endless line
    ],
    ids=["silent", "garbage", "huge-line"],
)
async def test_bad_peer_defers(
    store: Store, config: Config, dns: LocalDNS, mx_port: int, greeting: bytes, error: str
) -> None:
    dns.add("remote.test", "A", "127.0.0.1")
    with RawPeer(greeting, port=mx_port) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], MSG)
        await run_round(store, config, Clock())
        assert peer.connections == 1
    [entry] = await store.list_queue()
    assert entry.attempts == 1 and error in (entry.last_error or "")


async def test_dead_destination_does_not_hold_up_others(
    store: Store, config: Config, dns: LocalDNS, mx_port: int
) -> None:
    dns.add("dead.test", "A", "127.0.0.2")
    dns.add("remote.test", "A", "127.0.0.1")
    with SMTPPeer("127.0.0.1", mx_port) as peer:
        for i in range(30):
            await store.enqueue("alice@example.org", [QueuedRecipient(f"u{i}@dead.test")], MSG)
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], MSG)
        worker = OutboundWorker(store, config, clock=Clock())
        # One poll starts at most 2 x max_per_destination entries per destination, so the
        # live one is among the first tasks although 30 older entries are due before it.
        assert await worker.run_due() == 2 * config.queue.max_per_destination + 1
        await worker.drain()
        # The next poll knows the destination is dead: the rest is deferred without a try.
        assert await worker.run_due() == 0
        await worker.drain()
        await worker.stop(grace=1)
    assert len(peer.received) == 1
    queued = await store.list_queue()
    assert len(queued) == 30 and all(e.attempts == 1 for e in queued)
    suspended = [e for e in queued if "delivery suspended" in (e.last_error or "")]
    assert len(suspended) == 30 - 2 * config.queue.max_per_destination


async def test_routes_and_connection_reuse(store: Store, config: Config) -> None:
    port = free_port()
    cfg = replace(config, relay=replace(config.relay, routes={"routed.test": f"127.0.0.1:{port}"}))
    with SMTPPeer("127.0.0.1", port) as peer:
        for i in range(5):
            await store.enqueue("alice@example.org", [QueuedRecipient(f"u{i}@routed.test")], MSG)
        worker = OutboundWorker(store, cfg, clock=Clock())
        await worker.run_due()
        await worker.drain()
        pooled = [p.client.transactions for s in worker._hops.values() for p in s.idle]
        await worker.stop(grace=1)
    assert len(peer.received) == 5
    # 5 messages over at most max_per_destination connections, reused while idle
    assert sum(pooled) == 5 and len(pooled) <= cfg.queue.max_per_destination


async def test_attempt_ending_during_a_scan_does_not_start_the_entry_again(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan reads its page in a store thread, from a snapshot; an attempt that delivers and
    removes its entry after that snapshot, before the scan looks at the page, left the stale
    copy looking startable: delivered twice (issue 4, the backlog test's 13-14 for 10). The
    store now leaves entries in flight out of the page; the outcome is what is tested."""
    port = free_port()
    cfg = replace(config, relay=replace(config.relay, routes={"routed.test": f"127.0.0.1:{port}"}))
    with SMTPPeer("127.0.0.1", port) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("u@routed.test")], MSG)
        worker = OutboundWorker(store, cfg, clock=Clock())
        real_attempt = worker.attempt
        may_deliver = asyncio.Event()

        async def held_attempt(entry: QueueEntry) -> None:
            await may_deliver.wait()
            await real_attempt(entry)

        monkeypatch.setattr(worker, "attempt", held_attempt)
        assert await worker.run_due() == 1  # the first attempt, held before delivering

        real_read = store.due_queue_entries
        page_read, go_on = asyncio.Event(), asyncio.Event()
        pages: list[list[QueueEntry]] = []

        async def paused_read(*args: Any, **kwargs: Any) -> list[QueueEntry]:
            page = await real_read(*args, **kwargs)
            pages.append(page)
            page_read.set()
            await go_on.wait()
            return page

        monkeypatch.setattr(store, "due_queue_entries", paused_read)
        scan = asyncio.create_task(worker.run_due())
        await page_read.wait()  # the snapshot holds the entry, not yet delivered
        may_deliver.set()
        await worker.drain()  # delivered, removed from the queue, forgotten by the worker
        assert len(peer.received) == 1 and await store.list_queue() == []
        go_on.set()
        started = await scan
        await worker.drain()
        await worker.stop(grace=1)
    assert len(pages) == 1 and started == 0
    assert len(peer.received) == 1


async def test_overlapping_scans_do_not_start_an_entry_the_other_one_finished(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scan B reads a page holding an entry nobody has started; scan A (another run_due)
    starts it, and its delivery ends, before B looks at that page: B's copy is stale and must
    not be started (entries ended during a scan are remembered for it)."""
    port = free_port()
    cfg = replace(config, relay=replace(config.relay, routes={"routed.test": f"127.0.0.1:{port}"}))
    with SMTPPeer("127.0.0.1", port) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("u@routed.test")], MSG)
        worker = OutboundWorker(store, cfg, clock=Clock())
        real_read = store.due_queue_entries
        page_read, go_on = asyncio.Event(), asyncio.Event()
        pages: list[list[QueueEntry]] = []

        async def read(*args: Any, **kwargs: Any) -> list[QueueEntry]:
            page = await real_read(*args, **kwargs)
            if not pages:  # scan B: its first page waits
                pages.append(page)
                page_read.set()
                await go_on.wait()
            return page

        monkeypatch.setattr(store, "due_queue_entries", read)
        scan_b = asyncio.create_task(worker.run_due())
        await page_read.wait()
        assert [e.recipients[0].address for e in pages[0]] == ["u@routed.test"]
        assert await worker.run_due() == 1  # scan A starts it
        await worker.drain()  # delivered and removed
        assert len(peer.received) == 1
        go_on.set()
        started = await scan_b
        await worker.drain()
        await worker.stop(grace=1)
    assert started == 0
    assert len(peer.received) == 1


async def test_no_reply_to_the_final_dot_on_a_pooled_connection_is_not_resent(
    store: Store, config: Config
) -> None:
    """A pooled connection that fails after the final dot was sent may have delivered the
    message (RFC 1047): it is deferred, not sent again at once on a fresh connection."""
    port = free_port()
    cfg = replace(
        config,
        relay=replace(config.relay, routes={"routed.test": f"127.0.0.1:{port}"}),
        queue=replace(config.queue, data_timeout=0.3),
    )
    with SMTPPeer("127.0.0.1", port) as peer:
        worker = OutboundWorker(store, cfg, clock=Clock())
        await store.enqueue("alice@example.org", [QueuedRecipient("a@routed.test")], MSG)
        await worker.run_due()
        await worker.drain()
        assert len(peer.received) == 1 and sum(len(s.idle) for s in worker._hops.values()) == 1
        # The peer records the next message, then answers the dot only after our timeout.
        peer.handler.data_delay = 1.5
        await store.enqueue("alice@example.org", [QueuedRecipient("b@routed.test")], MSG)
        await worker.run_due()
        await worker.drain()
        await worker.stop(grace=1)
    assert [m.recipients for m in peer.received] == [["a@routed.test"], ["b@routed.test"]]
    (left,) = await store.list_queue()
    assert left.attempts == 1 and "after the end of the message" in (left.last_error or "")


async def test_enqueue_wakes_the_worker_before_its_poll(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mail accepted for a remote recipient starts its delivery at once (Postfix: cleanup
    tells qmgr), not at the worker's next poll. The poll is pushed out to an hour, so only
    the enqueue's wake-up can start the delivery."""
    monkeypatch.setattr(worker_module, "POLL_SECONDS", 3600.0)
    port = free_port()
    cfg = replace(config, relay=replace(config.relay, routes={"routed.test": f"127.0.0.1:{port}"}))
    with SMTPPeer("127.0.0.1", port) as peer:
        worker = OutboundWorker(store, cfg)
        scans: list[int] = []
        real_run_due = worker.run_due

        async def counted_run_due() -> int:
            started = await real_run_due()
            scans.append(started)
            return started

        monkeypatch.setattr(worker, "run_due", counted_run_due)
        delivered = asyncio.Event()
        real_record = worker._record

        async def record(*args: Any) -> None:
            await real_record(*args)
            delivered.set()

        monkeypatch.setattr(worker, "_record", record)
        worker.start()
        try:
            while not scans:  # the start-up scan: an empty queue, then the hour-long wait
                await asyncio.sleep(0)
            assert scans == [0]
            # What smtp/server.py does at the end of DATA for a remote recipient.
            await store.enqueue("alice@example.org", [QueuedRecipient("u@routed.test")], MSG)
            await asyncio.wait_for(delivered.wait(), 30)  # a hang guard, not a speed limit
        finally:
            await worker.stop(grace=1)
    assert scans[:2] == [0, 1]  # the scan after the enqueue started it
    assert len(peer.received) == 1 and await store.list_queue() == []


async def test_a_finished_delivery_frees_its_slot_for_the_backlog_at_once(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more due mail than slots, each delivery that ends starts the next one, not the
    next poll (pushed out to an hour here): the poll had capped the rate at max_in_flight
    messages a second."""
    monkeypatch.setattr(worker_module, "POLL_SECONDS", 3600.0)
    port = free_port()
    cfg = replace(
        config,
        relay=replace(config.relay, routes={"routed.test": f"127.0.0.1:{port}"}),
        queue=replace(config.queue, max_connections=1, max_per_destination=1),
    )
    with SMTPPeer("127.0.0.1", port) as peer:
        for i in range(6):
            await store.enqueue("alice@example.org", [QueuedRecipient(f"u{i}@routed.test")], MSG)
        worker = OutboundWorker(store, cfg)
        assert worker.max_in_flight == 2
        done = asyncio.Event()
        real_record = worker._record

        async def record(*args: Any) -> None:
            await real_record(*args)
            if not await store.list_queue():
                done.set()

        monkeypatch.setattr(worker, "_record", record)
        worker.start()
        try:
            await asyncio.wait_for(done.wait(), 30)  # a hang guard, not a speed limit
        finally:
            await worker.stop(grace=1)
    assert sorted(r for m in peer.received for r in m.recipients) == [
        f"u{i}@routed.test" for i in range(6)
    ]


async def test_deliveries_waiting_for_their_commit_leave_their_slots(
    store: Store, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivered entry whose removal is not committed yet (a slow fsync) stays in flight,
    so it is never started again, but its delivery slot goes to the next entry."""
    monkeypatch.setattr(worker_module, "POLL_SECONDS", 3600.0)
    port = free_port()
    cfg = replace(
        config,
        relay=replace(config.relay, routes={"routed.test": f"127.0.0.1:{port}"}),
        queue=replace(config.queue, max_connections=1, max_per_destination=1),
    )
    commits_may_finish = asyncio.Event()
    real_remove = store.remove_queue_entry

    async def slow_remove(entry_id: int) -> None:
        await commits_may_finish.wait()
        await real_remove(entry_id)

    monkeypatch.setattr(store, "remove_queue_entry", slow_remove)
    with SMTPPeer("127.0.0.1", port) as peer:
        for i in range(5):
            await store.enqueue("alice@example.org", [QueuedRecipient(f"u{i}@routed.test")], MSG)
        worker = OutboundWorker(store, cfg)
        assert worker.max_in_flight == 2
        worker.start()
        try:
            async with asyncio.timeout(30):  # a hang guard, not a speed limit
                while len(peer.received) < 5:
                    await asyncio.sleep(0.01)
            assert len(worker._tasks) == 5  # all delivered, none committed: all still in flight
            commits_may_finish.set()
            await worker.drain()
        finally:
            commits_may_finish.set()
            await worker.stop(grace=1)
    assert sorted(r for m in peer.received for r in m.recipients) == [
        f"u{i}@routed.test" for i in range(5)
    ]
    assert await store.list_queue() == []


@pytest.mark.parametrize("extra", [0, 64 * 1024 - len(MSG), 64 * 1024 - len(MSG) + 1, 150_000])
async def test_message_read_whole_around_the_first_read(
    store: Store, config: Config, extra: int
) -> None:
    """The worker reads a message in a first bounded read and, if that was full, the rest:
    sizes just under, at and over that bound arrive intact."""
    port = free_port()
    cfg = replace(config, relay=replace(config.relay, routes={"routed.test": f"127.0.0.1:{port}"}))
    raw = MSG + (b"x" * 76 + b"\r\n") * (extra // 78) + b"y" * (extra % 78)
    with SMTPPeer("127.0.0.1", port) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("u@routed.test")], raw)
        await run_round(store, cfg, Clock())
    assert len(peer.received) == 1
    assert peer.received[0].content.endswith(raw if raw.endswith(b"\r\n") else raw + b"\r\n")


async def test_dkim_signature_verifies(
    store: Store, config: Config, dns: LocalDNS, mx_port: int
) -> None:
    keys = create_keys(config.data_dir, "example.org")
    dns.add("remote.test", "A", "127.0.0.1")
    with SMTPPeer("127.0.0.1", mx_port) as peer:
        await store.enqueue("alice@example.org", [QueuedRecipient("bob@remote.test")], MSG)
        await run_round(store, config, Clock())
    [got] = peer.received
    records = {f"{k.record_name}.".encode(): k.record_value.encode() for k in keys}
    assert got.content.count(b"DKIM-Signature:") == 2
    signed = got.content[got.content.find(b"DKIM-Signature:") :]
    for i in range(2):
        assert dkim.DKIM(signed).verify(i, dnsfunc=lambda name, timeout=5: records.get(name))
    tampered = signed.replace(b"hello", b"HELLO")
    with pytest.raises(dkim.ValidationError, match="body hash mismatch"):
        dkim.DKIM(tampered).verify(0, dnsfunc=lambda name, timeout=5: records.get(name))
