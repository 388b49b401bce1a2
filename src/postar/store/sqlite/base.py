"""The embedded store: SQLite (WAL) for metadata and small bodies, content-addressed files
for larger bodies.

Theory of operation:
- One writer thread owns the only write connection (writer.py) and commits in groups; every
  mutation here is a job function run there, inside its own SAVEPOINT. No other thread writes.
- Readers use their own connections, one per thread of a small executor, each read a snapshot
  (BEGIN ... COMMIT around the queries of one call). WAL lets them run beside the writer.
- A body of at most inline_body_max bytes is a row of blob_bodies, written by the metadata
  job itself: COMMIT (synchronous=FULL fsyncs the WAL) makes body and rows durable at once,
  and the caller's future resolves after it. Nothing is pinned or unlinked for it.
- Durability order for a larger body: blob file and its directory fsynced (in the body thread,
  bodies.py, grouped with the other bodies that arrived meanwhile) -> metadata job submitted ->
  COMMIT -> caller's future resolved. A crash at any point leaves every acknowledged message
  whole and at worst an orphan file, removed by open().
- After COMMIT, in the writer thread: unreferenced blob files are unlinked, then changes are
  published on the event loop, then callers resume (call_soon_threadsafe keeps that order).
- Lock order: BlobFiles._lock is the only lock, never held while waiting on SQLite.
- One process per data directory: open() takes an exclusive flock on data_dir/postar.lock
  (released by the kernel if the process dies), since a second process would sweep the first
  one's in-flight blob files as orphans. A store opened with beside_owner=True (the management
  commands, the SMTP worker processes) may open while another process holds the lock: it is
  then a guest, which neither sweeps nor unlinks blob files (the owner may have pinned or be
  writing them); what it leaves unreferenced is an orphan the owner's next open() sweeps.
  Their writers take turns at the database (turns.py) under SQLite's own write lock.
- Guests against the owner's frees: a guest's body file is not pinned in the owner, so the
  owner could unlink a file of the same content (its last message expunged) between the
  guest's write and the guest's COMMIT. Both sides decide under SQLite's write lock: the owner
  re-reads which freed ids are still unreferenced and unlinks them inside BEGIN IMMEDIATE, and
  a guest job that creates a blob row checks inside its transaction that the file is there
  (else the job fails and the client is told to retry). One of the two always comes second
  and sees the other's work.
- Bodies another process wrote: a file found at its final name may be another process's
  work whose fsyncs are still under way, so the body thread syncs a found file again, and
  syncs every directory level above each body (blobs.py write_group): a 250 never rests on
  another process's unfinished fsync.
- Guests against the owner's sweep: a guest holds a shared flock on data_dir/postar.guests
  while open; the owner sweeps orphans only if it can take that lock exclusively, so files a
  guest is writing (say, an SMTP worker of a server that was just killed) are never swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from postar.mime.serialize import dumps
from postar.mime.structure import ParsedMessage
from postar.store.changes import ChangeFeed
from postar.store.interface import (
    AlreadyExists,
    Store,
    StoreError,
)
from postar.store.model import (
    MailboxChange,
)
from postar.store.sqlite import indexer, ops, rows
from postar.store.sqlite.blobs import BlobFiles, blob_id_of
from postar.store.sqlite.bodies import BodyWriter
from postar.store.sqlite.schema import migrate
from postar.store.sqlite.writer import Tx, Writer, _Outcome

T = TypeVar("T")
log = logging.getLogger("postar.store")

DB_NAME = "postar.sqlite3"
BLOB_DIR = "blobs"
LOCK_NAME = "postar.lock"
GUESTS_LOCK_NAME = "postar.guests"
# The blobs whose bytes are files, not rows of blob_bodies.
FILE_BLOB_IDS = "SELECT id FROM blobs WHERE num NOT IN (SELECT num FROM blob_bodies)"
WRITER_LOCK_NAME = "postar.writer"  # writers of all processes take turns on it (turns.py)
# Bodies up to this size are stored in the database ([store] inline_body_max).
INLINE_BODY_MAX = 64 * 1024
# Readers map the database file ([store] read_mmap) instead of copying its pages through
# read() into a cache of their own (2 MB by default, far less than the bodies a POP3 download
# or an IMAP FETCH goes through): about half the cost of reading a 4 KB body, and the pages
# are the kernel's page cache, shared by every reader and process. SQLite caps the size at
# its build's limit (2 GiB by default; a build may set 0, which turns mapping off); beyond
# it, and for pages still in the WAL, it reads as before. Writers do not map: SQLite then
# writes with write(), which the maps see (Linux has one page cache for both).
# The price, why it can be turned off:
# - an I/O error on a mapped page raises SIGBUS and stops the whole process (every session),
#   where read() fails one request;
# - pages a reader has touched count in the process's resident memory (they are the page
#   cache's, shared and reclaimable, but RSS-based limits see them), and every reader
#   connection reserves address space the size of the database (matters under ulimit -v).
READ_MMAP_SIZE = 1 << 31


@dataclasses.dataclass(frozen=True)
class _Body:
    """A message body made durable and pinned, ready for its metadata job."""

    blob_id: str
    size: int
    parsed: bytes | None
    search: tuple[str, str] | None
    message_id: str | None
    refs: tuple[str, ...]
    # The bytes of a body stored in the database (at most inline_body_max): not a file, not
    # pinned; its metadata job writes them with its rows, under the same COMMIT.
    inline: bytes | None = None


class SQLiteBase(Store):
    """Connections, the writer, blob files and the change feed; the operations are mixins."""

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        group_commit_window: float = 0.0,
        inline_body_max: int = INLINE_BODY_MAX,
        read_mmap: bool = True,
        default_quota: int = 0,
        readers: int = 4,
        beside_owner: bool = False,
        guest_only: bool = False,
        index_in_background: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.beside_owner = beside_owner or guest_only
        # A worker process must never become the owner: it would sweep the files of the
        # server it works for, had that server just died.
        self.guest_only = guest_only
        self._guest = False  # opened while another process held the data dir
        self.db_path = self.data_dir / DB_NAME
        self.fsync = fsync
        self.group_commit_window = group_commit_window
        self.inline_body_max = inline_body_max
        self.read_mmap = read_mmap
        # The serving process keeps the full-text index current (indexer.py); a guest never.
        self.index_in_background = index_in_background
        self._indexer: asyncio.Task[None] | None = None
        # When a caller last used the store: the indexer waits for a quiet moment (indexer.py).
        self._active = 0.0
        self.default_quota = default_quota
        self._reader_count = readers
        self._blobs = BlobFiles(self.data_dir / BLOB_DIR, fsync=fsync)
        self._feed = ChangeFeed()
        self._queue_watchers: list[Callable[[], None]] = []  # watch_queue() callbacks
        self._queue_poller: asyncio.Task[None] | None = None  # commits by other processes
        # forward_commits() callbacks: another process is told of this one's commits.
        self._change_forwarders: list[Callable[[list[MailboxChange]], None]] = []
        self._queue_forwarders: list[Callable[[], None]] = []
        self._free_forwarders: list[Callable[[list[str]], None]] = []
        self._writer: Writer | None = None
        self._bodies: BodyWriter | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.orphans_removed = 0  # blob files swept by the last open(); tests read it
        self._lock_fd: int | None = None
        self._guests_fd: int | None = None  # a guest's shared lock (see the module docstring)

    @property
    def commit_count(self) -> int:
        """Write transactions committed since open(): with group commit, fewer than writes."""
        return self._writer.commits if self._writer is not None else 0

    # ---- life cycle ----------------------------------------------------------------------
    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.db_path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA foreign_keys = ON")
        # FULL: the WAL is fsynced at every COMMIT, which is what "durable before acknowledged"
        # needs. NORMAL (test mode) survives a process crash, not a power cut.
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.fsync else 'NORMAL'}")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
            if self.read_mmap:
                conn.execute(f"PRAGMA mmap_size = {READ_MMAP_SIZE}")
        return conn

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open_files)
        writer = Writer(
            self._connect,
            window=self.group_commit_window,
            after_commit=self._after_commit,
            blob_present=self._blobs.present if self._guest else None,
            turn_lock=str(self.data_dir / WRITER_LOCK_NAME),
        )
        try:
            await asyncio.to_thread(writer.start)
        except BaseException:
            self._unlock_data_dir()  # a store that failed to open holds nothing
            raise
        self._writer = writer
        self._bodies = BodyWriter(self._blobs)
        self._bodies.start()
        self._executor = ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="postar-store-reader"
        )
        if self.index_in_background and not self._guest:
            self._indexer = asyncio.create_task(
                indexer.index_in_background(
                    self._unindexed_count, self.index_pending, self._idle_for
                )
            )
            self._indexer.add_done_callback(_report_crash)

    async def index_pending(self, limit: int) -> int:
        """Add up to limit texts waiting for the full-text index to it, in one transaction;
        returns how many (indexer.py runs this in the background). Not counted as activity."""
        if self._writer is None:
            raise StoreError("store is not open")
        return await self._writer.submit(lambda tx: ops.index_pending(tx, limit))

    async def _unindexed_count(self, limit: int) -> int:
        """How many texts wait for the full-text index, counted up to limit (a scan of up to
        limit rows: in a reader thread, not on the loop). Not counted as activity."""
        if self._executor is None:
            raise StoreError("store is not open")
        count = await asyncio.get_running_loop().run_in_executor(
            self._executor,
            self._run_read,
            lambda conn: conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM blob_unindexed LIMIT ?)", (limit,)
            ).fetchone()[0],
        )
        return int(count)

    def _idle_for(self) -> float:
        """Seconds since a caller last read or wrote (a POP3 download, an IMAP session)."""
        return time.monotonic() - self._active

    def _open_files(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        try:
            conn = self._connect()
            try:
                migrate(conn)
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
        except BaseException:
            self._unlock_data_dir()
            raise
        self._blobs.root.mkdir(exist_ok=True)
        if self._guest:
            return  # the owner's in-flight files look like orphans from here
        fd = os.open(self.data_dir / GUESTS_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # A guest is open, maybe still writing bodies: orphans wait for the next open.
                log.info("store orphan sweep skipped: another process has the store open")
                return
            # Read under the lock: no guest commits a new reference while we sweep.
            conn = self._connect(readonly=True)
            try:
                referenced = {r[0] for r in conn.execute(FILE_BLOB_IDS)}
            finally:
                conn.close()
            self.orphans_removed = self._blobs.sweep(referenced)
        finally:
            os.close(fd)
        if self.orphans_removed:
            log.info("store orphan blobs removed", extra={"count": self.orphans_removed})

    def _lock_data_dir(self) -> None:
        self._guest = False
        fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if not self.beside_owner:
                raise StoreError(f"{self.data_dir} is in use by another process") from None
            self._guest = True
            guests = os.open(self.data_dir / GUESTS_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(guests, fcntl.LOCK_SH)  # waits out an owner's sweep in progress
            self._guests_fd = guests
            return
        if self.guest_only:
            os.close(fd)
            raise StoreError(f"no server holds {self.data_dir}: a worker does not open it alone")
        self._lock_fd = fd

    def _unlock_data_dir(self) -> None:
        for name in ("_lock_fd", "_guests_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the flock
                setattr(self, name, None)

    async def close(self) -> None:
        if self._indexer is not None:
            self._indexer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._indexer
            self._indexer = None
        if self._queue_poller is not None:
            self._queue_poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._queue_poller
            self._queue_poller = None
        if self._bodies is not None:
            # Bodies first: their callers then submit metadata jobs the writer still runs.
            await asyncio.to_thread(self._bodies.stop)
            self._bodies = None
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)
            self._writer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._local = threading.local()
        self._feed.close()
        self._unlock_data_dir()

    # ---- plumbing -------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(readonly=True)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader()
        conn.execute("BEGIN")  # one snapshot for all the queries of this call
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def _read_point(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a point lookup (one indexed row) on the event loop's thread.

        An indexed SQLite read takes microseconds, less than the thread-pool hop and GIL
        hand-over of _read(); RCPT and AUTH make several per message. WAL readers never wait
        for the writer, so this cannot block the loop on a commit. Only for queries whose cost
        does not grow with the mailbox: scans and searches stay in _read().
        """
        if self._executor is None:
            raise StoreError("store is not open")
        self._active = time.monotonic()
        return self._run_read(fn)

    def _read_statement(self, fn: Callable[[sqlite3.Connection], T], what: str) -> T:
        """Like _read_point, for a call that runs one statement: no BEGIN/COMMIT (a single
        statement is its own snapshot), and a database error (busy past the timeout, an I/O
        error) is a StoreError, which the glues answer with -ERR or NO."""
        if self._executor is None:
            raise StoreError("store is not open")
        self._active = time.monotonic()
        try:
            return fn(self._reader())
        except sqlite3.Error as exc:
            raise StoreError(f"reading {what}: {exc}") from exc

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise StoreError("store is not open")
        self._active = time.monotonic()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_read, fn)

    async def _write(
        self,
        fn: Callable[[Tx], T],
        *,
        pins: tuple[str, ...] = (),
        frees: tuple[str, ...] = (),
    ) -> T:
        if self._writer is None:
            raise StoreError("store is not open")
        self._active = time.monotonic()
        return await self._writer.submit(fn, pins=pins, frees=frees)

    def _after_commit(self, conn: sqlite3.Connection, outcomes: list[_Outcome]) -> None:
        """Writer thread, after COMMIT (or after a failed one)."""
        pins: list[str] = []
        candidates: list[str] = []
        changes: list[MailboxChange] = []
        for outcome in outcomes:
            pins.extend(outcome.job.pins)
            candidates.extend(outcome.job.frees)
            if outcome.error is None:
                candidates.extend(outcome.tx.unreferenced)
                changes.extend(outcome.tx.changes.values())
            else:
                # The job's body may now be referenced by nothing: an orphan to free.
                candidates.extend(outcome.job.pins)
        self._blobs.unpin(pins)
        if candidates and not self._guest:
            self._free_blobs(conn, sorted(set(candidates)))
        elif candidates and self._free_forwarders and self._loop is not None:
            # A guest unlinks nothing; the owner re-checks these under its write lock.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._forward_frees, sorted(set(candidates)))
        if changes and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._publish_own, changes)
            except RuntimeError:
                pass  # loop closed during shutdown: no subscriber is left to tell

    def _free_blobs(self, conn: sqlite3.Connection, unique: list[str]) -> None:
        """Unlink the files of blobs that lost their row, deciding under the write lock so a
        guest's COMMIT that brings a row back cannot slip in between (module docstring)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            log.warning("store blob free skipped", extra={"error": str(exc)})
            return  # orphans: swept at the next open
        try:
            still: set[str] = set()
            for part in rows.chunks(unique):
                still.update(
                    r[0]
                    for r in conn.execute(
                        f"SELECT id FROM blobs WHERE id IN ({rows.placeholders(len(part))})",
                        tuple(part),
                    )
                )
            self._blobs.free(unique, still)
        finally:
            conn.execute("COMMIT")  # nothing written: no WAL frame, no fsync

    def _publish_own(self, changes: list[MailboxChange]) -> None:
        self._feed.publish(changes)
        for forward in self._change_forwarders:
            forward(changes)

    def _forward_frees(self, blob_ids: list[str]) -> None:
        for forward in self._free_forwarders:
            forward(blob_ids)

    def forward_commits(
        self,
        on_changes: Callable[[list[MailboxChange]], None],
        on_queue: Callable[[], None],
        on_unreferenced: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._change_forwarders.append(on_changes)
        self._queue_forwarders.append(on_queue)
        if on_unreferenced is not None:
            self._free_forwarders.append(on_unreferenced)

    def publish_changes(self, changes: list[MailboxChange]) -> None:
        self._feed.publish(changes)

    async def free_if_unreferenced(self, blob_ids: list[str]) -> None:
        if self._guest or self._writer is None:
            return
        await self._write(lambda tx: None, frees=tuple(blob_ids))

    async def _store_body(self, raw: bytes, parsed: ParsedMessage | None) -> _Body:
        """A small body is only hashed: its job stores the bytes with its rows. A larger one is
        hashed, written and fsynced as a file (in the body thread, grouped with the bodies that
        arrive meanwhile) and returned pinned (see blobs.py)."""
        if self._bodies is None:
            raise StoreError("store is not open")
        if self.inline_body_max and len(raw) <= self.inline_body_max:  # 0: no body inline
            # Why in the database: one WAL fsync then covers body and rows, and a delivery
            # costs one hand-off to the writer thread instead of two (body thread, then
            # writer) plus a file, its directory entry and their fsync round.
            return _Body(blob_id_of(raw), len(raw), *self._describe(raw, parsed), inline=raw)
        future = self._bodies.submit(raw)
        # The stored parse is serialised while the body thread hashes and writes.
        try:
            body = _Body("", len(raw), *self._describe(raw, parsed))
        except BaseException:
            future.cancel()  # the body thread drops the pin of a cancelled future
            raise
        try:
            blob_id = await future
        except OSError as exc:
            # Disk full, I/O error: a store failure the protocol answers as temporary (451).
            raise StoreError(f"cannot store the message body: {exc}") from exc
        return dataclasses.replace(body, blob_id=blob_id)

    @staticmethod
    def _describe(
        raw: bytes, parsed: ParsedMessage | None
    ) -> tuple[bytes | None, tuple[str, str] | None, str | None, tuple[str, ...]]:
        """What the blob row and the message rows keep of the parse (the _Body fields)."""
        if parsed is None:
            return None, None, None, ()
        return (
            dumps(parsed),
            (parsed.search_headers, parsed.search_body),
            ops.message_id_of(parsed.envelope.message_id),
            tuple(ops.referenced_ids(parsed.envelope.in_reply_to, raw[: parsed.root.body_start])),
        )

    async def _write_with_body(self, body: _Body, fn: Callable[[Tx], T]) -> T:
        self._active = time.monotonic()
        if body.inline is not None:
            return await self._write(fn)  # nothing pinned: the bytes travel with the job
        try:
            if self._writer is None:
                raise StoreError("store is not open")
            future = self._writer.submit(fn, pins=(body.blob_id,))
        except BaseException:
            self._blobs.unpin([body.blob_id])
            raise
        # From here the writer owns the pin and releases it after the commit, even if this
        # caller is cancelled meanwhile.
        return await future

    # ---- change feed ---------------------------------------------------------------------------
    def changes(self, account_id: int) -> AsyncIterator[MailboxChange]:
        return self._feed.subscribe(account_id)

    # ---- maintenance ---------------------------------------------------------------------------
    async def backup(self, dest: Path) -> None:
        """dest/postar.sqlite3 from SQLite's online backup (one consistent snapshot, with the
        bodies stored in the database) plus dest/blobs/ with a hard link (or, across file
        systems, a copy) of every body file that snapshot references. Frees of blob files wait
        until the links are made."""
        dest = Path(dest)
        self._blobs.hold()
        try:
            await asyncio.to_thread(self._backup_files, dest)
        finally:
            deferred = self._blobs.release()
            if deferred and self._writer is not None:
                await self._write(lambda tx: None, frees=tuple(sorted(deferred)))

    def _backup_files(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / DB_NAME
        if target.exists():
            raise AlreadyExists(f"{target} exists")
        source = self._connect(readonly=True)
        copy = sqlite3.connect(target, isolation_level=None)
        try:
            source.backup(copy)  # pages=-1: the whole database in one step, one snapshot
            ids = [r[0] for r in copy.execute(FILE_BLOB_IDS)]
        finally:
            copy.close()
            source.close()
        blobs = BlobFiles(dest / BLOB_DIR, fsync=False)
        for blob_id in ids:
            src_path = self._blobs.path(blob_id)
            dst_path = blobs.path(blob_id)
            dst_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src_path, dst_path)
            except FileExistsError:
                pass
            except OSError:
                shutil.copy2(src_path, dst_path)
        if self.fsync:
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _report_crash(task: asyncio.Task[None]) -> None:
    """A bug in the background indexer is logged, not left for garbage collection to find."""
    if not task.cancelled() and task.exception() is not None:
        log.error("store indexer stopped", extra={"error": repr(task.exception())})
