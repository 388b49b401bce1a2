"""Mailboxes of the SQLite store: hierarchy by name prefix, subscriptions by name."""

from __future__ import annotations

import sqlite3

from postar.store import names
from postar.store.interface import (
    AlreadyExists,
    InvalidName,
    MailboxNotSelectable,
    NotFound,
    StoreError,
)
from postar.store.model import (
    Mailbox,
)
from postar.store.sqlite import ops, rows
from postar.store.sqlite.base import SQLiteBase
from postar.store.sqlite.writer import Tx


class MailboxOps(SQLiteBase):
    # ---- mailboxes -----------------------------------------------------------------------------
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        return await self._read(
            lambda conn: rows.fetch_mailboxes(conn, rows.MAILBOXES_OF_ACCOUNT, account_id)
        )

    async def get_mailbox(
        self, account_id: int, name: str, *, counts: bool = True
    ) -> Mailbox | None:
        try:
            canonical = names.mailbox_name(name)
        except InvalidName:
            return None
        if not counts:
            # One row by its unique key: on the loop's thread (see _read_point).
            row = self._read_point(
                lambda conn: conn.execute(
                    rows.MAILBOX_ROW_BY_NAME, (account_id, canonical)
                ).fetchone()
            )
            return rows.mailbox(row) if row is not None else None

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
                ops.copy_messages(tx, found[0], uids, dest_id, move=True)
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

    async def claim_recent(self, mailbox_id: int, highest_uid: int) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT recent_uid FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            return int(row[0])

        mark = self._read_point(read)  # one row by primary key
        if highest_uid <= mark:
            return mark  # nothing to claim: no write transaction

        def job(tx: Tx) -> int:
            # Read again inside the writer: another session may have claimed meanwhile.
            row = tx.one("SELECT recent_uid FROM mailboxes WHERE id = ?", (mailbox_id,))
            if row is None:
                raise NotFound(f"no mailbox {mailbox_id}")
            old = int(row[0])
            if highest_uid > old:
                tx.execute(
                    "UPDATE mailboxes SET recent_uid = ? WHERE id = ?", (highest_uid, mailbox_id)
                )
            return old

        return await self._write(job)

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
