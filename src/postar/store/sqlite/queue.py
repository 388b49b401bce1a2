"""The outbound queue of the SQLite store: entries referencing blobs like messages do."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence

from postar.store.interface import (
    NotFound,
    StoreError,
)
from postar.store.model import (
    QUEUE_HELD,
    QueuedRecipient,
    QueueEntry,
)
from postar.store.sqlite import ops, rows
from postar.store.sqlite.base import SQLiteBase
from postar.store.sqlite.writer import Tx

OTHER_PROCESS_CHECK = 0.1  # seconds between looks for queue changes made by another process


class QueueOps(SQLiteBase):
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
            ops.add_blob_ref(tx, body.blob_id, body.size, 1, inline=body.inline)
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

        entry = await self._write_with_body(body, job)
        self._queue_changed()
        return entry

    def watch_queue(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._queue_watchers.append(callback)
        if self._queue_poller is None:
            self._queue_poller = asyncio.get_running_loop().create_task(
                self._watch_other_processes(), name="postar-store-queue-watch"
            )
        return functools.partial(self._unwatch_queue, callback)

    def _unwatch_queue(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._queue_watchers.remove(callback)
        if not self._queue_watchers and self._queue_poller is not None:
            self._queue_poller.cancel()
            self._queue_poller = None

    async def _watch_other_processes(self) -> None:
        # `postar queue flush|retry|release` commits from another process, which no callback
        # of ours sees. SQLite's data_version changes on a connection whenever another
        # connection commits: checking it is a few microseconds, so the watchers hear of
        # such a change within OTHER_PROCESS_CHECK (Postfix's postqueue -f pokes qmgr's fifo).
        # Our own writer's commits change it too: a spurious call costs a watcher one look.
        conn = self._connect(readonly=True)
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while True:
                await asyncio.sleep(OTHER_PROCESS_CHECK)
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    self.queue_changed_elsewhere()
        finally:
            conn.close()

    def _queue_changed(self) -> None:
        # On the event loop, after the commit: a watcher reading the queue now sees the entry.
        self.queue_changed_elsewhere()
        for forward in self._queue_forwarders:
            forward()

    def queue_changed_elsewhere(self) -> None:
        for callback in list(self._queue_watchers):
            callback()

    async def list_queue(self) -> list[QueueEntry]:
        return await self._read(
            lambda conn: [
                rows.queue_entry(r)
                for r in conn.execute(
                    f"SELECT {rows.QUEUE_COLUMNS} FROM queue ORDER BY next_attempt, id"
                )
            ]
        )

    async def due_queue_entries(
        self,
        now: float,
        limit: int,
        after: tuple[float, int] | None = None,
        skip_domains: Collection[str] = (),
        skip_ids: Collection[int] = (),
    ) -> list[QueueEntry]:
        # Served by the queue_next index (next_attempt, then the rowid id); LIMIT keeps a huge
        # backlog out of memory, and the row-value cursor pages through it without OFFSET.
        where = "next_attempt <= ?"
        args: list[object] = [now]
        if after is not None:
            where += " AND (next_attempt, id) > (?, ?)"
            args += [after[0], after[1]]
        if skip_domains:
            # recipients is [[address, notify, orcpt], ...] (rows.recipients_json); the domain
            # is what follows the first "@" (a quoted local part with "@" is merely not
            # skipped). Done in SQLite's C code: a 10,000-entry backlog is a few milliseconds.
            marks = ",".join("?" * len(skip_domains))
            domain = "lower(substr({a}, instr({a}, '@') + 1))"
            first = domain.format(a="json_extract(recipients, '$[0][0]')")
            last = domain.format(a="json_extract(recipients, '$[#-1][0]')")
            where += f" AND NOT ({first} IN ({marks}) AND {last} IN ({marks}))"
            args += [*skip_domains, *skip_domains]
        if skip_ids:
            # Entries in flight: due, and first in the order, but not to be started again;
            # leaving them out here spares building them into records for every look.
            where += f" AND id NOT IN ({','.join('?' * len(skip_ids))})"
            args += list(skip_ids)
        return await self._read(
            lambda conn: [
                rows.queue_entry(r)
                for r in conn.execute(
                    f"SELECT {rows.QUEUE_COLUMNS} FROM queue WHERE {where} "
                    "ORDER BY next_attempt, id LIMIT ?",
                    (*args, limit),
                )
            ]
        )

    async def next_queue_attempt(self) -> float | None:
        row = await self._read(
            lambda conn: conn.execute("SELECT MIN(next_attempt) FROM queue").fetchone()
        )
        return float(row[0]) if row and row[0] is not None else None

    async def reschedule_queue(self, next_attempt: float, entry_id: int | None = None) -> int:
        def job(tx: Tx) -> int:
            if entry_id is None:
                # A flush leaves held entries held (postqueue -f does not empty the hold queue).
                cur = tx.execute(
                    "UPDATE queue SET next_attempt = ? WHERE next_attempt != ?",
                    (next_attempt, QUEUE_HELD),
                )
            else:
                cur = tx.execute(
                    "UPDATE queue SET next_attempt = ? WHERE id = ?", (next_attempt, entry_id)
                )
                if cur.rowcount == 0:
                    raise NotFound(f"no queue entry {entry_id}")
            return int(cur.rowcount)

        changed = await self._write(job)
        self._queue_changed()
        return changed

    async def hold_queue(self, entry_id: int | None = None) -> int:
        def job(tx: Tx) -> int:
            if entry_id is None:
                cur = tx.execute(
                    "UPDATE queue SET next_attempt = ? WHERE next_attempt != ?",
                    (QUEUE_HELD, QUEUE_HELD),
                )
                return int(cur.rowcount)
            cur = tx.execute(
                "UPDATE queue SET next_attempt = ? WHERE id = ?", (QUEUE_HELD, entry_id)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no queue entry {entry_id}")
            return int(cur.rowcount)

        return await self._write(job)

    async def release_queue(self, next_attempt: float, entry_id: int | None = None) -> int:
        def job(tx: Tx) -> int:
            where, args = "next_attempt = ?", [QUEUE_HELD]
            if entry_id is not None:
                if tx.one("SELECT 1 FROM queue WHERE id = ?", (entry_id,)) is None:
                    raise NotFound(f"no queue entry {entry_id}")
                where, args = where + " AND id = ?", [*args, entry_id]
            cur = tx.execute(
                f"UPDATE queue SET next_attempt = ? WHERE {where}", (next_attempt, *args)
            )
            return int(cur.rowcount)

        changed = await self._write(job)
        self._queue_changed()
        return changed

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
        extra: Mapping[str, str] | None = None,
    ) -> None:
        def job(tx: Tx) -> None:
            # A hold placed while the entry was being tried outlives that attempt's result.
            values = [rows.recipients_json(recipients), QUEUE_HELD, next_attempt, attempts]
            values.append(last_error)
            sets = (
                "recipients = ?, next_attempt = CASE WHEN next_attempt = ? THEN next_attempt "
                "ELSE ? END, attempts = ?, last_error = ?"
            )
            if extra is not None:
                sets += ", extra = ?"
                values.append(json.dumps(dict(extra), sort_keys=True))
            cur = tx.execute(f"UPDATE queue SET {sets} WHERE id = ?", (*values, entry_id))
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
