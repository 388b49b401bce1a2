"""Reading bodies for a download: read_whole_blobs (the bodies stored as rows of blob_bodies,
many in one statement, files left out) and read_blob with the body's size (a body larger
than inline_body_max is read from its file without asking SQLite).

Each test checks with a connection of its own where a body lives (row or file), so that a
comparison between the two kinds means what it says."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from postar.mime.dotlines import has_dot_lines
from postar.mime.parser import parse_message
from postar.store.interface import NotFound, StoreError
from postar.store.model import Account, DeliveryTarget
from postar.store.sqlite.backend import SQLiteStore
from postar.store.sqlite.base import INLINE_BODY_MAX
from postar.store.sqlite.blobs import blob_id_of
from postar.store.sqlite.rows import CHUNK
from tests.unit.store.store_helpers import account_named, make_message, opened

UNKNOWN = "0" * 64  # a well-formed blob id no body has


def row_ids(db: Path) -> set[str]:
    """Ids of the bodies stored as rows of blob_bodies."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {r[0] for r in conn.execute("SELECT b.id FROM blobs b JOIN blob_bodies USING (num)")}


def file_ids(data: Path) -> set[str]:
    return {p.name for p in (data / "blobs").rglob("*") if p.is_file()}


def new_store(data: Path, inline_body_max: int = INLINE_BODY_MAX) -> SQLiteStore:
    return SQLiteStore(
        data, fsync=False, group_commit_window=0.002, inline_body_max=inline_body_max
    )


async def deliver(store: SQLiteStore, account: Account, raw: bytes) -> str:
    """Deliver raw to the account's INBOX; its blob id."""
    [delivered] = await store.deliver(raw, parse_message(raw), [DeliveryTarget(account.id)])
    [record] = await store.get_messages(delivered.mailbox_id, [delivered.uid])
    assert record.size == len(raw)
    assert record.blob_id == blob_id_of(raw)
    return record.blob_id


async def whole(store: SQLiteStore, blob_ids: Sequence[str]) -> dict[str, bytes]:
    """read_whole_blobs' bodies by id; each says rightly whether a line starts with "."."""
    found = await store.read_whole_blobs(blob_ids)
    for body in found.values():
        assert body.dot_lines == has_dot_lines(body.data)
    return {blob_id: body.data for blob_id, body in found.items()}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with opened(new_store(tmp_path / "data")) as s:
        yield s


@pytest.fixture
async def alice(store: SQLiteStore) -> Account:
    return await account_named(store)


def bodies(limit: int = INLINE_BODY_MAX) -> dict[str, bytes]:
    """Messages of the sizes that matter, each different."""
    at_limit, _ = make_message("at the limit", pad_to=limit)
    over, _ = make_message("one byte over", pad_to=limit + 1)
    assert (len(at_limit), len(over)) == (limit, limit + 1)
    return {
        "tiny": make_message("tiny", "x")[0],
        "dots": make_message("dots", ".\r\n..\r\n.start\r\nend.\r\n.")[0],
        "4k": make_message("four kilobytes", pad_to=4096)[0],
        "no-final-newline": b"Subject: n\r\n\r\nno line end",
        "bare-lf": b"Subject: lf\n\n.line\nnext\n",
        "at-limit": at_limit,
        "over-limit": over,
    }


# ---- read_whole_blobs ---------------------------------------------------------------------------
async def test_read_whole_blobs_gives_the_row_bodies_and_leaves_out_files(
    store: SQLiteStore, alice: Account
) -> None:
    raws = bodies()
    ids = {name: await deliver(store, alice, raw) for name, raw in raws.items()}
    rows = {name for name in raws if name != "over-limit"}
    assert row_ids(store.db_path) == {ids[name] for name in rows}
    assert file_ids(store.data_dir) == {ids["over-limit"]}
    got = await whole(store, list(ids.values()))
    assert got == {ids[name]: raws[name] for name in rows}
    # One at a time, and the file on its own: still only rows.
    for name in rows:
        assert await whole(store, [ids[name]]) == {ids[name]: raws[name]}
    assert await whole(store, [ids["over-limit"]]) == {}


async def test_read_whole_blobs_of_nothing_and_unknown_ids(
    store: SQLiteStore, alice: Account
) -> None:
    raw, _ = make_message("known")
    known = await deliver(store, alice, raw)
    assert await whole(store, []) == {}
    assert await whole(store, [UNKNOWN]) == {}
    assert await whole(store, ["not a blob id", ""]) == {}
    assert await whole(store, (UNKNOWN, known, "x")) == {known: raw}


async def test_read_whole_blobs_with_duplicate_ids(store: SQLiteStore, alice: Account) -> None:
    first, _ = make_message("first", ".leading dot")
    second, _ = make_message("second")
    a = await deliver(store, alice, first)
    b = await deliver(store, alice, second)
    got = await whole(store, [a, a, b, UNKNOWN, a, b, UNKNOWN])
    assert got == {a: first, b: second}


async def test_read_whole_blobs_of_an_empty_body(store: SQLiteStore, alice: Account) -> None:
    blob_id = await deliver(store, alice, b"")
    assert row_ids(store.db_path) == {blob_id}
    assert await whole(store, [blob_id]) == {blob_id: b""}
    assert await store.read_blob(blob_id) == b""
    assert await store.read_blob(blob_id, 0, 10, size=0) == b""


async def test_read_whole_blobs_past_the_statement_chunk(
    store: SQLiteStore, alice: Account
) -> None:
    # More ids than one statement takes (rows.CHUNK): 2 full chunks and 1 id in the last.
    count = 2 * CHUNK + 1
    raws = [make_message(f"message {n}", f"body {n}\r\n.{n}")[0] for n in range(count)]
    ids = await asyncio.gather(*(deliver(store, alice, raw) for raw in raws))
    assert len(set(ids)) == count
    expected = dict(zip(ids, raws, strict=True))
    assert await whole(store, ids) == expected
    # Unknown ids and duplicates spread over the chunks change nothing.
    mixed = [UNKNOWN, *ids[::-1], *ids[: CHUNK + 3], UNKNOWN]
    assert await whole(store, mixed) == expected


async def test_read_whole_blobs_with_every_body_a_file(tmp_path: Path) -> None:
    async with opened(new_store(tmp_path / "data", inline_body_max=0)) as store:
        alice = await account_named(store)
        raws = bodies()
        ids = [await deliver(store, alice, raw) for raw in raws.values()]
        assert row_ids(store.db_path) == set()
        assert file_ids(store.data_dir) == set(ids)
        assert await whole(store, ids) == {}
        # Each still reads whole through read_blob, with or without its size.
        for blob_id, raw in zip(ids, raws.values(), strict=True):
            assert await store.read_blob(blob_id) == raw
            assert await store.read_blob(blob_id, size=len(raw)) == raw


# ---- read_blob with size= -----------------------------------------------------------------------
def ranges(size: int) -> list[tuple[int, int | None]]:
    return [
        (0, None),
        (0, size),  # the whole body, asked by its length
        (0, size + 50),  # past the end
        (0, max(size - 1, 0)),
        (0, 1),
        (0, 0),
        (size // 3, size // 3),  # the middle
        (1, None),
        (max(size - 3, 0), 100),  # runs past the end
        (max(size - 1, 0), None),
        (size, None),  # at the end
        (size, 10),
        (size + 10, None),  # past the end
        (size + 10, 5),
    ]


@pytest.mark.parametrize("limit", [INLINE_BODY_MAX, 4096, 0], ids=["default", "4096", "files"])
async def test_read_blob_with_size_reads_what_it_reads_without(tmp_path: Path, limit: int) -> None:
    async with opened(new_store(tmp_path / "data", inline_body_max=limit)) as store:
        alice = await account_named(store)
        raws = bodies(limit or 4096)
        ids = {name: await deliver(store, alice, raw) for name, raw in raws.items()}
        rows = row_ids(store.db_path)
        # Where each lives: with a limit, every body up to it is a row, the larger a file.
        for name, raw in raws.items():
            as_row = limit > 0 and len(raw) <= limit
            assert (ids[name] in rows) == as_row, name
            assert (ids[name] in file_ids(store.data_dir)) == (not as_row), name
        for name, raw in raws.items():
            blob_id = ids[name]
            for start, length in ranges(len(raw)):
                expected = raw[start:] if length is None else raw[start : start + length]
                plain = await store.read_blob(blob_id, start, length)
                sized = await store.read_blob(blob_id, start, length, size=len(raw))
                assert (plain, sized) == (expected, expected), (name, start, length)


async def test_read_blob_of_an_unknown_blob_with_size(store: SQLiteStore) -> None:
    for size in (10, INLINE_BODY_MAX + 10):
        with pytest.raises(NotFound):
            await store.read_blob(UNKNOWN, 0, 10, size=size)
        with pytest.raises(NotFound):
            await store.read_blob(UNKNOWN, size=size)


async def test_a_file_body_reads_after_the_limit_was_raised(tmp_path: Path) -> None:
    """A body stored as a file while the limit was lower (or before rows existed) is within
    today's limit: read_blob with its size looks for a row, finds none, reads the file."""
    data = tmp_path / "data"
    async with opened(new_store(data, inline_body_max=1024)) as store:
        alice = await account_named(store)
        small, _ = make_message("small then", ".dot\r\nline", pad_to=3000)
        blob_id = await deliver(store, alice, small)
        assert file_ids(data) == {blob_id}
    async with opened(new_store(data, inline_body_max=INLINE_BODY_MAX)) as store:
        assert row_ids(store.db_path) == set()
        assert len(small) <= store.inline_body_max
        for start, length in ranges(len(small)):
            expected = small[start:] if length is None else small[start : start + length]
            assert await store.read_blob(blob_id, start, length, size=len(small)) == expected
        assert await whole(store, [blob_id]) == {}
        # A body delivered now is a row, and both are read together as before.
        alice = await store.get_account("alice@example.org")
        assert alice is not None
        new, _ = make_message("small now")
        new_id = await deliver(store, alice, new)
        assert row_ids(store.db_path) == {new_id}
        assert await whole(store, [blob_id, new_id]) == {new_id: new}


async def _row_body_under_a_lowered_limit(data: Path) -> tuple[SQLiteStore, str, bytes]:
    async with opened(new_store(data, inline_body_max=INLINE_BODY_MAX)) as store:
        alice = await account_named(store)
        raw, _ = make_message("a row then", ".dot", pad_to=5000)
        blob_id = await deliver(store, alice, raw)
        assert row_ids(store.db_path) == {blob_id}
    # "A change applies to new bodies; stored ones stay put" (docs/CONFIGURATION.md).
    store = new_store(data, inline_body_max=4096)
    await store.open()
    assert len(raw) > store.inline_body_max
    return store, blob_id, raw


async def test_a_row_body_reads_after_the_limit_was_lowered(tmp_path: Path) -> None:
    store, blob_id, raw = await _row_body_under_a_lowered_limit(tmp_path / "data")
    try:
        assert row_ids(store.db_path) == {blob_id}
        assert file_ids(store.data_dir) == set()
        assert await store.read_blob(blob_id) == raw
        assert await store.read_blob(blob_id, 100, 50) == raw[100:150]
        assert await whole(store, [blob_id]) == {blob_id: raw}
    finally:
        await store.close()


async def test_a_row_body_reads_with_its_size_after_the_limit_was_lowered(
    tmp_path: Path,
) -> None:
    store, blob_id, raw = await _row_body_under_a_lowered_limit(tmp_path / "data")
    try:
        assert await store.read_blob(blob_id, 0, 65536, size=len(raw)) == raw
        assert await store.read_blob(blob_id, 10, 100, size=len(raw)) == raw[10:110]
        assert await store.read_blob(blob_id, size=len(raw)) == raw
    finally:
        await store.close()


# ---- a store that is not open -------------------------------------------------------------------
async def test_not_open_store_refuses_reads(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = new_store(data)
    with pytest.raises(StoreError):
        await store.read_whole_blobs([UNKNOWN])
    with pytest.raises(StoreError):
        await store.read_blob(UNKNOWN, 0, 10, size=10)
    async with opened(store):
        alice = await account_named(store)
        raw, _ = make_message("then closed")
        blob_id = await deliver(store, alice, raw)
        assert await whole(store, [blob_id]) == {blob_id: raw}
    # Closed: refused as before it was opened, even for a body it has read.
    for call in (
        store.read_whole_blobs([blob_id]),
        store.read_whole_blobs([]),
        store.read_blob(blob_id, size=len(raw)),
        store.read_blob(blob_id, 0, 10, size=len(raw)),
        store.read_blob(blob_id, 0, 10, size=INLINE_BODY_MAX + 1),
    ):
        with pytest.raises(StoreError, match="not open"):
            await call


# ---- readers map the database ([store] read_mmap) -------------------------------------------
@pytest.mark.parametrize("read_mmap", [True, False])
async def test_readers_map_the_database_unless_turned_off(tmp_path: Path, read_mmap: bool) -> None:
    store = SQLiteStore(tmp_path / "data", fsync=False, read_mmap=read_mmap)
    async with opened(store) as s:
        alice = await account_named(s)
        raw, _ = make_message("mapped")
        blob_id = await deliver(s, alice, raw)
        assert await s.read_blob(blob_id) == raw
        [mapped] = s._reader().execute("PRAGMA mmap_size").fetchone()
        assert (mapped > 0) is read_mmap


def test_config_read_mmap_reaches_the_store(tmp_path: Path) -> None:
    from postar.config import load_config
    from postar.store.interface import open_store_backend

    assert load_config(None).store.read_mmap is True
    path = tmp_path / "postar.toml"
    path.write_text("[store]\nread_mmap = false\n")
    store = open_store_backend(load_config(path))  # built, not opened
    assert isinstance(store, SQLiteStore) and store.read_mmap is False


# ---- a failing database fails the read as a StoreError ------------------------------------------
async def test_a_database_error_is_a_store_error(
    store: SQLiteStore, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, _ = make_message("busy")
    blob_id = await deliver(store, alice, raw)

    def failing(*_args: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    from postar.store.sqlite import rows

    monkeypatch.setattr(rows, "stored_body", failing)
    monkeypatch.setattr(rows, "stored_bodies", failing)
    # The POP3 and IMAP glues catch StoreError and answer -ERR / NO; a raw sqlite3 error
    # would end the session without an answer.
    with pytest.raises(StoreError, match="database is locked") as caught:
        await store.read_blob(blob_id, size=len(raw))
    assert not isinstance(caught.value, NotFound)
    with pytest.raises(StoreError, match="database is locked"):
        await store.read_whole_blobs([blob_id])


# ---- lines starting with "." are known from delivery (schema v6) -----------------------------
async def test_dot_lines_are_recorded_at_delivery_and_unknown_before_v6(
    store: SQLiteStore, alice: Account
) -> None:
    plain, _ = make_message("no dot lines")
    dotted = plain.replace(b"\r\n\r\n", b"\r\n\r\n.starts with a dot\r\n", 1)
    plain_id, dotted_id = await deliver(store, alice, plain), await deliver(store, alice, dotted)
    assert not has_dot_lines(plain) and has_dot_lines(dotted)
    found = await store.read_whole_blobs([plain_id, dotted_id])
    assert found[plain_id].dot_lines is False and found[dotted_id].dot_lines is True
    # A body stored before v6 has no answer: the reader scans it as before.
    with contextlib.closing(sqlite3.connect(store.db_path)) as db, db:
        db.execute("UPDATE blob_bodies SET dot_lines = NULL")
    found = await store.read_whole_blobs([plain_id, dotted_id])
    assert found[plain_id] == (plain, None) and found[dotted_id] == (dotted, None)
