"""Write-side building blocks, run by the writer thread inside a job's SAVEPOINT.

Every function here keeps the bookkeeping that must move together in one transaction:
message rows with blob refcounts and the account's used bytes; expunges with the expunge log
and the mailbox's HIGHESTMODSEQ.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from postar.mime.dotlines import has_dot_lines
from postar.store.interface import (
    AlreadyExists,
    MailboxNotSelectable,
    NotFound,
    QuotaExceeded,
    StoreError,
)
from postar.store.names import INBOX, parents
from postar.store.sqlite.rows import chunks, placeholders
from postar.store.sqlite.writer import Tx

_MSGID = re.compile(r"<[^<>\s]+>")
_REFERENCES = re.compile(rb"^references:((?:.*)(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
MAX_REFERENCES = 30  # the newest few identify the thread; a huge header must not cost a scan


def new_email_id() -> str:
    # RFC 8474 objectid: 1-255 of [A-Za-z0-9_-]; random so ids are never reused.
    return "M" + secrets.token_hex(12)


def new_thread_id() -> str:
    return "T" + secrets.token_hex(12)


def message_id_of(header_value: str | None) -> str | None:
    if not header_value:
        return None
    found = _MSGID.search(header_value)
    return found.group(0) if found else None


def referenced_ids(in_reply_to: str | None, header_block: bytes) -> list[str]:
    """Message-IDs this message replies to: In-Reply-To plus References (RFC 5322 3.6.4)."""
    ids = _MSGID.findall(in_reply_to or "")
    found = _REFERENCES.search(header_block)
    if found:
        ids += _MSGID.findall(found.group(1).decode("ascii", "replace"))
    return ids[-MAX_REFERENCES:]


def thread_for(tx: Tx, account_id: int, message_id: str | None, refs: Sequence[str]) -> str:
    """Threading, simply: a message joins the thread of any message of the same account that it
    references, or that carries the same Message-ID; otherwise it starts a thread. A parent that
    arrives after its reply does not merge the two threads (no re-threading)."""
    keys = [*refs, *([message_id] if message_id else [])]
    if keys:
        row = tx.one(
            f"SELECT thread_id FROM messages WHERE account_id = ? "
            f"AND message_id IN ({placeholders(len(keys))}) LIMIT 1",
            (account_id, *keys),
        )
        if row is not None:
            return str(row[0])
    return new_thread_id()


def next_uidvalidity(tx: Tx) -> int:
    """Derived from the clock but strictly increasing across the database, so a name deleted
    and re-created (even within one second) never gets a UIDVALIDITY it had before."""
    row = tx.one("SELECT value FROM meta WHERE key = 'last_uidvalidity'")
    last = int(row[0]) if row else 0
    value = max(int(time.time()), last + 1)
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('last_uidvalidity', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(value),),
    )
    return value


def account_modseq(tx: Tx, account_id: int) -> int:
    row = tx.one("SELECT modseq FROM accounts WHERE id = ?", (account_id,))
    if row is None:
        raise NotFound(f"no account {account_id}")
    return int(row[0])


def insert_mailbox(tx: Tx, account_id: int, name: str, special_use: str | None) -> int:
    """A new selectable mailbox. HIGHESTMODSEQ starts at the account's counter: every later
    change takes a larger value, so it grows strictly for this mailbox too."""
    row = tx.one(
        "INSERT INTO mailboxes (account_id, name, uidvalidity, highestmodseq, special_use) "
        "VALUES (?, ?, ?, ?, ?) RETURNING id",
        (account_id, name, next_uidvalidity(tx), account_modseq(tx, account_id), special_use),
    )
    mailbox_id = int(row[0])
    tx.changed(account_id, mailbox_id, account_modseq(tx, account_id))
    return mailbox_id


def mailbox_row(tx: Tx, account_id: int, name: str) -> tuple[int, bool] | None:
    row = tx.one(
        "SELECT id, noselect FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
    )
    return None if row is None else (int(row[0]), bool(row[1]))


def create_mailbox(tx: Tx, account_id: int, name: str, special_use: str | None) -> int:
    """RFC 9051 6.3.4: missing parents are created too. Creating the name of a \\Noselect
    placeholder makes it a real mailbox again."""
    account_modseq(tx, account_id)  # NotFound for an unknown account
    for parent in parents(name):
        if mailbox_row(tx, account_id, parent) is None:
            insert_mailbox(tx, account_id, parent, None)
    existing = mailbox_row(tx, account_id, name)
    if existing is not None:
        mailbox_id, noselect = existing
        if not noselect:
            raise AlreadyExists(f"mailbox {name!r} exists")
        tx.execute(
            "UPDATE mailboxes SET noselect = 0, special_use = ? WHERE id = ?",
            (special_use, mailbox_id),
        )
        tx.changed(account_id, mailbox_id, account_modseq(tx, account_id))
        return mailbox_id
    return insert_mailbox(tx, account_id, name, special_use)


def selectable(tx: Tx, mailbox_id: int) -> int:
    """The mailbox's account id; NotFound / MailboxNotSelectable otherwise."""
    row = tx.one("SELECT account_id, noselect FROM mailboxes WHERE id = ?", (mailbox_id,))
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    if row[1]:
        raise MailboxNotSelectable(f"mailbox {mailbox_id} is not selectable")
    return int(row[0])


def delivery_mailbox(tx: Tx, account_id: int, name: str) -> int:
    """The target mailbox of a delivery; a missing or \\Noselect one falls back to INBOX."""
    found = mailbox_row(tx, account_id, name)
    if found is not None and not found[1]:
        return found[0]
    inbox = mailbox_row(tx, account_id, INBOX)
    if inbox is None:
        # INBOX cannot be deleted, but an account created by hand or damaged data might lack it.
        return create_mailbox(tx, account_id, INBOX, None)
    return inbox[0]


def check_quota(tx: Tx, account_id: int, extra: int) -> None:
    row = tx.one("SELECT quota_bytes, used_bytes FROM accounts WHERE id = ?", (account_id,))
    if row is None:
        raise NotFound(f"no account {account_id}")
    quota, used = row
    if quota and used + extra > quota:
        raise QuotaExceeded(f"account {account_id}: {used} + {extra} bytes exceeds {quota}")


def add_blob_ref(
    tx: Tx,
    blob_id: str,
    size: int,
    count: int,
    parsed: bytes | None = None,
    search: tuple[str, str] | None = None,
    inline: bytes | None = None,
) -> None:
    """Add count references to a blob, creating its row (and full-text entry) on first use. A
    body first stored by the queue (no parse) gets its parse when a mailbox first holds it.
    inline: the bytes of a small body, stored in blob_bodies with a new row (no file)."""
    row = tx.one("SELECT num, parsed IS NULL FROM blobs WHERE id = ?", (blob_id,))
    if row is None:
        if inline is None and tx.blob_present is not None and not tx.blob_present(blob_id):
            # A guest's body, unlinked by the owner after the guest wrote it (base.py).
            raise StoreError(f"blob {blob_id} vanished before its commit; try again")
        num = tx.one(
            "INSERT INTO blobs (id, size, refcount, parsed) VALUES (?, ?, ?, ?) RETURNING num",
            (blob_id, size, count, parsed),
        )[0]
        if inline is not None:
            tx.execute(
                "INSERT INTO blob_bodies (num, body, dot_lines) VALUES (?, ?, ?)",
                (num, inline, has_dot_lines(inline)),
            )
        needs_index = parsed is not None
    else:
        num = row[0]
        needs_index = bool(row[1]) and parsed is not None
        tx.execute(
            "UPDATE blobs SET refcount = refcount + ?, parsed = COALESCE(parsed, ?) WHERE num = ?",
            (count, parsed, num),
        )
    if needs_index and search is not None:
        # Searchable now (a search checks unindexed texts directly); indexed in the background.
        tx.execute("INSERT INTO blob_search (num, headers, body) VALUES (?, ?, ?)", (num, *search))
        tx.execute("INSERT INTO blob_unindexed (num) VALUES (?)", (num,))


def drop_blob_refs(tx: Tx, counts: Counter[str]) -> None:
    """Remove references; a blob left with none loses its row (and its bytes, if stored in
    the database) now, and its file, if it has one, after COMMIT."""
    for blob_id, count in counts.items():
        row = tx.one(
            "UPDATE blobs SET refcount = refcount - ? WHERE id = ? RETURNING num, refcount",
            (count, blob_id),
        )
        if row is None:
            continue
        num, refcount = row
        if refcount <= 0:
            if tx.execute("DELETE FROM blob_unindexed WHERE num = ?", (num,)).rowcount == 0:
                # In the index, which (external content) is told the text it indexed.
                tx.execute(
                    "INSERT INTO blob_text (blob_text, rowid, headers, body) "
                    "SELECT 'delete', num, headers, body FROM blob_search WHERE num = ?",
                    (num,),
                )
            tx.execute("DELETE FROM blob_search WHERE num = ?", (num,))
            tx.execute("DELETE FROM blobs WHERE num = ?", (num,))
            if tx.execute("DELETE FROM blob_bodies WHERE num = ?", (num,)).rowcount == 0:
                tx.unreferenced.append(blob_id)  # its bytes are a file, unlinked after COMMIT


def insert_message(
    tx: Tx,
    *,
    account_id: int,
    mailbox_id: int,
    modseq: int,
    flags: str,
    internal_date: float,
    size: int,
    blob_id: str,
    email_id: str,
    thread_id: str,
    message_id: str | None,
) -> int:
    """A new message row with the mailbox's next UID; the caller has added the blob ref."""
    uid = int(
        tx.one(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = ? WHERE id = ? "
            "RETURNING uidnext - 1",
            (modseq, mailbox_id),
        )[0]
    )
    words = set(flags.split())
    tx.execute(
        "INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, seen, deleted, "
        "internal_date, size, blob_id, email_id, thread_id, message_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            mailbox_id,
            uid,
            account_id,
            modseq,
            flags,
            "\\Seen" in words,
            "\\Deleted" in words,
            internal_date,
            size,
            blob_id,
            email_id,
            thread_id,
            message_id,
        ),
    )
    tx.execute("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?", (size, account_id))
    tx.changed(account_id, mailbox_id, modseq)
    return uid


def remove_messages(
    tx: Tx, account_id: int, mailbox_id: int, uids: Iterable[int], *, log: bool = True
) -> list[int]:
    """Delete the existing messages among uids, logging them for QRESYNC under a new MODSEQ
    (log=False when the mailbox itself goes away). Returns the UIDs removed, ascending."""
    wanted = sorted(set(uids))
    removed: list[int] = []
    blobs: Counter[str] = Counter()
    size = 0
    for part in chunks(wanted):
        rows = tx.execute(
            f"DELETE FROM messages WHERE mailbox_id = ? AND uid IN ({placeholders(len(part))}) "
            "RETURNING uid, blob_id, size",
            (mailbox_id, *part),
        ).fetchall()
        for uid, blob_id, msg_size in rows:
            removed.append(uid)
            blobs[blob_id] += 1
            size += msg_size
    if not removed:
        return []
    removed.sort()
    tx.execute("UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?", (size, account_id))
    drop_blob_refs(tx, blobs)
    if log:
        modseq = tx.modseq(account_id)
        tx.conn.executemany(
            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
            [(mailbox_id, uid, modseq) for uid in removed],
        )
        tx.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id))
        tx.changed(account_id, mailbox_id, modseq)
    return removed


def drop_mailbox(tx: Tx, account_id: int, mailbox_id: int) -> None:
    """Remove a mailbox with its messages and its expunge log (its UIDVALIDITY dies with it)."""
    uids = [
        r[0] for r in tx.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (mailbox_id,))
    ]
    remove_messages(tx, account_id, mailbox_id, uids, log=False)
    tx.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
    tx.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
    tx.changed(account_id, mailbox_id, account_modseq(tx, account_id))


def copy_messages(
    tx: Tx, mailbox_id: int, uids: Sequence[int], dest_mailbox_id: int, *, move: bool = False
) -> list[tuple[int, int]]:
    """COPY / MOVE in one job: new UIDs in source UID order, same email and thread ids, one
    more reference per body; MOVE expunges the originals in the same transaction (RFC 6851)."""
    row = tx.one("SELECT account_id FROM mailboxes WHERE id = ?", (mailbox_id,))
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    src_account = int(row[0])
    dest_account = selectable(tx, dest_mailbox_id)
    wanted = sorted(set(uids))
    found: list[tuple[Any, ...]] = []
    for part in chunks(wanted):
        found.extend(
            tx.execute(
                "SELECT uid, flags, internal_date, size, blob_id, email_id, thread_id, message_id "
                f"FROM messages WHERE mailbox_id = ? AND uid IN ({placeholders(len(part))})",
                (mailbox_id, *part),
            ).fetchall()
        )
    if not found:
        return []
    found.sort(key=lambda r: r[0])
    if not (move and src_account == dest_account):
        check_quota(tx, dest_account, sum(r[3] for r in found))
    references: Counter[str] = Counter(r[4] for r in found)
    for blob_id, count in references.items():
        add_blob_ref(tx, blob_id, 0, count)
    modseq = tx.modseq(dest_account)
    pairs: list[tuple[int, int]] = []
    for uid, flags, internal_date, size, blob_id, email_id, thread_id, message_id in found:
        new_uid = insert_message(
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
        remove_messages(tx, src_account, mailbox_id, [uid for uid, _ in pairs])
    return pairs


def index_pending(tx: Tx, limit: int) -> int:
    """Add up to limit unindexed texts to the full-text index; returns how many."""
    nums = [r[0] for r in tx.execute("SELECT num FROM blob_unindexed LIMIT ?", (limit,))]
    for part in chunks(nums):
        marks = placeholders(len(part))
        tx.execute(
            "INSERT INTO blob_text (rowid, headers, body) "
            f"SELECT num, headers, body FROM blob_search WHERE num IN ({marks})",
            part,
        )
        tx.execute(f"DELETE FROM blob_unindexed WHERE num IN ({marks})", part)
    return len(nums)
