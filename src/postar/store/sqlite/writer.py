"""The single writer thread: it owns the write connection and does group commit.

Theory of operation:
- Callers submit jobs (a function of a Tx) from the event loop and await a future.
- The thread takes the first waiting job, then gathers whatever else arrives within the
  group-commit window (and everything that queued while the previous COMMIT ran), and runs them
  all in ONE transaction: BEGIN IMMEDIATE, a SAVEPOINT per job (a failing job rolls back alone
  and gets its exception), COMMIT. One fsync of the WAL covers the whole batch.
- Only after COMMIT returns: blob files left unreferenced are freed, changes are published and
  futures are resolved, in that order, through loop.call_soon_threadsafe.
- Jobs run strictly one after another; they see each other's effects in batch order, except
  full-text index entries (Tx.index_later), which are inserted after the last job and before
  COMMIT: in the same transaction, so they are durable and visible together with their blobs.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from postar.store.interface import NotFound
from postar.store.model import MailboxChange

T = TypeVar("T")
log = logging.getLogger("postar.store")

MAX_BATCH = 512  # jobs per transaction: bounds the latency a huge burst adds to its first job


class Tx:
    """What a write job sees: the connection, plus what to do once the batch has committed."""

    def __init__(
        self, conn: sqlite3.Connection, blob_present: Callable[[str], bool] | None = None
    ) -> None:
        self.conn = conn
        # Set in a guest process (base.py): checks that a blob file still exists before the
        # job gives it a row, since the owner may have unlinked it since the guest wrote it.
        self.blob_present = blob_present
        self.changes: dict[int, MailboxChange] = {}  # by mailbox id, newest wins
        self.unreferenced: list[str] = []  # blob ids whose last reference this job dropped
        # Full-text rows to insert once every job of the batch has run (see index_later).
        self.index: dict[int, tuple[str, str]] = {}
        self.unindexed: set[int] = set()  # rows of earlier jobs' index() to forget
        self._modseq: dict[int, int] = {}

    def index_later(self, num: int, headers: str, body: str) -> None:
        """Index a blob's search text at the end of the batch, not inside this job's SAVEPOINT.

        FTS5 writes out its pending terms whenever a savepoint opens, so an entry inserted
        inside each job was flushed as its own small segment, job after job: about twice the
        work of inserting the batch's entries together before COMMIT, in the same transaction.
        """
        self.index[num] = (headers, body)

    def unindex(self, num: int) -> None:
        """The blob's row is gone: drop its full-text entry, written or still pending."""
        if self.index.pop(num, None) is None:
            self.unindexed.add(num)

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, tuple(params))

    def one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return self.conn.execute(sql, tuple(params)).fetchone()

    def modseq(self, account_id: int) -> int:
        """This job's MODSEQ for the account: the counter is bumped once per job, so all the
        messages one command changes share a value (RFC 7162 3.1 allows it) and every command
        gets a new, larger one."""
        value = self._modseq.get(account_id)
        if value is None:
            row = self.one(
                "UPDATE accounts SET modseq = modseq + 1 WHERE id = ? RETURNING modseq",
                (account_id,),
            )
            if row is None:
                raise NotFound(f"no account {account_id}")
            value = self._modseq[account_id] = int(row[0])
        return value

    def changed(self, account_id: int, mailbox_id: int, modseq: int) -> None:
        self.changes[mailbox_id] = MailboxChange(account_id, mailbox_id, modseq)


@dataclass
class _Job(Generic[T]):
    fn: Callable[[Tx], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    pins: tuple[str, ...] = ()
    frees: tuple[str, ...] = ()  # blob ids to re-check for freeing after this commit


@dataclass
class _Outcome:
    job: _Job[Any]
    tx: Tx
    result: Any = None
    error: BaseException | None = None


# Called in the writer thread after each COMMIT with the batch's outcomes.
AfterCommit = Callable[[sqlite3.Connection, list[_Outcome]], None]

_STOP = object()


class Writer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        window: float,
        after_commit: AfterCommit,
        blob_present: Callable[[str], bool] | None = None,
    ) -> None:
        self._connect = connect
        self._blob_present = blob_present
        self._window = window
        self._after_commit = after_commit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="postar-store-writer", daemon=True)
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.commits = 0  # transactions committed; tests compare it with deliveries

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self) -> None:
        """Run everything already submitted, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def submit(
        self,
        fn: Callable[[Tx], T],
        *,
        pins: tuple[str, ...] = (),
        frees: tuple[str, ...] = (),
    ) -> asyncio.Future[T]:
        if not self._thread.is_alive():
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, loop, future, pins, frees))
        return future

    # ---- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._gather()
                if batch:
                    self._commit(conn, batch)
        finally:
            conn.close()

    def _gather(self) -> tuple[list[_Job[Any]], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch: list[_Job[Any]] = [first]
        deadline = time.monotonic() + self._window
        while len(batch) < MAX_BATCH:
            try:
                remaining = deadline - time.monotonic()
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job[Any]]) -> None:
        outcomes: list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            index: dict[int, tuple[str, str]] = {}
            for job in batch:
                tx = Tx(conn, self._blob_present)
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(tx)
                except Exception as exc:  # the job's own error: handed to its caller below
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append(_Outcome(job, tx, error=exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append(_Outcome(job, tx, result=result))
                    for num in tx.unindexed:
                        index.pop(num, None)
                    index.update(tx.index)
            if index:
                conn.executemany(
                    "INSERT INTO blob_text (rowid, headers, body) VALUES (?, ?, ?)",
                    [(num, headers, body) for num, (headers, body) in index.items()],
                )
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            # The transaction as a whole failed (I/O error, disk full): nothing of it is
            # durable, so every job fails with the error.
            log.error("store commit failed", extra={"error": str(exc), "jobs": len(batch)})
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [_Outcome(job, Tx(conn), error=exc) for job in batch]
        try:
            self._after_commit(conn, outcomes)
        finally:
            _resolve(outcomes)


def _resolve(outcomes: list[_Outcome]) -> None:
    """Hand results to the callers: one call_soon_threadsafe per event loop and batch, not per
    job, since each one wakes the loop through its self-pipe."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome.job.loop, []).append(outcome)
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, settled)
        except RuntimeError:
            pass  # the callers' loop is closed: nobody is waiting any more


def _settle(outcomes: list[_Outcome]) -> None:
    for outcome in outcomes:
        future = outcome.job.future
        if future.cancelled():
            continue
        if outcome.error is not None:
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome.result)
