"""The background indexer: when it indexes, and that searches never wait for it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from postar.store.interface import StoreError
from postar.store.model import DeliveryTarget
from postar.store.sqlite import indexer
from postar.store.sqlite.backend import SQLiteStore
from tests.unit.net.net_helpers import wait_until
from tests.unit.store.store_helpers import make_message


class _Backlog:
    """A fake store side: texts arrive by `arrive`, index() takes them in chunks."""

    def __init__(self) -> None:
        self.waiting = 0
        self.chunks: list[int] = []
        self.idle = 3600.0  # seconds since the store's last other caller

    def idle_for(self) -> float:
        return self.idle

    async def pending(self, limit: int) -> int:
        return min(self.waiting, limit)

    async def index(self, limit: int) -> int:
        done = min(self.waiting, limit)
        self.waiting -= done
        self.chunks.append(done)
        return done


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexer, "QUIET", 0.01)
    monkeypatch.setattr(indexer, "CHUNK", 10)
    monkeypatch.setattr(indexer, "MAX_BACKLOG", 100)
    monkeypatch.setattr(indexer, "MAX_WAIT", 60.0)


async def _run_for(backlog: _Backlog, rounds: int, arrivals: int = 0) -> None:
    """Run the indexer for about `rounds` looks, adding `arrivals` texts before each."""
    task = asyncio.create_task(
        indexer.index_in_background(backlog.pending, backlog.index, backlog.idle_for)
    )
    try:
        for _ in range(rounds):
            backlog.waiting += arrivals
            await asyncio.sleep(indexer.QUIET)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_waits_while_deliveries_arrive_then_indexes_in_chunks(fast: None) -> None:
    backlog = _Backlog()
    await _run_for(backlog, rounds=10, arrivals=3)  # a steady trickle, under MAX_BACKLOG
    assert backlog.chunks == []
    assert backlog.waiting == 30
    await _run_for(backlog, rounds=5)  # quiet: all of it, CHUNK at a time
    assert backlog.waiting == 0
    assert backlog.chunks[:3] == [10, 10, 10]


async def test_waits_while_the_store_has_readers(fast: None) -> None:
    backlog = _Backlog()
    backlog.waiting = 50
    backlog.idle = 0.0  # a POP3 download, say: every look finds the store just used
    await _run_for(backlog, rounds=10)
    assert backlog.chunks == []
    backlog.idle = 3600.0
    await _run_for(backlog, rounds=5)
    assert backlog.waiting == 0


async def test_indexes_under_load_past_the_backlog_limit(fast: None) -> None:
    backlog = _Backlog()
    backlog.waiting = 150  # beyond MAX_BACKLOG: index although texts keep coming
    await _run_for(backlog, rounds=10, arrivals=5)
    assert backlog.chunks
    assert backlog.waiting <= indexer.MAX_BACKLOG + 5


async def test_a_slow_trickle_is_indexed_every_max_wait(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexer, "MAX_WAIT", 0.05)
    backlog = _Backlog()
    await _run_for(backlog, rounds=20, arrivals=1)  # grows at every look: never quiet
    assert backlog.chunks
    assert backlog.waiting < 20


async def test_a_store_failure_is_retried_later(fast: None) -> None:
    backlog = _Backlog()
    backlog.waiting = 5
    failures = {"index": 2, "count": 2}

    async def flaky_index(limit: int) -> int:
        if failures["index"]:
            failures["index"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return await backlog.index(limit)

    async def flaky_count(limit: int) -> int:
        if failures["count"]:
            failures["count"] -= 1
            raise StoreError("store is busy")
        return await backlog.pending(limit)

    task = asyncio.create_task(
        indexer.index_in_background(flaky_count, flaky_index, backlog.idle_for)
    )
    try:
        await wait_until(lambda: backlog.waiting == 0, timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _unindexed(store: SQLiteStore) -> int:
    with sqlite3.connect(store.db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM blob_unindexed").fetchone()[0])


async def test_serving_store_indexes_and_search_never_waits(tmp_path: Path, fast: None) -> None:
    store = SQLiteStore(tmp_path / "data", fsync=False, index_in_background=True)
    await store.open()
    try:
        await store.add_domain("example.org")
        alice = await store.add_account("alice@example.org", "x", None)
        raw, parsed = make_message("quarterly figures", body="the zeppelin report")
        [d] = await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
        # Found before the indexer got to it, and after.
        assert await store.search_text(d.mailbox_id, "ZEPPELIN", "body") == {d.uid}
        await wait_until(lambda: _unindexed(store) == 0, timeout=5)
        assert await store.search_text(d.mailbox_id, "ZEPPELIN", "body") == {d.uid}
        assert await store.search_text(d.mailbox_id, "zeppelins", "body") == set()
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("needle", "text", "found"),
    [
        ("Straße", "DIE STRASSE", False),  # casefold would say yes; the index says no
        ("STRASSE", "die Straße", False),
        ("straße", "DIE STRAßE", True),
        ("\ufb01nal", "final", False),  # the "fi" ligature
        ("KÖLN", "in köln", True),
    ],
)
async def test_search_answers_the_same_before_and_after_indexing(
    tmp_path: Path, needle: str, text: str, found: bool
) -> None:
    store = SQLiteStore(tmp_path / "data", fsync=False)
    await store.open()
    try:
        await store.add_domain("example.org")
        alice = await store.add_account("alice@example.org", "x", None)
        raw, parsed = make_message("search", body=text)
        [d] = await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
        expected = {d.uid} if found else set()
        assert _unindexed(store) == 1
        assert await store.search_text(d.mailbox_id, needle, "body") == expected
        assert await store.index_pending(10) == 1
        assert await store.search_text(d.mailbox_id, needle, "body") == expected
    finally:
        await store.close()


async def test_guest_and_plain_stores_do_not_index(tmp_path: Path, fast: None) -> None:
    owner = SQLiteStore(tmp_path / "data", fsync=False)  # a management command, say
    await owner.open()
    try:
        await owner.add_domain("example.org")
        alice = await owner.add_account("alice@example.org", "x", None)
        raw, parsed = make_message()
        await owner.deliver(raw, parsed, [DeliveryTarget(alice.id)])
        guest = SQLiteStore(
            tmp_path / "data", fsync=False, beside_owner=True, index_in_background=True
        )
        await guest.open()
        try:
            await asyncio.sleep(indexer.QUIET * 10)
            assert _unindexed(owner) == 1
        finally:
            await guest.close()
    finally:
        await owner.close()
