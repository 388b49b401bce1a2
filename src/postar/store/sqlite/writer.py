"""The single writer thread: it owns the write connection and does group commit.

Theory of operation:
- Callers submit jobs (a function of a Tx) from the event loop and await a future.
- The thread takes the first waiting job, then gathers whatever else arrives within the
  group-commit window (and everything that queued while the previous COMMIT ran), and runs them
  all in ONE transaction: BEGIN IMMEDIATE, a SAVEPOINT per job (a failing job rolls back alone
  and gets its exception), COMMIT. One fsync of the WAL covers the whole batch.
- Only after COMMIT returns: blob files left unreferenced are freed, changes are published and
  futures are resolved, in that order, through loop.call_soon_threadsafe.
- Several processes write one database (the server, its SMTP workers, a management command):
  each batch waits for its process's turn (turns.py) before BEGIN IMMEDIATE and gives it back
  after its after-commit work, before its callers are resolved.
- Jobs run strictly one after another; they see each other's effects in batch order.
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
from postar.store.sqlite.turns import WriterTurns

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
        self._modseq: dict[int, int] = {}

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
        turn_lock: str | None = None,
    ) -> None:
        self._connect = connect
        self._turn_lock_path = turn_lock
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
        turns: WriterTurns | None = None
        try:
            if self._turn_lock_path is not None:
                turns = WriterTurns(self._turn_lock_path)
        except OSError as exc:
            conn.close()
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._gather()
                if not batch:
                    continue
                held = turns is not None and turns.take()
                try:
                    outcomes = self._commit(conn, batch)
                finally:
                    if held and turns is not None:
                        turns.give()
                _resolve(outcomes)
        finally:
            conn.close()
            if turns is not None:
                turns.close()

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

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job[Any]]) -> list[_Outcome]:
        """Run the batch in one transaction and the after-commit work; the caller resolves
        the outcomes (after letting go of the turn lock)."""
        outcomes: list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
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
        except Exception as exc:  # a bug there must not leave the callers hanging
            log.error("store after-commit failed", extra={"error": repr(exc)})
        return outcomes


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
