"""The background indexer: brings the full-text index up to date when deliveries pause.

Theory of operation:
- A delivery stores its searchable text in blob_search and lists it in blob_unindexed, in its
  own transaction (ops.add_blob_ref); it does not touch the FTS5 index. A search treats the
  unindexed texts of its mailbox as candidates and checks them directly, so results never
  depend on the index being current, only the speed of a search does.
- This task, in the serving process only (not in SMTP workers or management commands), looks
  at the backlog every QUIET seconds. While it grew since the last look (deliveries are
  coming in), or while this process's store had other callers in the last QUIET seconds (a
  POP3 download, IMAP sessions), it waits, unless the backlog passed MAX_BACKLOG or MAX_WAIT
  went by since the last pass. Then it indexes CHUNK texts per transaction until none are
  left, or until it is no longer alone again below MAX_BACKLOG. Batches of hundreds cost
  FTS5 about half the work per text of the commits of ten a busy SMTP intake makes, and
  work that comes in bursts is not slowed by indexing at all: it is done in the pauses.
- Each chunk is an ordinary writer job: it takes its turn with the deliveries (turns.py) and
  holds the write lock for one chunk only. A failed pass (disk full) is logged and tried again
  at the next look.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable

from postar.store.interface import StoreError

log = logging.getLogger("postar.store")

QUIET = 1.0  # seconds between looks at the backlog
CHUNK = 200  # texts per transaction: some tens of milliseconds of the write lock
MAX_BACKLOG = 5_000  # index even while busy: a search checks these directly (a few ms)
MAX_WAIT = 10.0  # seconds: a slow trickle of deliveries is indexed at least this often


async def index_in_background(
    pending: Callable[[int], Awaitable[int]],
    index: Callable[[int], Awaitable[int]],
    idle_for: Callable[[], float],
) -> None:
    """Run until cancelled. pending(limit): the backlog, counted up to limit; index(n): index
    up to n texts in one transaction, returning how many; idle_for(): seconds since the
    store's last other caller."""
    seen = 0
    last_pass = time.monotonic()
    while True:
        await asyncio.sleep(QUIET)
        try:
            backlog = await pending(MAX_BACKLOG + 1)
            overdue = time.monotonic() - last_pass > MAX_WAIT
            busy = seen < backlog or idle_for() < QUIET
            if backlog == 0 or (busy and backlog <= MAX_BACKLOG and not overdue):
                seen = backlog  # empty, or the store is busy: look again later
                continue
            last_pass = time.monotonic()
            seen = await _index_pass(backlog, pending, index, idle_for)
        except (StoreError, sqlite3.Error) as exc:  # disk full, say: try again later
            log.warning("store indexing failed", extra={"error": str(exc)})


async def _index_pass(
    backlog: int,
    pending: Callable[[int], Awaitable[int]],
    index: Callable[[int], Awaitable[int]],
    idle_for: Callable[[], float],
) -> int:
    """Index chunks until none are left or the store gets busy; returns the backlog left."""
    indexed = 0
    started = time.monotonic()
    while backlog:
        done = await index(CHUNK)
        indexed += done
        before, backlog = backlog, await pending(MAX_BACKLOG + 1)
        busy = backlog > before - done or idle_for() < time.monotonic() - started
        if done == 0 or (busy and backlog <= MAX_BACKLOG):
            break  # deliveries or readers: let them have the writer and the CPU
    log.info("store texts indexed", extra={"count": indexed, "left": backlog})
    return backlog
