"""A management command's store opened beside a running server's (beside_owner=True).

The server owns the data directory (exclusive flock); `postar user add` and friends must still
work while it runs, without touching the blob files the owner may be writing or have pinned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postar.store.interface import StoreError
from postar.store.model import DeliveryTarget
from postar.store.sqlite.backend import SQLiteStore
from tests.unit.store.store_helpers import make_message


@pytest.fixture
async def owner(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "data", fsync=False, inline_body_max=0)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _blob_names(store: SQLiteStore) -> set[str]:
    return {p.name for p in (store.data_dir / "blobs").rglob("*") if p.is_file()}


async def test_guest_writes_are_seen_by_the_owner(owner: SQLiteStore) -> None:
    guest = SQLiteStore(owner.data_dir, fsync=False, inline_body_max=0, beside_owner=True)
    await guest.open()
    try:
        await guest.add_domain("example.org")
        await guest.add_account("alice@example.org", "x", None)
    finally:
        await guest.close()
    assert [d.name for d in await owner.list_domains()] == ["example.org"]
    assert await owner.get_account("alice@example.org") is not None


async def test_a_second_owner_is_still_refused(owner: SQLiteStore) -> None:
    second = SQLiteStore(owner.data_dir, fsync=False, inline_body_max=0)
    with pytest.raises(StoreError, match="in use"):
        await second.open()
    await second.close()


async def test_guest_neither_sweeps_nor_unlinks(owner: SQLiteStore) -> None:
    await owner.add_domain("example.org")
    alice = await owner.add_account("alice@example.org", "x", None)
    raw, parsed = make_message()
    await owner.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    delivered = _blob_names(owner)
    assert len(delivered) == 1
    # A file the owner is writing has no row yet: an orphan to anyone who sweeps.
    in_flight = owner.data_dir / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    in_flight.parent.mkdir(parents=True)
    in_flight.write_bytes(b"being delivered")

    guest = SQLiteStore(owner.data_dir, fsync=False, inline_body_max=0, beside_owner=True)
    await guest.open()
    try:
        assert guest.orphans_removed == 0
        await guest.remove_account("alice@example.org")
    finally:
        await guest.close()
    # The message's blob lost its last reference, but the owner may have pinned it for a
    # delivery of the same content: it stays, as an orphan for the owner's next open.
    assert _blob_names(owner) == delivered | {in_flight.name}
    await owner.close()
    reopened = SQLiteStore(owner.data_dir, fsync=False, inline_body_max=0)
    await reopened.open()
    try:
        assert reopened.orphans_removed == 2
        assert _blob_names(reopened) == set()
    finally:
        await reopened.close()


async def test_guest_takes_the_lock_when_nobody_holds_it(tmp_path: Path) -> None:
    """Without a server running, a management command is the owner (and sweeps)."""
    guest = SQLiteStore(tmp_path / "data", fsync=False, inline_body_max=0, beside_owner=True)
    await guest.open()
    try:
        server = SQLiteStore(tmp_path / "data", fsync=False, inline_body_max=0)
        with pytest.raises(StoreError, match="in use"):
            await server.open()
        await server.close()
    finally:
        await guest.close()
