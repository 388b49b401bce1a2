"""Messages of the SQLite store: delivery, APPEND, flags, expunge, COPY/MOVE, search."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence

from postar.mime.serialize import loads
from postar.mime.structure import ParsedMessage
from postar.store import names
from postar.store.interface import (
    InvalidName,
    NotFound,
    QuotaExceeded,
    StoreError,
)
from postar.store.model import (
    Delivered,
    DeliveryTarget,
    FlagMode,
    MailboxDelta,
    MessageRecord,
    WholeBody,
)
from postar.store.sqlite import ops, rows
from postar.store.sqlite.base import SQLiteBase
from postar.store.sqlite.writer import Tx

# File reads up to this size run on the event loop thread (see read_blob).
LOOP_FILE_READ = 256 * 1024
# Reads of at most this many message rows run on the event loop's thread: a few hundred
# indexed rows cost less there than the hop to a reader thread and back (~60 us of CPU).
INLINE_ROWS = 256
_LIKE_CHECK = {
    "text": " AND (t.body LIKE ? ESCAPE '\\' OR t.headers LIKE ? ESCAPE '\\')",
    "body": " AND t.body LIKE ? ESCAPE '\\'",
    "header": " AND t.headers LIKE ? ESCAPE '\\'",
}
SEARCH_WHERE = tuple(_LIKE_CHECK)
MAX_QUERY_TRIGRAMS = 32  # more narrow the candidates little; the texts are checked anyway


def trigram_query(text: str) -> str | None:
    """An FTS5 query for bodies holding every trigram of `text` (None: shorter than one).

    Each trigram is a quoted string of three characters, one token of the trigram tokenizer
    (which folds case as the index did); a long text uses trigrams spread over its length.
    """
    grams = list(dict.fromkeys(text[i : i + 3] for i in range(len(text) - 2)))
    if not grams:
        return None
    if len(grams) > MAX_QUERY_TRIGRAMS:
        step = len(grams) / MAX_QUERY_TRIGRAMS
        grams = [grams[int(i * step)] for i in range(MAX_QUERY_TRIGRAMS)]
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in grams)


def text_matches(needle: str, where: str, headers: str, body: str) -> bool:
    """IMAP's case-insensitive substring match (RFC 9051 6.4.4) of a lower-cased needle.

    lower(), not casefold(): the trigram tokenizer folds one character to one character, so
    casefold's "ß" -> "ss" would match texts the index never offers as candidates, and a
    message would be found before the background indexer reached it and not after."""
    if where != "header" and needle in body.lower():
        return True
    return where != "body" and needle in headers.lower()


class _TooMany(Exception):
    """A delta larger than INLINE_ROWS: read it again off the loop."""


class MessageOps(SQLiteBase):
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
            ops.add_blob_ref(
                tx,
                body.blob_id,
                body.size,
                len(accepted),
                body.parsed,
                body.search,
                inline=body.inline,
            )
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
            ops.add_blob_ref(
                tx, body.blob_id, body.size, 1, body.parsed, body.search, inline=body.inline
            )
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
        if len(wanted) <= INLINE_ROWS:
            # Primary-key lookups, bounded in number (FETCH asks in batches of this size).
            return self._read_point(lambda conn: rows.messages_by_uid(conn, mailbox_id, wanted))
        return await self._read(lambda conn: rows.messages_by_uid(conn, mailbox_id, wanted))

    async def mailbox_delta(self, mailbox_id: int, modseq: int) -> MailboxDelta | None:
        def read(conn: sqlite3.Connection, limit: int) -> MailboxDelta | None:
            row = conn.execute(
                "SELECT uidnext, highestmodseq, noselect FROM mailboxes WHERE id = ?",
                (mailbox_id,),
            ).fetchone()
            if row is None:
                return None
            changed = tuple(
                rows.message(r)
                for r in conn.execute(
                    f"SELECT {rows.MESSAGE_COLUMNS} FROM messages "
                    "WHERE mailbox_id = ? AND modseq > ? ORDER BY uid LIMIT ?",
                    (mailbox_id, modseq, limit),
                )
            )
            expunged = tuple(
                r[0]
                for r in conn.execute(
                    "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? "
                    "ORDER BY uid LIMIT ?",
                    (mailbox_id, modseq, limit),
                )
            )
            if limit > 0 and (len(changed) >= limit or len(expunged) >= limit):
                raise _TooMany
            return MailboxDelta(int(row[0]), int(row[1]), bool(row[2]), changed, expunged)

        # The usual delta (a few flag changes, an APPEND, an EXPUNGE since the session last
        # looked) is read on the loop's thread through the MODSEQ indexes; a big one (STORE
        # 1:* on a large mailbox) goes to a reader thread rather than stall the loop.
        try:
            return self._read_point(lambda conn: read(conn, INLINE_ROWS + 1))
        except _TooMany:
            return await self._read(lambda conn: read(conn, -1))

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
        row = self._read_point(
            lambda conn: conn.execute(
                "SELECT parsed FROM blobs WHERE id = ?", (blob_id,)
            ).fetchone()
        )
        if row is None or row[0] is None:
            raise NotFound(f"no parsed message {blob_id}")
        return loads(row[0])

    async def read_blob(
        self, blob_id: str, start: int = 0, length: int | None = None, *, size: int | None = None
    ) -> bytes:
        if start < 0 or (length is not None and length < 0):
            raise ValueError("negative blob range")
        if self._executor is None:
            raise StoreError("store is not open")
        # A body of at most inline_body_max bytes is a row of blob_bodies, read on the loop's
        # thread like the other point lookups. A larger one is a file, unless it was stored
        # under a higher setting, so a caller that knows the size (a MessageRecord's) mostly
        # saves the lookup. One that does not, or a body stored before v4 or under a lower
        # setting, finds no row and reads the file.
        maybe_row = size is None or size <= self.inline_body_max
        if maybe_row:
            stored = self._stored_body(blob_id, start, length, size)
            if stored is not None:
                return stored
        try:
            if length is not None and length <= LOOP_FILE_READ:
                # A bounded read (POP3 and IMAP ask in 64 KiB pieces) is a pread from the page
                # cache, cheaper on the loop's thread than a hop to the pool and back.
                return self._blobs.read(blob_id, start, length)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, self._blobs.read, blob_id, start, length
            )
        except (FileNotFoundError, ValueError) as exc:
            stored = None if maybe_row else self._stored_body(blob_id, start, length, size)
            if stored is None:
                raise NotFound(f"no blob {blob_id}") from exc
            return stored

    def _stored_body(
        self, blob_id: str, start: int, length: int | None, size: int | None
    ) -> bytes | None:
        return self._read_statement(
            lambda conn: rows.stored_body(conn, blob_id, start, length, size), f"blob {blob_id}"
        )

    async def read_whole_blobs(self, blob_ids: Sequence[str]) -> dict[str, WholeBody]:
        # The bodies stored in the database, in one statement on the loop's thread: a few
        # microseconds a body, against several for a statement each. Files are left out.
        if self._executor is None:
            raise StoreError("store is not open")
        wanted = list(dict.fromkeys(blob_ids))
        if not wanted:
            return {}
        return self._read_statement(
            lambda conn: rows.stored_bodies(conn, wanted), f"{len(wanted)} blobs"
        )

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
        return await self._write(
            lambda tx: ops.copy_messages(tx, mailbox_id, wanted, dest_mailbox_id)
        )

    async def move_messages(
        self, mailbox_id: int, uids: Iterable[int], dest_mailbox_id: int
    ) -> list[tuple[int, int]]:
        wanted = list(uids)
        return await self._write(
            lambda tx: ops.copy_messages(tx, mailbox_id, wanted, dest_mailbox_id, move=True)
        )

    async def search_text(self, mailbox_id: int, text: str, where: str) -> set[int]:
        if where not in SEARCH_WHERE:
            raise ValueError(f"search where must be one of {sorted(SEARCH_WHERE)}")
        if not text:
            return {m.uid for m in await self.list_messages(mailbox_id)}
        needle = text.lower()

        # An ASCII needle is checked by SQLite's LIKE (ASCII case-insensitive, which is what
        # RFC 9051 6.4.4 asks), in C and without the GIL: a needle made of common trigrams
        # makes nearly every message a candidate. Others are lower-cased here in Python.
        check = _LIKE_CHECK[where] if needle.isascii() else ""
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
        like = (pattern,) * check.count("?")
        # Checked in SQL, only the UIDs come back; otherwise the texts, for Python to check.
        columns = "m.uid" if check else "m.uid, t.headers, t.body"

        def read(conn: sqlite3.Connection) -> set[int]:
            query = trigram_query(text)
            if query is not None:
                # The index (detail=none) knows which bodies hold every trigram of the text,
                # not whether they stand together: the candidates' texts are checked below.
                # MATERIALIZED makes SQLite run the MATCH once and join its hits to the
                # mailbox; left to itself it walked the mailbox and evaluated MATCH per row
                # (2.7 s for 20,000 messages, against under 1 ms this way).
                # Texts the background indexer has not reached yet are all candidates.
                rows = conn.execute(
                    "WITH hits AS MATERIALIZED "
                    "(SELECT rowid AS num FROM blob_text WHERE blob_text MATCH ? "
                    "UNION ALL SELECT num FROM blob_unindexed) "
                    f"SELECT {columns} FROM hits JOIN blobs b ON b.num = hits.num "
                    "JOIN messages m ON m.blob_id = b.id "
                    "JOIN blob_search t ON t.num = hits.num WHERE m.mailbox_id = ?" + check,
                    (query, mailbox_id, *like),
                )
            else:
                # Shorter than one trigram: the index cannot help, scan this mailbox's texts.
                rows = conn.execute(
                    f"SELECT {columns} FROM messages m "
                    "JOIN blobs b ON b.id = m.blob_id "
                    "JOIN blob_search t ON t.num = b.num WHERE m.mailbox_id = ?" + check,
                    (mailbox_id, *like),
                )
            if check:
                return {uid for (uid,) in rows}
            found: set[int] = set()
            for uid, headers, body in rows:
                if uid not in found and text_matches(needle, where, headers, body):
                    found.add(uid)
            return found

        return await self._read(read)

    async def quota_usage(self, account_id: int) -> tuple[int, int]:
        row = self._read_point(
            lambda conn: conn.execute(
                "SELECT used_bytes, quota_bytes FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
        )
        if row is None:
            raise NotFound(f"no account {account_id}")
        return int(row[0]), int(row[1])


def _delivery_name(name: str) -> str:
    """A target mailbox name that cannot be stored is not worth bouncing mail: use INBOX."""
    try:
        return names.mailbox_name(name)
    except InvalidName:
        return names.INBOX
