"""Reopen, group commit, the change feed, backup and restore."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from postar.store.backup import RestoreError, restore
from postar.store.interface import AlreadyExists, Store
from postar.store.model import RESYNC_ALL, DeliveryTarget, FlagMode, MailboxChange
from tests.unit.store.store_helpers import StoreFactory, make_message, make_store


async def _setup(store: Store) -> int:
    await store.add_domain("example.org")
    account = await store.add_account("alice@example.org", "x", None)
    return account.id


async def test_close_and_reopen_keeps_everything(store_factory: StoreFactory) -> None:
    store = store_factory(fsync=True)
    await store.open()
    account_id = await _setup(store)
    sent: list[bytes] = []
    for i in range(5):
        raw, parsed = make_message(f"message {i}")
        await store.deliver(raw, parsed, [DeliveryTarget(account_id)])
        sent.append(raw)
    inbox = await store.get_mailbox(account_id, "INBOX")
    assert inbox is not None
    await store.set_flags(inbox.id, [2], FlagMode.ADD, ["\\Seen"])
    await store.expunge(inbox.id, [5])
    await store.create_mailbox(account_id, "Kept/Child")
    inbox = await store.get_mailbox_by_id(inbox.id)
    assert inbox is not None
    await store.close()

    reopened = store_factory(fsync=True)
    await reopened.open()
    try:
        again = await reopened.get_mailbox(account_id, "INBOX")
        assert again is not None
        assert again == inbox
        assert again.uidnext == 6
        records = await reopened.list_messages(inbox.id)
        assert [r.uid for r in records] == [1, 2, 3, 4]
        assert records[1].flags == {"\\Seen"}
        assert [await reopened.read_blob(r.blob_id) for r in records] == sent[:4]
        assert await reopened.expunged_since(inbox.id, 0) == [5]
        assert await reopened.get_mailbox(account_id, "Kept/Child") is not None
        # Counters continue: the next message gets UID 6 and a larger MODSEQ.
        raw, parsed = make_message()
        record = await reopened.append(account_id, inbox.id, raw, parsed)
        assert record.uid == 6 and record.modseq > again.highestmodseq
    finally:
        await reopened.close()


async def test_concurrent_deliveries_share_commits(store_factory: StoreFactory) -> None:
    store = store_factory(fsync=True, group_commit_window=0.005)
    await store.open()
    try:
        account_id = await _setup(store)
        messages = [make_message(f"burst {i}") for i in range(100)]
        before = getattr(store, "commit_count", None)
        if before is None:
            pytest.skip("backend exposes no commit counter")
        results = await asyncio.gather(
            *(store.deliver(raw, p, [DeliveryTarget(account_id)]) for raw, p in messages)
        )
        commits = store.commit_count - before  # type: ignore[attr-defined]
        assert sorted(d.uid for [d] in results) == list(range(1, 101))
        assert 1 <= commits < 50, commits
    finally:
        await store.close()


async def test_one_failing_job_does_not_sink_its_batch(store: Store) -> None:
    account_id = await _setup(store)
    good = [make_message() for _ in range(5)]
    bad_raw, bad_parsed = make_message()
    outcomes = await asyncio.gather(
        *(store.deliver(raw, p, [DeliveryTarget(account_id)]) for raw, p in good),
        store.deliver(bad_raw, bad_parsed, [DeliveryTarget(424242)]),
        return_exceptions=True,
    )
    assert sum(isinstance(o, Exception) for o in outcomes) == 1
    inbox = await store.get_mailbox(account_id, "INBOX")
    assert inbox is not None and inbox.messages == 5


async def test_change_feed(store: Store) -> None:
    account_id = await _setup(store)
    feed = store.changes(account_id)
    other = store.changes(account_id + 1)
    inbox = await store.get_mailbox(account_id, "INBOX")
    assert inbox is not None
    raw, parsed = make_message()
    record = await store.append(account_id, inbox.id, raw, parsed)
    change = await asyncio.wait_for(anext(feed), 1)
    assert change == MailboxChange(account_id, inbox.id, record.modseq)
    [changed], _ = await store.set_flags(inbox.id, [record.uid], FlagMode.ADD, ["\\Seen"])
    change = await asyncio.wait_for(anext(feed), 1)
    assert change.modseq == changed.modseq
    assert other.pending() == 0  # type: ignore[attr-defined]
    await other.aclose()  # type: ignore[attr-defined]
    await feed.aclose()  # type: ignore[attr-defined]
    with pytest.raises(StopAsyncIteration):
        await anext(feed)


async def test_slow_subscriber_is_coalesced(store: Store) -> None:
    account_id = await _setup(store)
    feed = store.changes(account_id)
    inbox = await store.get_mailbox(account_id, "INBOX")
    assert inbox is not None
    last = 0
    for _ in range(20):  # nobody reads meanwhile
        raw, parsed = make_message()
        last = (await store.append(account_id, inbox.id, raw, parsed)).modseq
    assert await asyncio.wait_for(anext(feed), 1) == MailboxChange(account_id, inbox.id, last)
    for i in range(300):  # more mailboxes than a subscriber may hold: one RESYNC_ALL
        await store.create_mailbox(account_id, f"F{i}")
    change = await asyncio.wait_for(anext(feed), 1)
    assert change.mailbox_id == RESYNC_ALL
    assert feed.pending() == 0  # type: ignore[attr-defined]
    await feed.aclose()  # type: ignore[attr-defined]


async def test_backup_and_restore_while_delivering(
    store_factory: StoreFactory, backend: str, tmp_path: Path
) -> None:
    store = store_factory(fsync=True)
    await store.open()
    acked: list[bytes] = []
    try:
        account_id = await _setup(store)
        inbox = await store.get_mailbox(account_id, "INBOX")
        assert inbox is not None
        for i in range(20):
            raw, parsed = make_message(f"before {i}")
            await store.deliver(raw, parsed, [DeliveryTarget(account_id)])
            acked.append(raw)
        stop = asyncio.Event()

        async def keep_delivering() -> None:
            i = 0
            while not stop.is_set():
                raw, parsed = make_message(f"during {i}")
                await store.deliver(raw, parsed, [DeliveryTarget(account_id)])
                # Expunging during the backup exercises freeing blobs it is linking.
                await store.expunge(inbox.id, [1 + i])
                i += 1

        task = asyncio.create_task(keep_delivering())
        await asyncio.sleep(0.02)
        await store.backup(tmp_path / "backup")
        stop.set()
        await task
        with pytest.raises(AlreadyExists):
            await store.backup(tmp_path / "backup")
    finally:
        await store.close()

    data = tmp_path / "restored"
    restore(tmp_path / "backup", data)
    with pytest.raises(RestoreError):
        restore(tmp_path / "backup", data)  # not empty
    restore(tmp_path / "backup", data, force=True)
    restored = make_store(backend, data)
    await restored.open()
    try:
        records = await restored.list_messages(inbox.id)
        assert records, "the backup holds the messages delivered before it"
        uids = [r.uid for r in records]
        assert uids == sorted(uids)
        for record in records:
            body = await restored.read_blob(record.blob_id)
            assert len(body) == record.size
            assert (await restored.get_parsed(record.blob_id)).size == record.size
        # The restored store works: a new message gets the next UID.
        raw, parsed = make_message()
        [d] = await restored.deliver(raw, parsed, [DeliveryTarget(account_id)])
        assert d.uid > uids[-1]
    finally:
        await restored.close()


async def test_restore_refuses_damaged_blob(store_factory: StoreFactory, tmp_path: Path) -> None:
    store = store_factory(inline_body_max=0)  # a body file (test_store_inline_bodies: a row)
    await store.open()
    try:
        account_id = await _setup(store)
        raw, parsed = make_message()
        [d] = await store.deliver(raw, parsed, [DeliveryTarget(account_id)])
        [record] = await store.get_messages(d.mailbox_id, [d.uid])
        await store.backup(tmp_path / "b")
    finally:
        await store.close()
    blob = next((tmp_path / "b" / "blobs").rglob(record.blob_id))
    blob.unlink()  # break the hard link before changing the copy
    blob.write_bytes(raw.replace(b"test", b"TEST"))
    with pytest.raises(RestoreError, match="damaged"):
        restore(tmp_path / "b", tmp_path / "target")
    assert not (tmp_path / "target").exists()
    blob.unlink()
    with pytest.raises(RestoreError, match="missing"):
        restore(tmp_path / "b", tmp_path / "target")
