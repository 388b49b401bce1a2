"""Stored parses (FETCH BODYSTRUCTURE/ENVELOPE/sections, SEARCH's envelope keys) kept in
memory, shared by every session of one server.

A body is content-addressed and its stored parse never changes, so an entry never goes stale
and needs no invalidation: the cache only saves the store read and the decoding of the stored
form, which a session would otherwise repeat for every message of every FETCH. Sessions come
and go (a client reconnects, a phone re-logs in), so a per-session cache would start cold each
time; one cache per server keeps what every session of the mailbox has been reading.

Invariants
----------
- Bounded by entries (a parse is a part tree and an envelope, a few kilobytes; the search text
  is not part of the stored parse), least recently used out first.
- Callers treat a returned ParsedMessage as read-only: it is shared.
- Only what the store returned is kept; a NotFound is not remembered.
"""

from __future__ import annotations

from collections import OrderedDict

from postar.mime.structure import ParsedMessage
from postar.store.interface import Store

DEFAULT_ENTRIES = 2048


class ParsedCache:
    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        self.entries = entries
        self._parsed: OrderedDict[str, ParsedMessage] = OrderedDict()

    async def get(self, store: Store, blob_id: str) -> ParsedMessage:
        parsed = self._parsed.get(blob_id)
        if parsed is not None:
            self._parsed.move_to_end(blob_id)
            return parsed
        parsed = await store.get_parsed(blob_id)
        self._parsed[blob_id] = parsed
        if len(self._parsed) > self.entries:
            self._parsed.popitem(last=False)
        return parsed

    def __len__(self) -> int:
        return len(self._parsed)
