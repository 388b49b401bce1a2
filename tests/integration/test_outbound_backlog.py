"""A large backlog for a dead destination does not starve a live one (issue 4: "10,000 queued
messages to a dead host: memory bounded, other destinations unaffected"), scaled to 2,000 so
the test stays bounded. The dead host accepts connections and never says a word (the costly
kind: every try waits for the greeting timeout, RFC 5321 4.5.3.2); the live one is aiosmtpd.
The worker runs in-process over a real store, as `postar serve` runs it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postar.config import Config, QueueConfig, RelayConfig, StoreConfig
from postar.queue.worker import OutboundWorker
from postar.store.interface import Store, open_store_backend
from postar.store.model import QueuedRecipient
from tests.support.server import free_port
from tests.support.smtppeer import RawPeer, SMTPPeer

pytestmark = pytest.mark.integration

DEAD_BACKLOG = 2000
LIVE = 10
LIVE_DEADLINE = 4.0  # seconds from the worker's start until every live message has arrived


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store_backend(Config(data_dir=tmp_path / "data", store=StoreConfig(fsync=False)))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_live_destination_not_starved_by_dead_backlog(store: Store, tmp_path: Path) -> None:
    live_port = free_port()
    with RawPeer(b"") as dead, SMTPPeer("127.0.0.1", live_port) as live:
        config = Config(
            hostname="mail.example.org",
            data_dir=tmp_path / "data",
            store=StoreConfig(fsync=False),
            queue=QueueConfig(
                connect_timeout=2,
                command_timeout=2,
                data_timeout=2,
                max_connections=10,
                max_per_destination=4,
                retry_first_seconds=600,
            ),
            relay=RelayConfig(
                routes={
                    "dead.test": f"127.0.0.1:{dead.port}",
                    "live.test": f"127.0.0.1:{live_port}",
                }
            ),
        )
        # The backlog is older than the live mail: earliest next_attempt first would mean the
        # live messages wait until all 2,000 dead ones have had their turn.
        msg = b"Subject: backlog\r\n\r\nbody\r\n"
        for start in range(0, DEAD_BACKLOG, 200):
            await asyncio.gather(
                *(
                    store.enqueue("a@example.org", [QueuedRecipient(f"u{i}@dead.test")], msg)
                    for i in range(start, start + 200)
                )
            )
        for i in range(LIVE):
            await store.enqueue("a@example.org", [QueuedRecipient(f"u{i}@live.test")], msg)
        worker = OutboundWorker(store, config)
        peak_tasks = 0
        t0 = time.monotonic()
        worker.start()
        try:
            while len(live.received) < LIVE and time.monotonic() - t0 < LIVE_DEADLINE:
                peak_tasks = max(peak_tasks, len(worker._tasks))
                worker.wake()
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - t0
            # Then the dead host's greeting timeout marks it dead, and the whole backlog is
            # deferred without a connection per message (bounded wait).
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                peak_tasks = max(peak_tasks, len(worker._tasks))
                queue = await store.list_queue()
                if all(e.attempts >= 1 for e in queue):
                    break
                await asyncio.sleep(0.25)
            settled = time.monotonic() - t0
        finally:
            await worker.stop(grace=1)
    print(f"live messages arrived after {elapsed:.2f}s, dead backlog deferred after {settled:.2f}s")
    assert len(live.received) == LIVE, f"{len(live.received)} live messages in {elapsed:.1f}s"
    # Bounded work in memory whatever the backlog: never more tasks than max_tasks
    # (max_in_flight delivering, as many again writing their results).
    assert peak_tasks <= worker.max_tasks
    # The dead host got a few connections (its slots; again if the 10 s dead-host memory ran
    # out on a slow machine), never one per queued message.
    assert dead.connections <= 4 * config.queue.max_per_destination
    assert len(queue) == DEAD_BACKLOG
    assert all("dead.test" in e.recipients[0].address for e in queue)
    assert all(e.attempts >= 1 for e in queue), "the dead backlog was not deferred in time"
    suspended = [e for e in queue if "delivery suspended" in (e.last_error or "")]
    assert len(suspended) > DEAD_BACKLOG // 2  # the cheap path, not an attempt each
