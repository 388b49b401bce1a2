"""What the SQLite backend leaves on disk: blob files, refcounts, orphans, schema version.

Bodies are kept as files here (inline_body_max=0); test_store_inline_bodies.py covers the
bodies stored in the database."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from postar.store.backup import RestoreError, restore
from postar.store.interface import QuotaExceeded, SchemaTooNew, StoreError
from postar.store.model import DeliveryTarget, QueuedRecipient
from postar.store.sqlite import ops
from postar.store.sqlite.backend import SQLiteStore
from postar.store.sqlite.blobs import BlobFiles, blob_id_of
from postar.store.sqlite.messages import MAX_QUERY_TRIGRAMS, trigram_query
from postar.store.sqlite.schema import SCHEMA_VERSION
from postar.store.sqlite.writer import Tx
from tests.unit.store.store_helpers import account_named, make_message


def blob_files(data: Path) -> set[str]:
    return {p.name for p in (data / "blobs").rglob("*") if p.is_file()}


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "data", fsync=True, inline_body_max=0)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_layout_and_pragmas(sqlite_store: SQLiteStore) -> None:
    alice = await account_named(sqlite_store)
    raw, parsed = make_message()
    [d] = await sqlite_store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    [record] = await sqlite_store.get_messages(d.mailbox_id, [d.uid])
    path = sqlite_store.data_dir / "blobs" / record.blob_id[:2] / record.blob_id[2:4]
    assert (path / record.blob_id).read_bytes() == raw
    conn = sqlite3.connect(sqlite_store.db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_one_file_per_distinct_body(sqlite_store: SQLiteStore) -> None:
    accounts = [await account_named(sqlite_store, f"user{i}") for i in range(10)]
    raw, parsed = make_message("to everyone")
    await sqlite_store.deliver(raw, parsed, [DeliveryTarget(a.id) for a in accounts])
    assert len(blob_files(sqlite_store.data_dir)) == 1
    # The same bytes delivered again (a resent message) still share the file.
    await sqlite_store.deliver(raw, parsed, [DeliveryTarget(accounts[0].id)])
    await sqlite_store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], raw)
    assert len(blob_files(sqlite_store.data_dir)) == 1


async def test_blob_freed_after_last_reference(sqlite_store: SQLiteStore) -> None:
    alice = await account_named(sqlite_store)
    bob = await account_named(sqlite_store, "bob")
    raw, parsed = make_message()
    delivered = await sqlite_store.deliver(
        raw, parsed, [DeliveryTarget(alice.id), DeliveryTarget(bob.id)]
    )
    [record] = await sqlite_store.get_messages(delivered[0].mailbox_id, [delivered[0].uid])
    archive = await sqlite_store.get_mailbox(alice.id, "Archive")
    assert archive is not None
    await sqlite_store.copy_messages(delivered[0].mailbox_id, [1], archive.id)
    entry = await sqlite_store.enqueue("a@example.org", [QueuedRecipient("x@remote.test")], raw)
    steps = [
        sqlite_store.expunge(delivered[0].mailbox_id, [1]),
        sqlite_store.remove_account("bob@example.org"),
        sqlite_store.delete_mailbox(alice.id, "Archive"),
    ]
    for step in steps:
        await step
        assert record.blob_id in blob_files(sqlite_store.data_dir)
    await sqlite_store.remove_queue_entry(entry.id)
    assert blob_files(sqlite_store.data_dir) == set()


async def test_orphans_removed_at_open(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "data", fsync=False, inline_body_max=0)
    await store.open()
    alice = await account_named(store)
    raw, parsed = make_message()
    [d] = await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    [record] = await store.get_messages(d.mailbox_id, [d.uid])
    await store.close()
    # What a crash between blob fsync and COMMIT leaves: a file, and a temporary, with no row.
    orphan = tmp_path / "data" / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"never committed")
    (orphan.parent / f".{orphan.name}.1234.tmp").write_bytes(b"half")
    store = SQLiteStore(tmp_path / "data", fsync=False, inline_body_max=0)
    await store.open()
    try:
        assert store.orphans_removed == 2
        assert blob_files(tmp_path / "data") == {record.blob_id}
        assert await store.read_blob(record.blob_id) == raw
    finally:
        await store.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "data", fsync=False, inline_body_max=0)
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "data" / "postar.sqlite3")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    store = SQLiteStore(tmp_path / "data", fsync=False, inline_body_max=0)
    with pytest.raises(SchemaTooNew):
        await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "data" / "postar.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1  # untouched
    conn.close()


async def test_failed_delivery_leaves_no_file(sqlite_store: SQLiteStore) -> None:
    alice = await account_named(sqlite_store)
    await sqlite_store.set_quota("alice@example.org", 10)
    raw, parsed = make_message()
    with pytest.raises(QuotaExceeded):
        await sqlite_store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    assert blob_files(sqlite_store.data_dir) == set()


async def test_data_dir_is_locked_while_open(sqlite_store: SQLiteStore, tmp_path: Path) -> None:
    await sqlite_store.backup(tmp_path / "b")
    second = SQLiteStore(sqlite_store.data_dir, fsync=False, inline_body_max=0)
    with pytest.raises(StoreError, match="in use"):
        await second.open()
    await second.close()
    with pytest.raises(RestoreError, match="in use"):
        restore(tmp_path / "b", sqlite_store.data_dir, force=True)
    assert (await sqlite_store.list_domains()) == []  # the running store is untouched


def test_v2_migration_leaves_existing_messages_unrecent() -> None:
    # Upgrading must not make every old message \Recent to the next SELECT (RFC 3501 2.3.2).
    from postar.store.sqlite.schema import MIGRATIONS, _statements, migrate

    conn = sqlite3.connect(":memory:", isolation_level=None)
    for statement in _statements(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO domains (name) VALUES ('example.org')")
    conn.execute(
        "INSERT INTO accounts (id, address, domain, password_hash) "
        "VALUES (1, 'a@example.org', 'example.org', 'x')"
    )
    conn.execute(
        "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, highestmodseq) "
        "VALUES (1, 'INBOX', 1, 8, 1)"
    )
    assert migrate(conn) == 1
    assert conn.execute("SELECT recent_uid FROM mailboxes").fetchone()[0] == 7


def test_v3_and_v5_migrations_keep_indexed_texts_searchable() -> None:
    # v3: the index loses its positions (detail=none); v5: the texts move to blob_search and
    # wait for the background indexer. A text indexed before must be found at every step.
    from postar.store.sqlite.schema import MIGRATIONS, _statements, migrate

    conn = sqlite3.connect(":memory:", isolation_level=None)
    for script in MIGRATIONS[:2]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO blobs (num, id, size, refcount) VALUES (7, ?, 1, 1)", ("a" * 64,))
    conn.execute("INSERT INTO blob_text (rowid, headers, body) VALUES (7, 'Subject: x', 'Köln')")
    # An entry whose blob is gone (the index outlived a row): not carried over.
    conn.execute("INSERT INTO blob_text (rowid, headers, body) VALUES (8, 'Subject: y', 'Bonn')")
    assert migrate(conn) == 2
    assert conn.execute("SELECT num, body FROM blob_search").fetchall() == [(7, "Köln")]
    assert conn.execute("SELECT num FROM blob_unindexed").fetchall() == [(7,)]
    assert ops.index_pending(Tx(conn), 10) == 1
    hits = conn.execute(
        "SELECT rowid, body FROM blob_text WHERE blob_text MATCH ?", (trigram_query("KÖLN"),)
    )
    assert hits.fetchall() == [(7, "Köln")]
    assert conn.execute("SELECT count(*) FROM blob_unindexed").fetchone()[0] == 0
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'blob_text'").fetchone()[0]
    assert "detail = 'none'" in ddl and "content = 'blob_search'" in ddl


def test_trigram_query() -> None:
    assert trigram_query("ab") is None
    assert trigram_query("abcab") == '"abc" AND "bca" AND "cab"'
    assert trigram_query('a"bc') == '"a""b" AND """bc"'
    long = trigram_query("".join(chr(0x4E00 + i) for i in range(100)))
    assert long is not None and long.count(" AND ") == MAX_QUERY_TRIGRAMS - 1


async def test_bodies_durable_before_their_metadata_and_stored_in_groups(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Per body: data fsynced under its temporary name, renamed, its directory fsynced, and
    # only then the metadata job submitted (the COMMIT that makes it visible follows that).
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        events.append(("replace", f"{src} {dst}"))

    real_submit = sqlite_store._write_with_body

    async def submit(body: Any, fn: Any) -> Any:
        events.append(("submit", body.blob_id))
        return await real_submit(body, fn)

    alice = await account_named(sqlite_store)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(sqlite_store, "_write_with_body", submit)
    rounds = sqlite_store._bodies.rounds if sqlite_store._bodies else 0
    messages = [make_message(f"burst {i}") for i in range(40)]
    await asyncio.gather(
        *(sqlite_store.deliver(raw, p, [DeliveryTarget(alice.id)]) for raw, p in messages)
    )
    assert sqlite_store._bodies is not None
    assert sqlite_store._bodies.rounds - rounds < 20  # bodies that arrive together share a round

    def at(kind: str, match: Callable[[str], bool]) -> list[int]:
        return [i for i, (k, what) in enumerate(events) if k == kind and match(what)]

    for raw, _ in messages:
        blob_id = blob_id_of(raw)
        final = sqlite_store.data_dir / "blobs" / blob_id[:2] / blob_id[2:4] / blob_id
        [renamed] = [
            i
            for i, (kind, what) in enumerate(events)
            if kind == "replace" and what.endswith(str(final))
        ]
        tmp = events[renamed][1].split(" ")[0]
        synced = [i for i, (kind, what) in enumerate(events) if kind == "fsync" and what == tmp]
        dir_synced = [
            i
            for i, (kind, what) in enumerate(events)
            if kind == "fsync" and what == str(final.parent)
        ]
        [submitted] = [
            i for i, (kind, what) in enumerate(events) if kind == "submit" and what == blob_id
        ]
        assert synced and synced[0] < renamed
        assert any(renamed < i < submitted for i in dir_synced)
        assert final.read_bytes() == raw


def test_a_body_found_stored_is_synced_again_with_every_directory_above_it(
    tmp_path: Path,
) -> None:
    # Another process (an SMTP worker) may have renamed the same content into place and not
    # yet synced it or its directories: finding the file is no proof that it is durable.
    other = BlobFiles(tmp_path / "blobs", fsync=False)  # writes, never syncs
    raw = b"Subject: shared\r\n\r\nsame content twice\r\n"
    blob_id = blob_id_of(raw)
    assert other.write_group([(blob_id, raw)]) == [True]
    ours = BlobFiles(tmp_path / "blobs", fsync=True)
    synced: list[str] = []

    def record(fds: Sequence[int]) -> list[OSError | None]:
        synced.extend(os.readlink(f"/proc/self/fd/{fd}") for fd in fds)
        return [None] * len(fds)

    assert ours.write_group([(blob_id, raw)], record) == [False]  # found, not written
    final = ours.path(blob_id)
    assert synced == [
        str(final),
        str(final.parent),
        str(final.parent.parent),
        str(tmp_path / "blobs"),
    ]
    # Once this process has seen them synced, the levels above stay durable: a second body
    # in the same directory syncs only itself and that directory.
    n = 0
    while blob_id_of(f"neighbour {n}".encode())[:4] != blob_id[:4]:
        n += 1
    neighbour = f"neighbour {n}".encode()
    synced.clear()
    assert ours.write_group([(blob_id_of(neighbour), neighbour)], record) == [True]
    assert [p for p in synced if not p.endswith(".tmp")] == [str(final.parent)]


async def test_a_body_that_cannot_be_written_fails_alone(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if b"disk full" in bytes(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    alice = await account_named(sqlite_store)
    monkeypatch.setattr(os, "write", write)
    good = [make_message(f"fine {i}") for i in range(5)]
    bad = make_message("doomed", body="disk full")
    results = await asyncio.gather(
        *(sqlite_store.deliver(raw, p, [DeliveryTarget(alice.id)]) for raw, p in [*good, bad]),
        return_exceptions=True,
    )
    assert isinstance(results[-1], StoreError)  # answered 451 by SMTP, not a dropped session
    assert all(isinstance(r, list) for r in results[:-1])
    assert blob_files(sqlite_store.data_dir) == {blob_id_of(raw) for raw, _ in good}
    monkeypatch.undo()
    # Its pin was dropped: the same content stores fine later.
    await sqlite_store.deliver(bad[0], bad[1], [DeliveryTarget(alice.id)])


async def test_full_text_entries_of_a_batch_follow_its_jobs(tmp_path: Path) -> None:
    # Texts are stored by each job and indexed later: one job's text must still disappear
    # with a later job's drop of its blob, a failed job must leave none, and the index must
    # forget a text when its blob goes after it was indexed.
    store = SQLiteStore(tmp_path / "data", fsync=False, inline_body_max=0, group_commit_window=0.5)
    await store.open()
    try:
        kept, dropped, failed = ("a" * 64, "b" * 64, "c" * 64)

        def add(blob_id: str, text: str) -> Callable[[Tx], None]:
            return lambda tx: ops.add_blob_ref(tx, blob_id, 1, 1, b"[]", ("h", text))

        def fail(tx: Tx) -> None:
            add(failed, "gamma words")(tx)
            raise QuotaExceeded("this job fails after storing its text")

        commits = store.commit_count
        results = await asyncio.gather(
            store._write(add(kept, "alpha words")),
            store._write(add(dropped, "beta words")),
            store._write(lambda tx: ops.drop_blob_refs(tx, Counter({dropped: 1}))),
            store._write(fail),
            return_exceptions=True,
        )
        assert store.commit_count - commits == 1  # one batch
        assert isinstance(results[3], QuotaExceeded)
        conn = sqlite3.connect(store.db_path, isolation_level=None)
        try:
            texts = "SELECT b.id FROM blob_search t JOIN blobs b ON b.num = t.num"
            waiting = "SELECT b.id FROM blob_unindexed u JOIN blobs b ON b.num = u.num"
            assert [r[0] for r in conn.execute(texts)] == [kept]
            assert [r[0] for r in conn.execute(waiting)] == [kept]
            assert await store.index_pending(100) == 1
            assert conn.execute(waiting).fetchall() == []
            match = "SELECT rowid FROM blob_text WHERE blob_text MATCH ?"
            assert len(conn.execute(match, (trigram_query("alpha"),)).fetchall()) == 1
            await store._write(lambda tx: ops.drop_blob_refs(tx, Counter({kept: 1})))
            assert conn.execute(match, (trigram_query("alpha"),)).fetchall() == []
            assert conn.execute(texts).fetchall() == []
            # External content: with rank 1 the check compares the index with blob_search's
            # rows (and so fails on an entry left behind by a missing 'delete').
            conn.execute("INSERT INTO blob_text (blob_text, rank) VALUES ('integrity-check', 1)")
        finally:
            conn.close()
    finally:
        await store.close()
