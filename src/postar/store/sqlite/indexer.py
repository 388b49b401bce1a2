"""The background indexer: brings the full-text index up to date when deliveries pause.

Theory of operation:
- A delivery stores its searchable text in blob_search and lists it in blob_unindexed, in its
  own transaction (ops.add_blob_ref); it does not touch the FTS5 index. A search treats every
  unindexed text as a candidate and checks it directly, so results never depend on the index
  being current, only the speed of a search does.
- This task, in the serving process only (not in SMTP workers or management commands), looks
  at the backlog every QUIET seconds. While it grew since the last look, deliveries are coming
  in and it waits, unless the backlog passed MAX_BACKLOG (then searches would slow down). Once
  it stops growing, it indexes CHUNK texts per transaction until none are left or new ones
  arrive again. Batches of hundreds cost FTS5 about half the work per text of the commits of
  ten a busy SMTP intake makes, and a burst of deliveries is not slowed by indexing at all.
- Each chunk is an ordinary writer job: it takes its turn with the deliveries (writer.py) and
  holds the write lock for one chunk only.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable

from postar.store.interface import StoreError

log = logging.getLogger("postar.store")

QUIET = 1.0  # seconds between looks at the backlog
CHUNK = 200  # texts per transaction: some tens of milliseconds of the write lock
MAX_BACKLOG = 20_000  # index even while deliveries keep coming


async def index_in_background(
    pending: Callable[[int], int], index: Callable[[int], Awaitable[int]]
) -> None:
    """Run until cancelled. pending(limit): the backlog, counted up to limit; index(n): index
    up to n texts in one transaction, returning how many."""
    seen = 0
    while True:
        await asyncio.sleep(QUIET)
        backlog = pending(MAX_BACKLOG + 1)
        if backlog == 0 or seen < backlog <= MAX_BACKLOG:
            seen = backlog  # empty, or deliveries are arriving: look again later
            continue
        indexed = 0
        while backlog:
            try:
                done = await index(CHUNK)
            except (StoreError, sqlite3.Error) as exc:  # disk full, say: try again later
                log.warning("store indexing failed", extra={"error": str(exc)})
                break
            indexed += done
            before, backlog = backlog, pending(MAX_BACKLOG + 1)
            if done == 0 or (backlog > before - done and backlog <= MAX_BACKLOG):
                break  # new deliveries: let them have the writer
        seen = backlog
        log.info("store texts indexed", extra={"count": indexed, "left": backlog})
