"""Backends under test, and messages built by hand (no dependency on the MIME parser).

A backend joins the suite by adding its name to BACKENDS and a branch to make_store.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from postar.mime.structure import Address, BodyPart, Envelope, ParsedMessage
from postar.store.interface import Store
from postar.store.model import Account
from postar.store.sqlite.backend import SQLiteStore
from postar.store.sqlite.base import INLINE_BODY_MAX

# "sqlite-files": the same backend with every body kept as a file (inline_body_max = 0), so
# the contract holds for both places a body can live.
BACKENDS = ["sqlite", "sqlite-files"]

StoreFactory = Callable[..., Store]


def make_store(
    backend: str,
    location: Path,
    *,
    fsync: bool = False,
    group_commit_window: float = 0.002,
    default_quota: int = 0,
    beside_owner: bool = False,
    inline_body_max: int | None = None,
) -> Store:
    # fsync off by default: a process crash is survived without it, and the suite stays fast;
    # the durability tests turn it on.
    if backend in ("sqlite", "sqlite-files"):
        return SQLiteStore(
            location,
            fsync=fsync,
            group_commit_window=group_commit_window,
            default_quota=default_quota,
            beside_owner=beside_owner,
            inline_body_max=(
                (0 if backend == "sqlite-files" else INLINE_BODY_MAX)
                if inline_body_max is None
                else inline_body_max
            ),
        )
    raise ValueError(backend)


_counter = itertools.count(1)


def make_message(
    subject: str = "Hello",
    body: str = "Just a test.",
    *,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    pad_to: int = 0,
) -> tuple[bytes, ParsedMessage]:
    """A single-part text/plain message, CRLF, with its parse filled in as the parser would."""
    n = next(_counter)
    message_id = message_id or f"<m{n}.{id(_counter)}@example.org>"
    headers = [
        "From: Bob <bob@example.net>",
        "To: alice@example.org",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        "Date: Fri, 27 Nov 2026 10:00:00 +0000",
    ]
    if in_reply_to:
        headers.append(f"In-Reply-To: {in_reply_to}")
    if references:
        headers.append(f"References: {references}")
    head = ("\r\n".join(headers) + "\r\n\r\n").encode()
    text = body
    if pad_to:
        filler = pad_to - len(head) - len(text.encode()) - 2
        if filler > 0:
            text += "\r\n" + "x" * filler
    raw = head + text.encode()
    envelope = Envelope(
        date="Fri, 27 Nov 2026 10:00:00 +0000",
        subject=subject,
        from_=(Address("Bob", None, "bob", "example.net"),),
        to=(Address(None, None, "alice", "example.org"),),
        in_reply_to=in_reply_to,
        message_id=message_id,
    )
    root = BodyPart(
        start=0,
        body_start=len(head),
        end=len(raw),
        params=(("charset", "us-ascii"),),
        lines=text.count("\n") + 1,
    )
    parsed = ParsedMessage(
        size=len(raw),
        envelope=envelope,
        root=root,
        search_headers="\n".join(headers),
        search_body=body,
    )
    return raw, parsed


def downgrade_to_v3(db_path: Path) -> None:
    """Turn a closed store's database into what schema v3 looked like: every body a file
    (no blob_bodies) and the texts inside the full-text index itself (no blob_search)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        for statement in (
            "DROP TABLE blob_bodies",
            "CREATE VIRTUAL TABLE old_text USING fts5(headers, body, tokenize = 'trigram', "
            "detail = 'none')",
            "INSERT INTO old_text (rowid, headers, body) SELECT num, headers, body "
            "FROM blob_search",
            "DROP TABLE blob_text",
            "DROP TABLE blob_search",
            "DROP TABLE blob_unindexed",
            "ALTER TABLE old_text RENAME TO blob_text",
            "PRAGMA user_version = 3",
        ):
            conn.execute(statement)
    finally:
        conn.close()


async def account_named(store: Store, name: str = "alice") -> Account:
    """An account name@example.org, its domain made on first use."""
    if await store.get_domain("example.org") is None:
        await store.add_domain("example.org")
    return await store.add_account(f"{name}@example.org", "x", None)


@contextlib.asynccontextmanager
async def opened(store: SQLiteStore) -> AsyncIterator[SQLiteStore]:
    """The store, open for the block and closed after it (fixtures: `async with ... yield`)."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()
