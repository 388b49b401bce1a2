"""The server-wide cache of stored parses: bounded, least recently used out, misses not kept."""

from __future__ import annotations

from typing import Any, cast

import pytest

from postar.imap.parsed_cache import ParsedCache
from postar.mime.parser import parse_message
from postar.mime.structure import ParsedMessage
from postar.store.interface import NotFound, Store
from tests.unit.imap.imap_session_helpers import message


class CountingStore:
    def __init__(self) -> None:
        self.reads: list[str] = []
        self.known = {b: parse_message(message(b)) for b in ("a", "b", "c")}

    async def get_parsed(self, blob_id: str) -> ParsedMessage:
        self.reads.append(blob_id)
        if blob_id not in self.known:
            raise NotFound(blob_id)
        return self.known[blob_id]


async def test_hits_are_not_read_again_and_the_oldest_goes_first() -> None:
    fake = CountingStore()
    store = cast(Store, cast(Any, fake))
    cache = ParsedCache(entries=2)
    assert (await cache.get(store, "a")).envelope.subject == "a"
    await cache.get(store, "b")
    await cache.get(store, "a")  # a is now the most recently used
    assert fake.reads == ["a", "b"]
    await cache.get(store, "c")  # evicts b
    assert len(cache) == 2
    await cache.get(store, "a")
    await cache.get(store, "b")
    assert fake.reads == ["a", "b", "c", "b"]


async def test_a_missing_parse_is_not_remembered() -> None:
    fake = CountingStore()
    store = cast(Store, cast(Any, fake))
    cache = ParsedCache()
    for _ in range(2):
        with pytest.raises(NotFound):
            await cache.get(store, "gone")
    assert fake.reads == ["gone", "gone"] and len(cache) == 0
