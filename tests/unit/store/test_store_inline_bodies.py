"""Bodies stored in the database: a body of at most inline_body_max bytes is a row of
blob_bodies (keyed by blobs.num), committed with its message rows; a larger one is a file under
blobs/ (test_store_sqlite_files.py). Where each lives, how it reads, when it is freed, and how
backup, restore, migration, the orphan sweep and guests treat it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from postar.config import Config, ConfigError, load_config
from postar.store.backup import RestoreError, restore
from postar.store.interface import NotFound, QuotaExceeded, open_store_backend
from postar.store.model import DeliveryTarget, QueuedRecipient
from postar.store.sqlite.backend import SQLiteStore
from postar.store.sqlite.base import INLINE_BODY_MAX
from postar.store.sqlite.blobs import BlobFiles, blob_id_of
from postar.store.sqlite.schema import SCHEMA_VERSION
from tests.unit.store.store_helpers import account_named, downgrade_to_v3, make_message, opened

SMALL_MAX = 4096  # small enough that a padded message crosses it


def blob_files(data: Path) -> set[str]:
    return {p.name for p in (data / "blobs").rglob("*") if p.is_file()}


def stored_bodies(db: Path) -> dict[str, bytes]:
    """blob id -> the bytes of its blob_bodies row, read by a connection of our own."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT b.id, d.body FROM blobs b JOIN blob_bodies d USING (num)"))


def row_counts(db: Path) -> tuple[int, int]:
    """(rows of blobs, rows of blob_bodies)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        blobs = conn.execute("SELECT count(*) FROM blobs").fetchone()[0]
        bodies = conn.execute("SELECT count(*) FROM blob_bodies").fetchone()[0]
    return blobs, bodies


def _store(
    data: Path, *, inline_body_max: int = INLINE_BODY_MAX, beside_owner: bool = False
) -> SQLiteStore:
    return SQLiteStore(
        data,
        fsync=False,
        group_commit_window=0.002,
        inline_body_max=inline_body_max,
        beside_owner=beside_owner,
    )


@pytest.fixture
async def small_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with opened(_store(tmp_path / "data", inline_body_max=SMALL_MAX)) as store:
        yield store


@pytest.fixture
async def default_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with opened(_store(tmp_path / "data")) as store:
        yield store


async def test_a_body_up_to_the_limit_is_a_row_and_one_byte_more_is_a_file(
    small_store: SQLiteStore,
) -> None:
    alice = await account_named(small_store)
    at_limit, at_limit_parsed = make_message("at the limit", pad_to=SMALL_MAX)
    over, over_parsed = make_message("one byte over", pad_to=SMALL_MAX + 1)
    assert (len(at_limit), len(over)) == (SMALL_MAX, SMALL_MAX + 1)
    await small_store.deliver(at_limit, at_limit_parsed, [DeliveryTarget(alice.id)])
    await small_store.deliver(over, over_parsed, [DeliveryTarget(alice.id)])
    assert stored_bodies(small_store.db_path) == {blob_id_of(at_limit): at_limit}
    assert blob_files(small_store.data_dir) == {blob_id_of(over)}
    for raw in (at_limit, over):
        assert await small_store.read_blob(blob_id_of(raw)) == raw
        assert (await small_store.get_parsed(blob_id_of(raw))).size == len(raw)
    # Both are in the full-text index, whichever place holds their bytes.
    with contextlib.closing(sqlite3.connect(small_store.db_path)) as conn:
        assert conn.execute("SELECT count(*) FROM blob_text").fetchone()[0] == 2


async def test_append_and_enqueue_store_small_bodies_as_rows(
    default_store: SQLiteStore,
) -> None:
    alice = await account_named(default_store)
    inbox = await default_store.get_mailbox(alice.id, "INBOX")
    assert inbox is not None
    appended, parsed = make_message("appended")
    record = await default_store.append(alice.id, inbox.id, appended, parsed)
    queued, _ = make_message("queued")
    entry = await default_store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], queued)
    assert stored_bodies(default_store.db_path) == {
        record.blob_id: appended,
        entry.blob_id: queued,
    }
    assert blob_files(default_store.data_dir) == set()
    assert await default_store.read_blob(entry.blob_id) == queued


async def test_one_row_per_distinct_body(default_store: SQLiteStore) -> None:
    accounts = [await account_named(default_store, f"user{i}") for i in range(10)]
    raw, parsed = make_message("to everyone")
    await default_store.deliver(raw, parsed, [DeliveryTarget(a.id) for a in accounts])
    assert row_counts(default_store.db_path) == (1, 1)
    # The same bytes delivered again (a resent message) and queued still share the row.
    await default_store.deliver(raw, parsed, [DeliveryTarget(accounts[0].id)])
    await default_store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], raw)
    assert row_counts(default_store.db_path) == (1, 1)
    assert stored_bodies(default_store.db_path) == {blob_id_of(raw): raw}
    with contextlib.closing(sqlite3.connect(default_store.db_path)) as conn:
        assert conn.execute("SELECT refcount FROM blobs").fetchone()[0] == 12
    assert blob_files(default_store.data_dir) == set()


async def test_failed_delivery_leaves_no_row(default_store: SQLiteStore) -> None:
    alice = await account_named(default_store)
    await default_store.set_quota("alice@example.org", 10)
    raw, parsed = make_message()
    with pytest.raises(QuotaExceeded):
        await default_store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    assert row_counts(default_store.db_path) == (0, 0)
    assert blob_files(default_store.data_dir) == set()


async def test_ranges_read_as_from_a_file(tmp_path: Path) -> None:
    raw, parsed = make_message("ranges", pad_to=1000)
    size = len(raw)
    cases = [
        (0, None),
        (0, size),
        (0, 1),
        (100, 200),  # the middle
        (size - 1, None),
        (size - 3, 100),  # runs past the end: truncated
        (0, size + 50),
        (size, None),  # at the end
        (size, 10),
        (size + 10, None),  # past the end
        (size + 10, 5),
        (50, 0),
    ]
    results: dict[str, list[bytes]] = {}
    for name, limit in (("inline", INLINE_BODY_MAX), ("files", 0)):
        store = _store(tmp_path / name, inline_body_max=limit)
        await store.open()
        try:
            alice = await account_named(store)
            await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
            blob_id = blob_id_of(raw)
            # Each store keeps the body where its limit says: the comparison means something.
            assert (blob_id in stored_bodies(store.db_path)) == (name == "inline")
            assert (blob_id in blob_files(store.data_dir)) == (name == "files")
            results[name] = [await store.read_blob(blob_id, s, n) for s, n in cases]
        finally:
            await store.close()
    expected = [raw[s:] if n is None else raw[s : s + n] for s, n in cases]
    assert results["inline"] == expected
    assert results["files"] == expected


async def test_row_freed_with_the_last_reference(
    default_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = default_store
    unlink_asked: list[str] = []
    real_free = store._blobs.free

    def free(blob_ids: Iterable[str], still_referenced: set[str]) -> list[str]:
        blob_ids = list(blob_ids)
        unlink_asked.extend(blob_ids)
        return real_free(blob_ids, still_referenced)

    monkeypatch.setattr(store._blobs, "free", free)
    alice = await account_named(store)
    bob = await account_named(store, "bob")
    raw, parsed = make_message()
    delivered = await store.deliver(raw, parsed, [DeliveryTarget(alice.id), DeliveryTarget(bob.id)])
    [record] = await store.get_messages(delivered[0].mailbox_id, [delivered[0].uid])
    assert record.blob_id in stored_bodies(store.db_path)
    archive = await store.get_mailbox(alice.id, "Archive")
    assert archive is not None
    await store.copy_messages(delivered[0].mailbox_id, [1], archive.id)
    entry = await store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], raw)
    steps = [
        store.expunge(delivered[0].mailbox_id, [1]),
        store.remove_account("bob@example.org"),
        store.delete_mailbox(alice.id, "Archive"),
    ]
    for step in steps:
        await step
        assert stored_bodies(store.db_path) == {record.blob_id: raw}
        assert await store.read_blob(record.blob_id) == raw
    await store.remove_queue_entry(entry.id)
    assert row_counts(store.db_path) == (0, 0)
    assert unlink_asked == []  # the row went with its COMMIT: there is no file to unlink
    with pytest.raises(NotFound):
        await store.read_blob(record.blob_id)
    with pytest.raises(NotFound):
        await store.read_blob(record.blob_id, 0, 10)
    assert blob_files(store.data_dir) == set()


async def test_backup_and_restore_carry_rows_and_files(tmp_path: Path) -> None:
    store = _store(tmp_path / "data", inline_body_max=SMALL_MAX)
    await store.open()
    try:
        alice = await account_named(store)
        small, small_parsed = make_message("in the database", pad_to=1000)
        large, large_parsed = make_message("in a file", pad_to=SMALL_MAX * 2)
        for raw, parsed in ((small, small_parsed), (large, large_parsed)):
            await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
        await store.backup(tmp_path / "backup")
    finally:
        await store.close()
    # The database copy carries the row: only the file body is linked beside it.
    assert blob_files(tmp_path / "backup") == {blob_id_of(large)}
    assert stored_bodies(tmp_path / "backup" / "postar.sqlite3") == {blob_id_of(small): small}

    restore(tmp_path / "backup", tmp_path / "restored")
    assert blob_files(tmp_path / "restored") == {blob_id_of(large)}
    restored = _store(tmp_path / "restored", inline_body_max=SMALL_MAX)
    await restored.open()
    try:
        assert restored.orphans_removed == 0
        inbox = await restored.get_mailbox(alice.id, "INBOX")
        assert inbox is not None
        records = await restored.list_messages(inbox.id)
        assert [await restored.read_blob(r.blob_id) for r in records] == [small, large]
    finally:
        await restored.close()


async def test_restore_refuses_a_damaged_row(tmp_path: Path) -> None:
    store = _store(tmp_path / "data", inline_body_max=SMALL_MAX)
    await store.open()
    try:
        alice = await account_named(store)
        small, small_parsed = make_message("in the database")
        large, large_parsed = make_message("in a file", pad_to=SMALL_MAX * 2)
        for raw, parsed in ((small, small_parsed), (large, large_parsed)):
            await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
        await store.backup(tmp_path / "backup")
    finally:
        await store.close()
    damaged = small.replace(b"test", b"TEST")  # same size, other bytes
    assert damaged != small
    with contextlib.closing(sqlite3.connect(tmp_path / "backup" / "postar.sqlite3")) as conn:
        conn.execute(
            "UPDATE blob_bodies SET body = ? WHERE num = (SELECT num FROM blobs WHERE id = ?)",
            (damaged, blob_id_of(small)),
        )
        conn.commit()
    with pytest.raises(RestoreError, match="damaged"):
        restore(tmp_path / "backup", tmp_path / "target")
    assert not (tmp_path / "target").exists()


async def test_v3_database_gains_the_table_and_keeps_its_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = _store(data, inline_body_max=0)
    await store.open()
    alice = await account_named(store)
    old, old_parsed = make_message("from before v4")
    await store.deliver(old, old_parsed, [DeliveryTarget(alice.id)])
    await store.close()
    downgrade_to_v3(data / "postar.sqlite3")  # no blob_bodies: every body a file
    assert blob_files(data) == {blob_id_of(old)}

    store = _store(data)
    await store.open()
    try:
        # The old file is still referenced: the sweep at open leaves it alone.
        assert store.orphans_removed == 0
        with contextlib.closing(sqlite3.connect(store.db_path)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "blob_bodies" in tables
        assert await store.read_blob(blob_id_of(old)) == old
        new, new_parsed = make_message("after v4")
        [d] = await store.deliver(new, new_parsed, [DeliveryTarget(alice.id)])
        assert stored_bodies(store.db_path) == {blob_id_of(new): new}
        # The old bytes delivered again share the file they already have, and the file goes
        # with their last reference.
        await store.deliver(old, old_parsed, [DeliveryTarget(alice.id)])
        assert stored_bodies(store.db_path) == {blob_id_of(new): new}
        assert blob_files(data) == {blob_id_of(old)}
        assert await store.read_blob(blob_id_of(old)) == old
        uids = [r.uid for r in await store.list_messages(d.mailbox_id)]
        assert len(uids) == 3
        await store.expunge(d.mailbox_id, uids)
        assert row_counts(store.db_path) == (0, 0)
        assert blob_files(data) == set()
    finally:
        await store.close()


async def test_a_stray_file_of_a_row_body_is_an_orphan(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = _store(data)
    await store.open()
    try:
        alice = await account_named(store)
        raw, parsed = make_message()
        await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
        blob_id = blob_id_of(raw)
        assert blob_id in stored_bodies(store.db_path)
        # A file of the same id (say, left by a store run with inline_body_max = 0 that
        # crashed before its COMMIT) is not read: the row is the body.
        stray = BlobFiles(data / "blobs", fsync=False).path(blob_id)
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"not the body")
        assert await store.read_blob(blob_id) == raw
        assert await store.read_blob(blob_id, 0, 10) == raw[:10]
    finally:
        await store.close()
    store = _store(data)
    await store.open()
    try:
        assert store.orphans_removed == 1
        assert not stray.exists()
        assert await store.read_blob(blob_id) == raw
    finally:
        await store.close()


async def test_guest_delivers_a_row_body_the_owner_reads_and_frees(tmp_path: Path) -> None:
    data = tmp_path / "data"
    owner = _store(data)
    await owner.open()
    try:
        alice = await account_named(owner)
        guest = _store(data, beside_owner=True)
        await guest.open()
        try:
            assert guest._guest  # the owner holds the data directory
            raw, parsed = make_message("from a worker")
            # No file exists for it, so a guest that checked for one would refuse it.
            [d] = await guest.deliver(raw, parsed, [DeliveryTarget(alice.id)])
            [record] = await owner.get_messages(d.mailbox_id, [d.uid])
            assert await owner.read_blob(record.blob_id) == raw
            assert stored_bodies(owner.db_path) == {record.blob_id: raw}
            await owner.expunge(d.mailbox_id, [d.uid])
            assert row_counts(owner.db_path) == (0, 0)
            with pytest.raises(NotFound):
                await guest.read_blob(record.blob_id)
            assert blob_files(data) == set()
        finally:
            await guest.close()
    finally:
        await owner.close()


def _load(tmp_path: Path, store_section: str) -> Config:
    path = tmp_path / "postar.toml"
    path.write_text(f"[store]\n{store_section}\n")
    return load_config(path)


@pytest.mark.parametrize("value", ["-1", "262145"])
def test_config_refuses_inline_body_max_out_of_range(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="inline_body_max"):
        _load(tmp_path, f"inline_body_max = {value}")


def test_config_inline_body_max_reaches_the_store(tmp_path: Path) -> None:
    default = load_config(None)
    assert default.store.inline_body_max == INLINE_BODY_MAX
    for value in (0, 4096, 256 * 1024):
        config = _load(tmp_path, f"inline_body_max = {value}")
        assert config.store.inline_body_max == value
        store = open_store_backend(config)  # built, not opened
        assert isinstance(store, SQLiteStore)
        assert store.inline_body_max == value
