"""A store opened as a guest beside its owner, as an SMTP worker process opens it.

Two SQLiteStore objects on one data directory in one process: flock locks belong to the
open file description, so the second store's lock attempt conflicts with the first's exactly
as another process's would, and the second becomes a guest (beside_owner=True).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from postar.store.changes import Subscription
from postar.store.interface import StoreError
from postar.store.model import DeliveryTarget, MailboxChange
from postar.store.sqlite.backend import SQLiteStore
from postar.store.sqlite.base import GUESTS_LOCK_NAME, LOCK_NAME
from postar.store.sqlite.blobs import BlobFiles
from tests.unit.net.net_helpers import wait_until
from tests.unit.store.store_helpers import make_message, opened

TIMEOUT = 5.0


def _store(data_dir: Path, **options: bool) -> SQLiteStore:
    options.setdefault("inline_body_max", 0)  # these races are about body files
    return SQLiteStore(data_dir, fsync=False, group_commit_window=0.002, **options)


@pytest.fixture
async def owner(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with opened(_store(tmp_path / "data")) as store:
        yield store


@pytest.fixture
async def guest(owner: SQLiteStore) -> AsyncIterator[SQLiteStore]:
    async with opened(_store(owner.data_dir, beside_owner=True)) as store:
        yield store


@pytest.fixture
async def alice_id(owner: SQLiteStore) -> int:
    await owner.add_domain("example.org")
    return (await owner.add_account("alice@example.org", "$argon2id$fake", None)).id


def _lock_is_free(path: Path) -> bool:
    """Whether an exclusive flock on `path` can be taken now (then released)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    finally:
        os.close(fd)


def _orphan(data_dir: Path) -> Path:
    """A blob file without a row: what a crash between a body's fsync and its COMMIT leaves,
    and also what a guest's body looks like while it waits for its COMMIT."""
    path = data_dir / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"being delivered")
    return path


async def _inbox_uids(store: SQLiteStore, account_id: int) -> list[int]:
    inbox = await store.get_mailbox(account_id, "INBOX")
    assert inbox is not None
    return [m.uid for m in await store.list_messages(inbox.id)]


async def test_guest_only_without_an_owner_is_refused_and_holds_no_lock(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    worker = _store(data_dir, guest_only=True)
    with pytest.raises(StoreError, match="no server holds"):
        await worker.open()
    await worker.close()
    # A worker whose server has died must not become the owner (it would sweep the files of
    # the server it worked for), nor keep a lock that stops the restarted server.
    assert _lock_is_free(data_dir / LOCK_NAME)
    assert _lock_is_free(data_dir / GUESTS_LOCK_NAME)
    server = _store(data_dir)
    await server.open()
    await server.close()


async def test_guest_only_beside_an_owner_opens(owner: SQLiteStore, alice_id: int) -> None:
    worker = _store(owner.data_dir, guest_only=True)
    await worker.open()
    try:
        assert (await worker.get_account("alice@example.org")) is not None
        # Its shared lock keeps the owner's sweep lock from being taken.
        assert not _lock_is_free(owner.data_dir / GUESTS_LOCK_NAME)
    finally:
        await worker.close()
    assert _lock_is_free(owner.data_dir / GUESTS_LOCK_NAME)


async def test_guest_changes_reach_owner_subscribers_only_when_published(
    owner: SQLiteStore, guest: SQLiteStore, alice_id: int
) -> None:
    forwarded: list[list[MailboxChange]] = []
    queue_commits: list[None] = []
    guest.forward_commits(forwarded.append, lambda: queue_commits.append(None))
    feed = owner.changes(alice_id)
    assert isinstance(feed, Subscription)  # for pending(): what is waiting, without waiting
    try:
        raw, parsed = make_message(subject="from a worker")
        [delivered] = await guest.deliver(raw, parsed, [DeliveryTarget(alice_id)])
        await wait_until(lambda: bool(forwarded), TIMEOUT)
        # Committed: the owner reads it at once...
        assert await _inbox_uids(owner, alice_id) == [delivered.uid]
        # ...but its subscribers (IDLE) live in this process's change feed, which a commit
        # in another process cannot reach: only the owner's publish_changes does.
        await asyncio.sleep(0.1)
        assert feed.pending() == 0
        changes = [c for batch in forwarded for c in batch]
        assert {c.account_id for c in changes} == {alice_id}
        assert queue_commits == []  # a local delivery enqueues nothing
        owner.publish_changes(changes)
        change = await asyncio.wait_for(anext(feed), TIMEOUT)
        inbox = await owner.get_mailbox(alice_id, "INBOX")
        assert inbox is not None
        assert change.account_id == alice_id and change.mailbox_id == inbox.id
        [record] = await owner.list_messages(inbox.id)
        assert change.modseq == record.modseq
    finally:
        await feed.aclose()


async def test_body_unlinked_before_the_guests_commit_fails_the_delivery(
    owner: SQLiteStore,
    guest: SQLiteStore,
    alice_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blobs = guest._blobs
    write_group = blobs.write_group
    unlinked: list[str] = []

    def write_then_lose(items: Sequence[tuple[str, bytes]], *args: object) -> list[bool | OSError]:
        outcomes = write_group(items, *args)  # type: ignore[arg-type]
        # The owner, its last message of the same content expunged, unlinks the file after
        # the guest wrote it and before the guest's COMMIT (the guest's pin is not the
        # owner's to see).
        for blob_id, _ in items:
            os.unlink(blobs.path(blob_id))
            unlinked.append(blob_id)
        return outcomes

    monkeypatch.setattr(blobs, "write_group", write_then_lose)
    raw, parsed = make_message(subject="raced")
    with pytest.raises(StoreError, match="vanished"):
        await guest.deliver(raw, parsed, [DeliveryTarget(alice_id)])
    assert unlinked, "the body was never written: the race was not staged"
    # A row pointing at a missing file would be a message nobody can ever read.
    assert await _inbox_uids(owner, alice_id) == []
    assert await _inbox_uids(guest, alice_id) == []
    # The failure is temporary, as the client is told: the same message goes in on a retry.
    monkeypatch.setattr(blobs, "write_group", write_group)
    [delivered] = await guest.deliver(raw, parsed, [DeliveryTarget(alice_id)])
    [record] = await owner.list_messages(delivered.mailbox_id)
    assert record.uid == delivered.uid
    assert await owner.read_blob(record.blob_id) == raw


async def test_owner_does_not_sweep_while_a_guest_is_open(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = _store(data_dir)
    await first.open()
    visitor = _store(data_dir, beside_owner=True)
    await visitor.open()  # a guest: `first` holds the data directory
    try:
        await first.close()  # the server restarts while its worker is still running
        orphan = _orphan(data_dir)
        second = _store(data_dir)
        await second.open()
        try:
            assert second.orphans_removed == 0
            assert orphan.exists(), "swept a file a guest may be about to commit"
        finally:
            await second.close()
    finally:
        await visitor.close()
    third = _store(data_dir)
    await third.open()
    try:
        assert third.orphans_removed == 1
        assert not orphan.exists()
    finally:
        await third.close()


async def test_guest_leaves_frees_to_the_owner(
    owner: SQLiteStore, guest: SQLiteStore, alice_id: int
) -> None:
    raw, parsed = make_message(subject="to be expunged")
    [delivered] = await guest.deliver(raw, parsed, [DeliveryTarget(alice_id)])
    [record] = await guest.list_messages(delivered.mailbox_id)
    path = BlobFiles(owner.data_dir / "blobs", fsync=False).path(record.blob_id)
    assert path.exists()
    await guest.expunge(delivered.mailbox_id, [delivered.uid])
    assert await _inbox_uids(owner, alice_id) == []
    # The guest dropped the last reference but may not unlink: the owner could have pinned
    # the same content for a delivery of its own. The file waits for the owner's sweep.
    await asyncio.sleep(0.05)
    assert path.exists()


async def test_guest_hands_unreferenced_bodies_to_the_owner(
    owner: SQLiteStore, guest: SQLiteStore, alice_id: int
) -> None:
    # What a guest's commits leave unreferenced goes to the owner (as an SMTP worker sends
    # it), which re-checks it under its write lock and unlinks what nothing references.
    handed: list[str] = []
    guest.forward_commits(lambda changes: None, lambda: None, handed.extend)
    raw, parsed = make_message(subject="to be expunged")
    [delivered] = await guest.deliver(raw, parsed, [DeliveryTarget(alice_id)])
    [record] = await guest.list_messages(delivered.mailbox_id)
    path = BlobFiles(owner.data_dir / "blobs", fsync=False).path(record.blob_id)
    kept, kept_parsed = make_message(subject="still referenced")
    [other] = await guest.deliver(kept, kept_parsed, [DeliveryTarget(alice_id)])
    [kept_record] = [r for r in await guest.list_messages(other.mailbox_id) if r.uid == other.uid]
    await guest.expunge(delivered.mailbox_id, [delivered.uid])
    await wait_until(lambda: record.blob_id in handed, TIMEOUT)
    assert path.exists()
    await owner.free_if_unreferenced([*handed, kept_record.blob_id])
    assert not path.exists()
    kept_path = BlobFiles(owner.data_dir / "blobs", fsync=False).path(kept_record.blob_id)
    assert kept_path.exists()  # still referenced: not freed
