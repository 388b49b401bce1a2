"""SQL rows <-> store records, and the read queries shared by readers and the writer."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from postar.store.interface import StoreError
from postar.store.model import (
    Account,
    Alias,
    Domain,
    Mailbox,
    MessageRecord,
    QueuedRecipient,
    QueueEntry,
    ScramSecrets,
    WholeBody,
)

# SQLite's default limit on bound parameters is 32766 since 3.32; stay well below it.
CHUNK = 500

MESSAGE_COLUMNS = (
    "mailbox_id, uid, modseq, flags, internal_date, size, blob_id, email_id, thread_id"
)


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def placeholders(n: int) -> str:
    return ",".join("?" * n)


def flags_text(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


def flags_of(text: str) -> frozenset[str]:
    return frozenset(text.split()) if text else frozenset()


def message(row: Sequence[Any]) -> MessageRecord:
    return MessageRecord(
        mailbox_id=row[0],
        uid=row[1],
        modseq=row[2],
        flags=flags_of(row[3]),
        internal_date=row[4],
        size=row[5],
        blob_id=row[6],
        email_id=row[7],
        thread_id=row[8],
    )


def messages_by_uid(
    conn: sqlite3.Connection, mailbox_id: int, uids: Iterable[int]
) -> list[MessageRecord]:
    """The existing messages among uids, in UID order; absent UIDs are skipped."""
    wanted = sorted(set(uids))
    out: list[MessageRecord] = []
    for part in chunks(wanted):
        rows = conn.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? "
            f"AND uid IN ({placeholders(len(part))})",
            (mailbox_id, *part),
        )
        out.extend(message(r) for r in rows)
    out.sort(key=lambda m: m.uid)
    return out


ACCOUNT_COLUMNS = (
    "id, address, domain, password_hash, scram_salt, scram_iterations, scram_stored_key, "
    "scram_server_key, quota_bytes, disabled"
)


def account(row: Sequence[Any]) -> Account:
    scram = None
    if row[4] is not None:
        scram = ScramSecrets(
            salt=bytes(row[4]),
            iterations=row[5],
            stored_key=bytes(row[6]),
            server_key=bytes(row[7]),
        )
    return Account(
        id=row[0],
        address=row[1],
        domain=row[2],
        password_hash=row[3],
        scram=scram,
        quota_bytes=row[8],
        disabled=bool(row[9]),
    )


def scram_params(scram: ScramSecrets | None) -> tuple[Any, ...]:
    if scram is None:
        return (None, None, None, None)
    return (scram.salt, scram.iterations, scram.stored_key, scram.server_key)


def domain(row: Sequence[Any]) -> Domain:
    return Domain(name=row[0], catch_all=row[1])


def alias(row: Sequence[Any]) -> Alias:
    return Alias(address=row[0], targets=tuple(json.loads(row[1])))


# The mailbox's own columns, then (in each query) its counts: what rows.mailbox() reads.
_MAILBOX_COLUMNS = """mb.id, mb.account_id, mb.name, mb.uidvalidity, mb.uidnext, mb.highestmodseq,
               mb.special_use, mb.noselect,
               EXISTS (SELECT 1 FROM subscriptions s
                       WHERE s.account_id = mb.account_id AND s.name = mb.name)"""


def _mailbox_query(where: str) -> str:
    # Counts come from one grouped scan of the mailboxes' messages (primary key range per
    # mailbox), not one correlated subquery per column.
    return f"""
        SELECT {_MAILBOX_COLUMNS},
               COALESCE(c.n, 0), COALESCE(c.unseen, 0), COALESCE(c.deleted, 0),
               COALESCE(c.size, 0), c.first_unseen
        FROM mailboxes mb
        LEFT JOIN (
            SELECT mailbox_id, COUNT(*) AS n, SUM(seen = 0) AS unseen, SUM(deleted) AS deleted,
                   SUM(size) AS size, MIN(CASE WHEN seen = 0 THEN uid END) AS first_unseen
            FROM messages
            WHERE mailbox_id IN (SELECT id FROM mailboxes mb WHERE {where})
            GROUP BY mailbox_id
        ) c ON c.mailbox_id = mb.id
        WHERE {where}
        ORDER BY mb.name
    """


def _mailbox_row_query(where: str) -> str:
    # The same columns without the counts (zero, first_unseen NULL): one row by its key.
    return f"""
        SELECT {_MAILBOX_COLUMNS}, 0, 0, 0, 0, NULL
        FROM mailboxes mb
        WHERE {where}
    """


MAILBOXES_OF_ACCOUNT = _mailbox_query("mb.account_id = ?")
MAILBOX_BY_ID = _mailbox_query("mb.id = ?")
MAILBOX_BY_NAME = _mailbox_query("mb.account_id = ? AND mb.name = ?")
MAILBOX_ROW_BY_NAME = _mailbox_row_query("mb.account_id = ? AND mb.name = ?")


def mailbox(row: Sequence[Any]) -> Mailbox:
    return Mailbox(
        id=row[0],
        account_id=row[1],
        name=row[2],
        uidvalidity=row[3],
        uidnext=row[4],
        highestmodseq=row[5],
        special_use=row[6],
        noselect=bool(row[7]),
        subscribed=bool(row[8]),
        messages=row[9],
        unseen=row[10],
        deleted=row[11],
        size=row[12],
        first_unseen_uid=row[13],
    )


def fetch_mailboxes(conn: sqlite3.Connection, query: str, *params: Any) -> list[Mailbox]:
    # The WHERE clause appears twice in the query (outer and inner), hence the params twice.
    return [mailbox(r) for r in conn.execute(query, params + params)]


QUEUE_COLUMNS = (
    "id, sender, recipients, blob_id, created, next_attempt, attempts, last_error, ret, envid, "
    "auth_user, extra"
)


def recipients_json(recipients: Iterable[QueuedRecipient]) -> str:
    return json.dumps([[r.address, list(r.notify), r.orcpt] for r in recipients])


def queue_entry(row: Sequence[Any]) -> QueueEntry:
    return QueueEntry(
        id=row[0],
        sender=row[1],
        recipients=tuple(
            QueuedRecipient(address=a, notify=tuple(n), orcpt=o) for a, n, o in json.loads(row[2])
        ),
        blob_id=row[3],
        created=row[4],
        next_attempt=row[5],
        attempts=row[6],
        last_error=row[7],
        ret=row[8],
        envid=row[9],
        auth_user=row[10],
        extra=json.loads(row[11]),
    )


def stored_body(
    conn: sqlite3.Connection, blob_id: str, start: int, length: int | None, size: int | None
) -> bytes | None:
    """Bytes [start, start+length) of a body kept in blob_bodies; None if it is a file (or
    gone). One statement, so no BEGIN/COMMIT: SQLite runs it in a read transaction of its
    own, and the sub-select sees the same snapshot. A whole body (the usual POP3 RETR and
    IMAP BODY[] of a small message) is returned as stored; SQLite's substr() counts bytes in
    a BLOB from 1, and returns NULL for an empty one."""
    if start == 0 and (length is None or (size is not None and length >= size)):
        sql, params = "body", ()
    elif length is None:
        sql, params = "substr(body, ?)", (start + 1,)
    else:
        sql, params = "substr(body, ?, ?)", (start + 1, length)
    row = conn.execute(
        f"SELECT {sql} FROM blob_bodies WHERE num = (SELECT num FROM blobs WHERE id = ?)",
        (*params, blob_id),
    ).fetchone()
    if row is None:
        return None
    value = row[0]
    if value is None:
        return b""
    if not isinstance(value, bytes):  # the table is STRICT: only a damaged file gets here
        raise StoreError(f"the stored body of blob {blob_id} is not a BLOB")
    if length is not None and len(value) > length:  # a size that was not the body's
        return value[:length]
    return value


def stored_bodies(conn: sqlite3.Connection, blob_ids: Sequence[str]) -> dict[str, WholeBody]:
    """The whole bodies of those of blob_ids kept in blob_bodies, by id; one statement per
    CHUNK ids (SQLite's limit on parameters), each its own snapshot."""
    found: dict[str, WholeBody] = {}
    for part in chunks(blob_ids):
        marks = ",".join("?" * len(part))
        for blob_id, body, dot_lines in conn.execute(
            "SELECT b.id, s.body, s.dot_lines FROM blobs b JOIN blob_bodies s ON s.num = b.num "
            f"WHERE b.id IN ({marks})",
            part,
        ):
            if not isinstance(body, bytes):  # STRICT table: only a damaged file gets here
                raise StoreError(f"the stored body of blob {blob_id} is not a BLOB")
            found[blob_id] = WholeBody(body, None if dot_lines is None else bool(dot_lines))
    return found
