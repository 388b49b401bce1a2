"""The embedded store: SQLite (WAL) for metadata, content-addressed files for bodies.

Theory of operation:
- One writer thread owns the only write connection (writer.py) and commits in groups; every
  mutation here is a job function run there, inside its own SAVEPOINT. No other thread writes.
- Readers use their own connections, one per thread of a small executor, each read a snapshot
  (BEGIN ... COMMIT around the queries of one call). WAL lets them run beside the writer.
- Durability order for a new body: blob file fsynced (in a worker thread, concurrently with other
  deliveries) -> metadata job submitted -> COMMIT (synchronous=FULL fsyncs the WAL) -> caller's
  future resolved. A crash at any point leaves every acknowledged message whole and at worst an
  orphan file, removed by open().
- After COMMIT, in the writer thread: unreferenced blob files are unlinked, then changes are
  published on the event loop, then callers resume (call_soon_threadsafe keeps that order).
- Lock order: BlobFiles._lock is the only lock, never held while waiting on SQLite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from postar.mime.serialize import dumps, loads
from postar.mime.structure import ParsedMessage
from postar.store import names
from postar.store.changes import ChangeFeed
from postar.store.interface import (
    AlreadyExists,
    InvalidName,
    MailboxNotSelectable,
    NotFound,
    QuotaExceeded,
    Store,
    StoreError,
)
from postar.store.model import (
    DEFAULT_FOLDERS,
    Account,
    Alias,
    Delivered,
    DeliveryTarget,
    Domain,
    FlagMode,
    Mailbox,
    MailboxChange,
    MessageRecord,
    QueuedRecipient,
    QueueEntry,
    ScramSecrets,
)
from postar.store.sqlite import ops, rows
from postar.store.sqlite.blobs import BlobFiles, blob_id_of
from postar.store.sqlite.schema import migrate
from postar.store.sqlite.writer import Tx, Writer, _Outcome

T = TypeVar("T")
log = logging.getLogger("postar.store")

DB_NAME = "postar.sqlite3"
BLOB_DIR = "blobs"
HASH_INLINE_LIMIT = 256 * 1024  # hash smaller bodies on the loop: cheaper than a thread hop
SEARCH_WHERE = {"text": "{headers body}", "body": "body", "header": "headers"}


@dataclasses.dataclass(frozen=True)
class _Body:
    """A message body made durable and pinned, ready for its metadata job."""

    blob_id: str
    size: int
    parsed: bytes | None
    search: tuple[str, str] | None
    message_id: str | None
    refs: tuple[str, ...]


class SQLiteStore(Store):
    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        group_commit_window: float = 0.002,
        default_quota: int = 0,
        readers: int = 4,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.db_path = self.data_dir / DB_NAME
        self.fsync = fsync
        self.group_commit_window = group_commit_window
        self.default_quota = default_quota
        self._reader_count = readers
        self._blobs = BlobFiles(self.data_dir / BLOB_DIR, fsync=fsync)
        self._feed = ChangeFeed()
        self._writer: Writer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.orphans_removed = 0  # blob files swept by the last open(); tests read it

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
        return conn

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._open_files)
        writer = Writer(
            self._connect, window=self.group_commit_window, after_commit=self._after_commit
        )
        await asyncio.to_thread(writer.start)
        self._writer = writer
        self._executor = ThreadPoolExecutor(
            max_workers=self._reader_count, thread_name_prefix="postar-store-reader"
        )

    def _open_files(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            migrate(conn)
            conn.execute("PRAGMA journal_mode = WAL")
            referenced = {r[0] for r in conn.execute("SELECT id FROM blobs")}
        finally:
            conn.close()
        self._blobs.root.mkdir(exist_ok=True)
        self.orphans_removed = self._blobs.sweep(referenced)
        if self.orphans_removed:
            log.info("store orphan blobs removed", extra={"count": self.orphans_removed})

    async def close(self) -> None:
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

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise StoreError("store is not open")
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
        if candidates:
            unique = sorted(set(candidates))
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
        if changes and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._feed.publish, changes)
            except RuntimeError:
                pass  # loop closed during shutdown: no subscriber is left to tell

    async def _store_body(self, raw: bytes, parsed: ParsedMessage | None) -> _Body:
        """Hash, write and fsync the body file; returns it pinned (see blobs.py)."""
        if len(raw) <= HASH_INLINE_LIMIT:
            blob_id = blob_id_of(raw)
        else:
            blob_id = await asyncio.to_thread(blob_id_of, raw)
        body = _Body(
            blob_id=blob_id,
            size=len(raw),
            parsed=dumps(parsed) if parsed is not None else None,
            search=(parsed.search_headers, parsed.search_body) if parsed is not None else None,
            message_id=ops.message_id_of(parsed.envelope.message_id) if parsed else None,
            refs=tuple(
                ops.referenced_ids(parsed.envelope.in_reply_to, raw[: parsed.root.body_start])
            )
            if parsed is not None
            else (),
        )
        self._blobs.pin(blob_id)
        try:
            await asyncio.to_thread(self._blobs.ensure, blob_id, raw)
        except BaseException:
            self._blobs.unpin([blob_id])
            raise
        return body

    async def _write_with_body(self, body: _Body, fn: Callable[[Tx], T]) -> T:
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

    # ---- domains ----------------------------------------------------------------------------
    async def add_domain(self, name: str, catch_all: str | None = None) -> Domain:
        domain = Domain(name.strip().lower(), catch_all)
        if not domain.name:
            raise InvalidName("empty domain name")

        def job(tx: Tx) -> Domain:
            if tx.one("SELECT 1 FROM domains WHERE name = ?", (domain.name,)):
                raise AlreadyExists(f"domain {domain.name} exists")
            tx.execute(
                "INSERT INTO domains (name, catch_all) VALUES (?, ?)", (domain.name, catch_all)
            )
            return domain

        return await self._write(job)

    async def get_domain(self, name: str) -> Domain | None:
        def read(conn: sqlite3.Connection) -> Domain | None:
            row = conn.execute(
                "SELECT name, catch_all FROM domains WHERE name = ?", (name.strip().lower(),)
            ).fetchone()
            return rows.domain(row) if row else None

        return await self._read(read)

    async def set_catch_all(self, name: str, catch_all: str | None) -> None:
        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE domains SET catch_all = ? WHERE name = ?", (catch_all, name.strip().lower())
            )
            if cur.rowcount == 0:
                raise NotFound(f"no domain {name}")

        await self._write(job)

    async def list_domains(self) -> list[Domain]:
        return await self._read(
            lambda conn: [
                rows.domain(r)
                for r in conn.execute("SELECT name, catch_all FROM domains ORDER BY name")
            ]
        )

    async def remove_domain(self, name: str) -> None:
        key = name.strip().lower()

        def job(tx: Tx) -> None:
            if not tx.one("SELECT 1 FROM domains WHERE name = ?", (key,)):
                raise NotFound(f"no domain {key}")
            if tx.one("SELECT 1 FROM accounts WHERE domain = ? LIMIT 1", (key,)) or tx.one(
                "SELECT 1 FROM aliases WHERE domain = ? LIMIT 1", (key,)
            ):
                raise StoreError(f"domain {key} still has accounts or aliases")
            tx.execute("DELETE FROM domains WHERE name = ?", (key,))

        await self._write(job)

    # ---- accounts ---------------------------------------------------------------------------
    async def add_account(
        self,
        address: str,
        password_hash: str,
        scram: ScramSecrets | None,
        quota_bytes: int = 0,
    ) -> Account:
        """The address's domain must exist (NotFound otherwise). quota_bytes 0 takes the
        configured default quota; set_quota(address, 0) afterwards makes it unlimited."""
        addr, domain = names.address(address)
        quota = quota_bytes or self.default_quota

        def job(tx: Tx) -> Account:
            if not tx.one("SELECT 1 FROM domains WHERE name = ?", (domain,)):
                raise NotFound(f"no domain {domain}")
            if tx.one("SELECT 1 FROM accounts WHERE address = ?", (addr,)) or tx.one(
                "SELECT 1 FROM aliases WHERE address = ?", (addr,)
            ):
                raise AlreadyExists(f"{addr} exists")
            account_id = int(
                tx.one(
                    "INSERT INTO accounts (address, domain, password_hash, scram_salt, "
                    "scram_iterations, scram_stored_key, scram_server_key, quota_bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (addr, domain, password_hash, *rows.scram_params(scram), quota),
                )[0]
            )
            for folder, special_use in DEFAULT_FOLDERS:
                ops.insert_mailbox(tx, account_id, folder, special_use)
                tx.execute(
                    "INSERT INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (account_id, folder),
                )
            return Account(account_id, addr, domain, password_hash, scram, quota)

        return await self._write(job)

    async def get_account(self, address: str) -> Account | None:
        key = address.strip().lower()

        def read(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {rows.ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (key,)
            ).fetchone()
            return rows.account(row) if row else None

        return await self._read(read)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        def read(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {rows.ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            return rows.account(row) if row else None

        return await self._read(read)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def read(conn: sqlite3.Connection) -> list[Account]:
            if domain is None:
                cur = conn.execute(f"SELECT {rows.ACCOUNT_COLUMNS} FROM accounts ORDER BY address")
            else:
                cur = conn.execute(
                    f"SELECT {rows.ACCOUNT_COLUMNS} FROM accounts WHERE domain = ? "
                    "ORDER BY address",
                    (domain.strip().lower(),),
                )
            return [rows.account(r) for r in cur]

        return await self._read(read)

    async def set_password(
        self, address: str, password_hash: str, scram: ScramSecrets | None
    ) -> None:
        key = address.strip().lower()

        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE accounts SET password_hash = ?, scram_salt = ?, scram_iterations = ?, "
                "scram_stored_key = ?, scram_server_key = ? WHERE address = ?",
                (password_hash, *rows.scram_params(scram), key),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account {key}")

        await self._write(job)

    async def set_quota(self, address: str, quota_bytes: int) -> None:
        key = address.strip().lower()

        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE accounts SET quota_bytes = ? WHERE address = ?", (quota_bytes, key)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account {key}")

        await self._write(job)

    async def remove_account(self, address: str) -> None:
        key = address.strip().lower()

        def job(tx: Tx) -> None:
            row = tx.one("SELECT id FROM accounts WHERE address = ?", (key,))
            if row is None:
                raise NotFound(f"no account {key}")
            account_id = int(row[0])
            for (mailbox_id,) in tx.execute(
                "SELECT id FROM mailboxes WHERE account_id = ?", (account_id,)
            ).fetchall():
                ops.drop_mailbox(tx, account_id, mailbox_id)
            tx.execute("DELETE FROM subscriptions WHERE account_id = ?", (account_id,))
            tx.execute("DELETE FROM accounts WHERE id = ?", (account_id,))

        await self._write(job)

    # ---- aliases ------------------------------------------------------------------------------
    async def add_alias(self, address: str, targets: Sequence[str]) -> Alias:
        addr, domain = names.address(address)
        alias = Alias(addr, tuple(t.strip() for t in targets))
        if not alias.targets:
            raise InvalidName(f"alias {addr} has no targets")

        def job(tx: Tx) -> Alias:
            if not tx.one("SELECT 1 FROM domains WHERE name = ?", (domain,)):
                raise NotFound(f"no domain {domain}")
            if tx.one("SELECT 1 FROM aliases WHERE address = ?", (addr,)) or tx.one(
                "SELECT 1 FROM accounts WHERE address = ?", (addr,)
            ):
                raise AlreadyExists(f"{addr} exists")
            tx.execute(
                "INSERT INTO aliases (address, domain, targets) VALUES (?, ?, ?)",
                (addr, domain, json.dumps(list(alias.targets))),
            )
            return alias

        return await self._write(job)

    async def get_alias(self, address: str) -> Alias | None:
        key = address.strip().lower()

        def read(conn: sqlite3.Connection) -> Alias | None:
            row = conn.execute(
                "SELECT address, targets FROM aliases WHERE address = ?", (key,)
            ).fetchone()
            return rows.alias(row) if row else None

        return await self._read(read)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def read(conn: sqlite3.Connection) -> list[Alias]:
            if domain is None:
                cur = conn.execute("SELECT address, targets FROM aliases ORDER BY address")
            else:
                cur = conn.execute(
                    "SELECT address, targets FROM aliases WHERE domain = ? ORDER BY address",
                    (domain.strip().lower(),),
                )
            return [rows.alias(r) for r in cur]

        return await self._read(read)

    async def remove_alias(self, address: str) -> None:
        key = address.strip().lower()

        def job(tx: Tx) -> None:
            if tx.execute("DELETE FROM aliases WHERE address = ?", (key,)).rowcount == 0:
                raise NotFound(f"no alias {key}")

        await self._write(job)

    # ---- mailboxes -----------------------------------------------------------------------------
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        return await self._read(
            lambda conn: rows.fetch_mailboxes(conn, rows.MAILBOXES_OF_ACCOUNT, account_id)
        )

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        try:
            canonical = names.mailbox_name(name)
        except InvalidName:
            return None

        def read(conn: sqlite3.Connection) -> Mailbox | None:
            found = rows.fetch_mailboxes(conn, rows.MAILBOX_BY_NAME, account_id, canonical)
            return found[0] if found else None

        return await self._read(read)

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        def read(conn: sqlite3.Connection) -> Mailbox | None:
            found = rows.fetch_mailboxes(conn, rows.MAILBOX_BY_ID, mailbox_id)
            return found[0] if found else None

        return await self._read(read)

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> Mailbox:
        canonical = names.mailbox_name(name)
        mailbox_id = await self._write(
            lambda tx: ops.create_mailbox(tx, account_id, canonical, special_use)
        )
        created = await self.get_mailbox_by_id(mailbox_id)
        if created is None:  # removed between the commit and this read by another caller
            raise NotFound(f"mailbox {canonical!r} vanished")
        return created

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        """A mailbox with children loses its messages and stays as a \\Noselect placeholder
        (RFC 9051 6.3.4); deleting such a placeholder while it has children is refused. A
        mailbox without children goes away with its messages; its subscription stays."""
        canonical = names.mailbox_name(name)
        if canonical == names.INBOX:
            raise StoreError("INBOX cannot be deleted")

        def job(tx: Tx) -> None:
            found = ops.mailbox_row(tx, account_id, canonical)
            if found is None:
                raise NotFound(f"no mailbox {canonical!r}")
            mailbox_id, noselect = found
            low, high = names.children_range(canonical)
            has_children = tx.one(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND name >= ? AND name < ? LIMIT 1",
                (account_id, low, high),
            )
            if not has_children:
                ops.drop_mailbox(tx, account_id, mailbox_id)
                return
            if noselect:
                raise MailboxNotSelectable(f"{canonical!r} has children and is \\Noselect")
            uids = [
                r[0]
                for r in tx.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (mailbox_id,))
            ]
            ops.remove_messages(tx, account_id, mailbox_id, uids)
            tx.execute(
                "UPDATE mailboxes SET noselect = 1, special_use = NULL WHERE id = ?", (mailbox_id,)
            )
            tx.changed(account_id, mailbox_id, ops.account_modseq(tx, account_id))

        await self._write(job)

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        """Children move along, UIDVALIDITY is kept (the values are unique across the database,
        so the new name never sees one it had), and subscriptions follow the names. Renaming
        INBOX moves its messages (new UIDs) into a new mailbox and leaves INBOX, and any INBOX
        children, in place (RFC 9051 6.3.6)."""
        src = names.mailbox_name(old)
        dst = names.mailbox_name(new)

        def job(tx: Tx) -> None:
            found = ops.mailbox_row(tx, account_id, src)
            if found is None:
                raise NotFound(f"no mailbox {src!r}")
            if ops.mailbox_row(tx, account_id, dst) is not None:
                raise AlreadyExists(f"mailbox {dst!r} exists")
            if dst.startswith(src + names.SEPARATOR):
                raise InvalidName(f"cannot rename {src!r} into itself")
            if src == names.INBOX:
                dest_id = ops.create_mailbox(tx, account_id, dst, None)
                uids = [
                    r[0]
                    for r in tx.execute(
                        "SELECT uid FROM messages WHERE mailbox_id = ?", (found[0],)
                    )
                ]
                _copy(tx, found[0], uids, dest_id, move=True)
                return
            low, high = names.children_range(src)
            moving = tx.execute(
                "SELECT id, name FROM mailboxes WHERE account_id = ? "
                "AND (name = ? OR (name >= ? AND name < ?))",
                (account_id, src, low, high),
            ).fetchall()
            renamed = [(mailbox_id, dst + name[len(src) :], name) for mailbox_id, name in moving]
            for _, target, _ in renamed:
                if ops.mailbox_row(tx, account_id, target) is not None:
                    raise AlreadyExists(f"mailbox {target!r} exists")
            for parent in names.parents(dst):
                if ops.mailbox_row(tx, account_id, parent) is None:
                    ops.insert_mailbox(tx, account_id, parent, None)
            modseq = ops.account_modseq(tx, account_id)
            for mailbox_id, target, name in renamed:
                tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (target, mailbox_id))
                tx.execute(
                    "UPDATE OR IGNORE subscriptions SET name = ? WHERE account_id = ? AND name = ?",
                    (target, account_id, name),
                )
                tx.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                    (account_id, name),
                )
                tx.changed(account_id, mailbox_id, modseq)

        await self._write(job)

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        canonical = names.mailbox_name(name)

        def job(tx: Tx) -> None:
            ops.account_modseq(tx, account_id)  # NotFound for an unknown account
            if subscribed:
                tx.execute(
                    "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (account_id, canonical),
                )
            else:
                tx.execute(
                    "DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                    (account_id, canonical),
                )

        await self._write(job)

    async def list_subscriptions(self, account_id: int) -> list[str]:
        return await self._read(
            lambda conn: [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name",
                    (account_id,),
                )
            ]
        )

    # ---- messages -------------------------------------------------------------------------------
    async def deliver(
        self,
        raw: bytes,
        parsed: ParsedMessage,
        targets: Sequence[DeliveryTarget],
        internal_date: float | None = None,
    ) -> list[Delivered]:
        if not targets:
            return []
        when = time.time() if internal_date is None else internal_date
        plan = [
            (
                t.account_id,
                _delivery_name(t.mailbox),
                rows.flags_text(names.canonical_flags(t.flags)),
            )
            for t in targets
        ]
        body = await self._store_body(raw, parsed)

        def job(tx: Tx) -> list[Delivered]:
            accepted: list[tuple[int, str, str]] = []
            planned_bytes: Counter[int] = Counter()
            for account_id, mailbox, flags in plan:
                try:
                    ops.check_quota(tx, account_id, planned_bytes[account_id] + body.size)
                except QuotaExceeded:
                    continue  # this recipient only; the caller answers per recipient
                planned_bytes[account_id] += body.size
                accepted.append((account_id, mailbox, flags))
            if not accepted:
                raise QuotaExceeded("every recipient is over quota")
            ops.add_blob_ref(tx, body.blob_id, body.size, len(accepted), body.parsed, body.search)
            delivered: list[Delivered] = []
            threads: dict[int, str] = {}
            for account_id, mailbox, flags in accepted:
                mailbox_id = ops.delivery_mailbox(tx, account_id, mailbox)
                if account_id not in threads:
                    threads[account_id] = ops.thread_for(tx, account_id, body.message_id, body.refs)
                uid = ops.insert_message(
                    tx,
                    account_id=account_id,
                    mailbox_id=mailbox_id,
                    modseq=tx.modseq(account_id),
                    flags=flags,
                    internal_date=when,
                    size=body.size,
                    blob_id=body.blob_id,
                    email_id=ops.new_email_id(),
                    thread_id=threads[account_id],
                    message_id=body.message_id,
                )
                delivered.append(Delivered(account_id, mailbox_id, uid))
            return delivered

        return await self._write_with_body(body, job)

    async def append(
        self,
        account_id: int,
        mailbox_id: int,
        raw: bytes,
        parsed: ParsedMessage,
        flags: Iterable[str] = (),
        internal_date: float | None = None,
    ) -> MessageRecord:
        when = time.time() if internal_date is None else internal_date
        flag_text = rows.flags_text(names.canonical_flags(flags))
        body = await self._store_body(raw, parsed)

        def job(tx: Tx) -> MessageRecord:
            owner = ops.selectable(tx, mailbox_id)
            if owner != account_id:
                raise NotFound(f"mailbox {mailbox_id} is not account {account_id}'s")
            ops.check_quota(tx, account_id, body.size)
            ops.add_blob_ref(tx, body.blob_id, body.size, 1, body.parsed, body.search)
            modseq = tx.modseq(account_id)
            email_id = ops.new_email_id()
            thread_id = ops.thread_for(tx, account_id, body.message_id, body.refs)
            uid = ops.insert_message(
                tx,
                account_id=account_id,
                mailbox_id=mailbox_id,
                modseq=modseq,
                flags=flag_text,
                internal_date=when,
                size=body.size,
                blob_id=body.blob_id,
                email_id=email_id,
                thread_id=thread_id,
                message_id=body.message_id,
            )
            return MessageRecord(
                mailbox_id=mailbox_id,
                uid=uid,
                modseq=modseq,
                flags=rows.flags_of(flag_text),
                internal_date=when,
                size=body.size,
                blob_id=body.blob_id,
                email_id=email_id,
                thread_id=thread_id,
            )

        return await self._write_with_body(body, job)

    async def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        return await self._read(
            lambda conn: [
                rows.message(r)
                for r in conn.execute(
                    f"SELECT {rows.MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? "
                    "ORDER BY uid",
                    (mailbox_id,),
                )
            ]
        )

    async def get_messages(self, mailbox_id: int, uids: Iterable[int]) -> list[MessageRecord]:
        wanted = list(uids)
        return await self._read(lambda conn: rows.messages_by_uid(conn, mailbox_id, wanted))

    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        return await self._read(
            lambda conn: [
                rows.message(r)
                for r in conn.execute(
                    f"SELECT {rows.MESSAGE_COLUMNS} FROM messages "
                    "WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                    (mailbox_id, modseq),
                )
            ]
        )

    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        return await self._read(
            lambda conn: [
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                    (mailbox_id, modseq),
                )
            ]
        )

    async def get_parsed(self, blob_id: str) -> ParsedMessage:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT parsed FROM blobs WHERE id = ?", (blob_id,)
            ).fetchone()
        )
        if row is None or row[0] is None:
            raise NotFound(f"no parsed message {blob_id}")
        return loads(row[0])

    async def read_blob(self, blob_id: str, start: int = 0, length: int | None = None) -> bytes:
        if start < 0 or (length is not None and length < 0):
            raise ValueError("negative blob range")
        if self._executor is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, self._blobs.read, blob_id, start, length
            )
        except (FileNotFoundError, ValueError) as exc:
            raise NotFound(f"no blob {blob_id}") from exc

    async def set_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        mode: FlagMode,
        flags: Iterable[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageRecord], list[int]]:
        wanted_uids = list(uids)
        wanted = names.canonical_flags(flags)

        def job(tx: Tx) -> tuple[list[MessageRecord], list[int]]:
            row = tx.one("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,))
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            account_id = int(row[0])
            refused: list[int] = []
            updates: list[tuple[MessageRecord, frozenset[str]]] = []
            for record in rows.messages_by_uid(tx.conn, mailbox_id, wanted_uids):
                # RFC 7162 3.1.3: UNCHANGEDSINCE fails for messages changed after it.
                if unchanged_since is not None and record.modseq > unchanged_since:
                    refused.append(record.uid)
                    continue
                new = names.apply_flags(record.flags, mode, wanted)
                if new != record.flags:  # a no-op does not bump MODSEQ
                    updates.append((record, new))
            if not updates:
                return [], refused
            modseq = tx.modseq(account_id)
            tx.conn.executemany(
                "UPDATE messages SET flags = ?, seen = ?, deleted = ?, modseq = ? "
                "WHERE mailbox_id = ? AND uid = ?",
                [
                    (
                        rows.flags_text(new),
                        "\\Seen" in new,
                        "\\Deleted" in new,
                        modseq,
                        mailbox_id,
                        record.uid,
                    )
                    for record, new in updates
                ],
            )
            tx.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id))
            tx.changed(account_id, mailbox_id, modseq)
            changed = [dataclasses.replace(r, flags=new, modseq=modseq) for r, new in updates]
            return changed, refused

        return await self._write(job)

    async def expunge(self, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        wanted = None if uids is None else list(uids)

        def job(tx: Tx) -> list[int]:
            row = tx.one("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,))
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            targets = wanted
            if targets is None:
                targets = [
                    r[0]
                    for r in tx.execute(
                        "SELECT uid FROM messages WHERE mailbox_id = ? AND deleted = 1",
                        (mailbox_id,),
                    )
                ]
            return ops.remove_messages(tx, int(row[0]), mailbox_id, targets)

        return await self._write(job)

    async def copy_messages(
        self, mailbox_id: int, uids: Iterable[int], dest_mailbox_id: int
    ) -> list[tuple[int, int]]:
        wanted = list(uids)
        return await self._write(lambda tx: _copy(tx, mailbox_id, wanted, dest_mailbox_id))

    async def move_messages(
        self, mailbox_id: int, uids: Iterable[int], dest_mailbox_id: int
    ) -> list[tuple[int, int]]:
        wanted = list(uids)
        return await self._write(
            lambda tx: _copy(tx, mailbox_id, wanted, dest_mailbox_id, move=True)
        )

    async def search_text(self, mailbox_id: int, text: str, where: str) -> set[int]:
        columns = SEARCH_WHERE.get(where)
        if columns is None:
            raise ValueError(f"search where must be one of {sorted(SEARCH_WHERE)}")
        if not text:
            return {m.uid for m in await self.list_messages(mailbox_id)}

        def read(conn: sqlite3.Connection) -> set[int]:
            if len(text) >= 3:
                # A trigram phrase query is a case-insensitive substring match; '"' is escaped
                # by doubling inside an FTS5 string.
                query = f'{columns} : "{text.replace(chr(34), chr(34) * 2)}"'
                cur = conn.execute(
                    "SELECT m.uid FROM blob_text t JOIN blobs b ON b.num = t.rowid "
                    "JOIN messages m ON m.blob_id = b.id "
                    "WHERE blob_text MATCH ? AND m.mailbox_id = ?",
                    (query, mailbox_id),
                )
                return {r[0] for r in cur}
            # Shorter than one trigram: the index cannot help, scan this mailbox's texts.
            needle = text.casefold()
            found: set[int] = set()
            for uid, headers, body in conn.execute(
                "SELECT m.uid, t.headers, t.body FROM messages m JOIN blobs b ON b.id = m.blob_id "
                "JOIN blob_text t ON t.rowid = b.num WHERE m.mailbox_id = ?",
                (mailbox_id,),
            ):
                hay = {"text": f"{headers}\n{body}", "body": body, "header": headers}[where]
                if needle in hay.casefold():
                    found.add(uid)
            return found

        return await self._read(read)

    async def quota_usage(self, account_id: int) -> tuple[int, int]:
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT used_bytes, quota_bytes FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
        )
        if row is None:
            raise NotFound(f"no account {account_id}")
        return int(row[0]), int(row[1])

    # ---- outbound queue ------------------------------------------------------------------------
    async def enqueue(
        self,
        sender: str,
        recipients: Sequence[QueuedRecipient],
        raw: bytes,
        *,
        ret: str | None = None,
        envid: str | None = None,
        auth_user: str | None = None,
    ) -> QueueEntry:
        if not recipients:
            raise StoreError("a queue entry needs recipients")
        now = time.time()
        body = await self._store_body(raw, None)

        def job(tx: Tx) -> QueueEntry:
            ops.add_blob_ref(tx, body.blob_id, body.size, 1)
            entry_id = int(
                tx.one(
                    "INSERT INTO queue (sender, recipients, blob_id, created, next_attempt, ret, "
                    "envid, auth_user) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        sender,
                        rows.recipients_json(recipients),
                        body.blob_id,
                        now,
                        now,
                        ret,
                        envid,
                        auth_user,
                    ),
                )[0]
            )
            return QueueEntry(
                id=entry_id,
                sender=sender,
                recipients=tuple(recipients),
                blob_id=body.blob_id,
                created=now,
                next_attempt=now,
                ret=ret,
                envid=envid,
                auth_user=auth_user,
            )

        return await self._write_with_body(body, job)

    async def list_queue(self) -> list[QueueEntry]:
        return await self._read(
            lambda conn: [
                rows.queue_entry(r)
                for r in conn.execute(
                    f"SELECT {rows.QUEUE_COLUMNS} FROM queue ORDER BY next_attempt, id"
                )
            ]
        )

    async def get_queue_entry(self, entry_id: int) -> QueueEntry | None:
        row = await self._read(
            lambda conn: conn.execute(
                f"SELECT {rows.QUEUE_COLUMNS} FROM queue WHERE id = ?", (entry_id,)
            ).fetchone()
        )
        return rows.queue_entry(row) if row else None

    async def update_queue_entry(
        self,
        entry_id: int,
        *,
        recipients: Sequence[QueuedRecipient],
        next_attempt: float,
        attempts: int,
        last_error: str | None,
    ) -> None:
        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE queue SET recipients = ?, next_attempt = ?, attempts = ?, last_error = ? "
                "WHERE id = ?",
                (rows.recipients_json(recipients), next_attempt, attempts, last_error, entry_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no queue entry {entry_id}")

        await self._write(job)

    async def remove_queue_entry(self, entry_id: int) -> None:
        def job(tx: Tx) -> None:
            row = tx.one("DELETE FROM queue WHERE id = ? RETURNING blob_id", (entry_id,))
            if row is None:
                raise NotFound(f"no queue entry {entry_id}")
            ops.drop_blob_refs(tx, Counter({row[0]: 1}))

        await self._write(job)

    # ---- change feed ---------------------------------------------------------------------------
    def changes(self, account_id: int) -> AsyncIterator[MailboxChange]:
        return self._feed.subscribe(account_id)

    # ---- maintenance ---------------------------------------------------------------------------
    async def backup(self, dest: Path) -> None:
        """dest/postar.sqlite3 from SQLite's online backup (one consistent snapshot) plus
        dest/blobs/ with a hard link (or, across file systems, a copy) of every blob that
        snapshot references. Frees of blob files wait until the links are made."""
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
            ids = [r[0] for r in copy.execute("SELECT id FROM blobs")]
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


def _delivery_name(name: str) -> str:
    """A target mailbox name that cannot be stored is not worth bouncing mail: use INBOX."""
    try:
        return names.mailbox_name(name)
    except InvalidName:
        return names.INBOX


def _copy(
    tx: Tx, mailbox_id: int, uids: Sequence[int], dest_mailbox_id: int, *, move: bool = False
) -> list[tuple[int, int]]:
    """COPY / MOVE in one job: new UIDs in source UID order, same email and thread ids, one
    more reference per body; MOVE expunges the originals in the same transaction (RFC 6851)."""
    row = tx.one("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,))
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    src_account = int(row[0])
    dest_account = ops.selectable(tx, dest_mailbox_id)
    wanted = sorted(set(uids))
    found: list[tuple[Any, ...]] = []
    for part in rows.chunks(wanted):
        found.extend(
            tx.execute(
                "SELECT uid, flags, internal_date, size, blob_id, email_id, thread_id, message_id "
                f"FROM messages WHERE mailbox_id = ? AND uid IN ({rows.placeholders(len(part))})",
                (mailbox_id, *part),
            ).fetchall()
        )
    if not found:
        return []
    found.sort(key=lambda r: r[0])
    if not (move and src_account == dest_account):
        ops.check_quota(tx, dest_account, sum(r[3] for r in found))
    references: Counter[str] = Counter(r[4] for r in found)
    for blob_id, count in references.items():
        ops.add_blob_ref(tx, blob_id, 0, count)
    modseq = tx.modseq(dest_account)
    pairs: list[tuple[int, int]] = []
    for uid, flags, internal_date, size, blob_id, email_id, thread_id, message_id in found:
        new_uid = ops.insert_message(
            tx,
            account_id=dest_account,
            mailbox_id=dest_mailbox_id,
            modseq=modseq,
            flags=flags,
            internal_date=internal_date,
            size=size,
            blob_id=blob_id,
            email_id=email_id,
            thread_id=thread_id,
            message_id=message_id,
        )
        pairs.append((uid, new_uid))
    if move:
        ops.remove_messages(tx, src_account, mailbox_id, [uid for uid, _ in pairs])
    return pairs
