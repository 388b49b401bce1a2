"""The outbound worker's queue API: due batches, rescheduling, the extra map."""

from __future__ import annotations

import asyncio

import pytest

from postar.store.interface import NotFound, Store
from postar.store.model import QueuedRecipient
from tests.unit.store.store_helpers import StoreFactory

RAW = b"Subject: q\r\n\r\nbody\r\n"


async def test_due_entries_in_order_and_bounded(store: Store) -> None:
    entries = [
        await store.enqueue("a@example.org", [QueuedRecipient(f"r{i}@remote.test")], RAW)
        for i in range(5)
    ]
    assert await store.next_queue_attempt() == entries[0].next_attempt
    now = entries[-1].next_attempt
    for i, e in enumerate(entries):
        await store.update_queue_entry(
            e.id,
            recipients=e.recipients,
            next_attempt=now + 100 - i,
            attempts=1,
            last_error=None,
        )
    assert await store.due_queue_entries(now + 10, 10) == []
    due = await store.due_queue_entries(now + 100, 2)
    # the latest-scheduled entry is the first one created (next_attempt now + 100 - 0)
    assert [e.id for e in due] == [entries[4].id, entries[3].id]
    # Keyset paging: the page after the last entry seen, then nothing after the end.
    last = due[-1]
    page = await store.due_queue_entries(now + 100, 2, after=(last.next_attempt, last.id))
    assert [e.id for e in page] == [entries[2].id, entries[1].id]
    rest = await store.due_queue_entries(now + 100, 10, after=(page[-1].next_attempt, page[-1].id))
    assert [e.id for e in rest] == [entries[0].id]
    assert await store.next_queue_attempt() == now + 96
    # Entries in flight are left out of the page, however early they are due.
    skipped = await store.due_queue_entries(now + 100, 2, skip_ids={entries[4].id, entries[2].id})
    assert [e.id for e in skipped] == [entries[3].id, entries[1].id]


async def test_reschedule_one_and_all(store: Store) -> None:
    a = await store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], RAW)
    b = await store.enqueue("a@example.org", [QueuedRecipient("y@remote.test")], RAW)
    assert await store.reschedule_queue(5000.0, a.id) == 1
    got = await store.get_queue_entry(a.id)
    assert got is not None and got.next_attempt == 5000.0
    assert await store.reschedule_queue(7.0) == 2
    assert {e.next_attempt for e in await store.list_queue()} == {7.0}
    with pytest.raises(NotFound):
        await store.reschedule_queue(1.0, b.id + 100)


async def test_extra_replaced_only_when_given(store: Store) -> None:
    e = await store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], RAW)
    await store.update_queue_entry(
        e.id,
        recipients=e.recipients,
        next_attempt=1.0,
        attempts=1,
        last_error="421",
        extra={"delay_warned": "1"},
    )
    await store.update_queue_entry(
        e.id, recipients=e.recipients, next_attempt=2.0, attempts=2, last_error="421"
    )
    got = await store.get_queue_entry(e.id)
    assert got is not None and got.extra == {"delay_warned": "1"} and got.attempts == 2


async def test_due_entries_skip_domains(store: Store) -> None:
    a = await store.enqueue("s@example.org", [QueuedRecipient("x@Busy.test")], RAW)
    b = await store.enqueue(
        "s@example.org", [QueuedRecipient("y@busy.test"), QueuedRecipient("z@free.test")], RAW
    )
    c = await store.enqueue("s@example.org", [QueuedRecipient("w@free.test")], RAW)
    now = c.next_attempt + 1
    got = await store.due_queue_entries(now, 10, skip_domains={"busy.test"})
    # a's only domain is skipped; b also goes to free.test, so it stays (its last recipient).
    assert [e.id for e in got] == [b.id, c.id]
    assert len(await store.due_queue_entries(now, 10, skip_domains={"busy.test", "free.test"})) == 0
    assert [e.id for e in await store.due_queue_entries(now, 10)] == [a.id, b.id, c.id]


async def test_watch_queue_called_after_enqueue_and_reschedule(store: Store) -> None:
    calls: list[str] = []
    unwatch = store.watch_queue(lambda: calls.append("queue changed"))
    e = await store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], RAW)
    assert calls  # by the time enqueue returns: after the commit
    calls.clear()
    await store.reschedule_queue(e.next_attempt, e.id)
    assert calls
    unwatch()
    calls.clear()
    await store.enqueue("a@example.org", [QueuedRecipient("y@remote.test")], RAW)
    assert calls == []


async def test_hold_and_release(store: Store) -> None:
    a = await store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], RAW)
    b = await store.enqueue("a@example.org", [QueuedRecipient("y@remote.test")], RAW)
    now = b.next_attempt
    assert await store.hold_queue() == 2
    assert await store.due_queue_entries(now + 10**9, 10) == []
    assert all(e.held for e in await store.list_queue())
    # A flush leaves held mail held; the worker's result for an attempt under way keeps it.
    assert await store.reschedule_queue(now) == 0
    await store.update_queue_entry(
        a.id, recipients=a.recipients, next_attempt=now + 60, attempts=1, last_error="4xx"
    )
    assert (await store.get_queue_entry(a.id)).held  # type: ignore[union-attr]
    calls: list[str] = []
    store.watch_queue(lambda: calls.append("released"))
    assert await store.release_queue(now, b.id) == 1
    assert calls  # the worker is told at once
    assert [e.id for e in await store.due_queue_entries(now, 10)] == [b.id]
    assert await store.release_queue(now) == 1
    assert {e.id for e in await store.due_queue_entries(now, 10)} == {a.id, b.id}
    assert await store.hold_queue(a.id) == 1
    assert await store.release_queue(now, b.id) == 0  # not held
    with pytest.raises(NotFound):
        await store.hold_queue(999_999)
    with pytest.raises(NotFound):
        await store.release_queue(now, 999_999)


async def test_watch_queue_hears_of_another_process(
    store: Store, store_factory: StoreFactory
) -> None:
    """`postar queue flush` runs in another process, on its own store beside the server's:
    the server's watchers hear of its commit (SQLite's data_version), not only at a poll."""
    e = await store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], RAW)
    heard = asyncio.Event()
    unwatch = store.watch_queue(heard.set)
    other = store_factory(beside_owner=True)
    await other.open()
    try:
        assert await other.reschedule_queue(e.next_attempt) == 1
    finally:
        await other.close()
    await asyncio.wait_for(heard.wait(), 30)  # a hang guard, not a speed limit
    unwatch()
