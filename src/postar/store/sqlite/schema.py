"""The SQLite schema and its migrations.

PRAGMA user_version is the schema version. MIGRATIONS[i] takes a database from version i to
i + 1; open() runs the missing ones in order, each in its own transaction with the version
bump, so a crash mid-migration leaves the previous version intact. A database whose version
is above len(MIGRATIONS) was written by a newer Postar and is refused (SchemaTooNew): an older
binary cannot know what the newer columns mean.
"""

from __future__ import annotations

import logging
import sqlite3

from postar.store.interface import SchemaTooNew

log = logging.getLogger("postar.store")

_V1 = """
-- Small settings: last_uidvalidity (UIDVALIDITY must differ for every re-created name).
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    catch_all TEXT
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    domain TEXT NOT NULL REFERENCES domains(name),
    password_hash TEXT NOT NULL,
    scram_salt BLOB,
    scram_iterations INTEGER,
    scram_stored_key BLOB,
    scram_server_key BLOB,
    quota_bytes INTEGER NOT NULL DEFAULT 0,
    used_bytes INTEGER NOT NULL DEFAULT 0,   -- sum of message sizes over all mailboxes
    modseq INTEGER NOT NULL DEFAULT 1,       -- per-account MODSEQ counter (RFC 7162)
    disabled INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE aliases (
    address TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name),
    targets TEXT NOT NULL                    -- JSON list of addresses
);

CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,                      -- full name, "/" separated; hierarchy by prefix
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL,
    special_use TEXT,
    noselect INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
);

-- By name, not by mailbox: a subscription may outlive its mailbox (RFC 9051 6.3.7).
CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;

-- One row per distinct body; the bytes are in blob_bodies (small bodies, v4) or the file
-- blobs/ab/cd/<id>. refcount counts message rows and queue entries. num is the full-text
-- index's rowid.
CREATE TABLE blobs (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,                 -- sha256 hex of the bytes
    size INTEGER NOT NULL,
    refcount INTEGER NOT NULL,
    parsed BLOB                              -- mime.serialize.dumps(); NULL if only queued
);

CREATE TABLE messages (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),
    uid INTEGER NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL DEFAULT '',          -- canonical flags, space separated
    seen INTEGER NOT NULL DEFAULT 0,         -- \\Seen in flags, for STATUS counts
    deleted INTEGER NOT NULL DEFAULT 0,      -- \\Deleted in flags
    internal_date REAL NOT NULL,
    size INTEGER NOT NULL,
    blob_id TEXT NOT NULL REFERENCES blobs(id),
    email_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    message_id TEXT,                         -- "<...>" from the header, for threading
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
CREATE INDEX messages_blob ON messages(blob_id);
CREATE INDEX messages_msgid ON messages(account_id, message_id) WHERE message_id IS NOT NULL;

-- QRESYNC VANISHED (RFC 7162 3.2.5): which UIDs left a mailbox at which MODSEQ.
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);

CREATE TABLE queue (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,                -- JSON [[address, [notify...], orcpt], ...]
    blob_id TEXT NOT NULL REFERENCES blobs(id),
    created REAL NOT NULL,
    next_attempt REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    ret TEXT,
    envid TEXT,
    auth_user TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX queue_next ON queue(next_attempt);

-- SEARCH TEXT/BODY/HEADER: substring matching, which is what IMAP asks for (RFC 9051 6.4.4),
-- hence the trigram tokenizer. rowid = blobs.num: one entry per distinct body.
CREATE VIRTUAL TABLE blob_text USING fts5(headers, body, tokenize = 'trigram');
"""

_V2 = """
-- RFC 3501 \\Recent: the highest UID some session has already claimed as recent. A SELECT
-- claims the messages above it, so each message is recent to exactly one session. Existing
-- mailboxes start fully claimed: nothing old turns recent because of the upgrade.
ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET recent_uid = uidnext - 1;
"""

_V3 = """
-- The full-text index keeps only which bodies hold each trigram (detail=none), not where:
-- positions made every delivery write about four times the index pages (and cost about half a
-- millisecond of CPU per message in FTS5 alone). A substring query now selects the bodies
-- holding all of its trigrams, and the search checks the stored text of those candidates.
CREATE VIRTUAL TABLE blob_text_v3 USING fts5(headers, body, tokenize = 'trigram', detail = 'none');
INSERT INTO blob_text_v3 (rowid, headers, body) SELECT rowid, headers, body FROM blob_text;
DROP TABLE blob_text;
ALTER TABLE blob_text_v3 RENAME TO blob_text;
"""

_V4 = """
-- Small bodies live in the database, committed in the same transaction (and the same WAL
-- fsync) as the rows that reference them: no file, no directory entry and no second fsync
-- round per message. Larger bodies stay files under blobs/. num = blobs.num.
CREATE TABLE blob_bodies (
    num INTEGER PRIMARY KEY,
    body BLOB NOT NULL
) STRICT;
"""

_V5 = """
-- The searchable text of each body is a plain table; the full-text index over it (external
-- content) is brought up to date in the background (base.py, index_pending), in batches, not
-- inside each delivery's transaction: indexing took about a third of a millisecond of CPU per
-- 4 KB message in commits of ten, and half that in batches of hundreds. blob_unindexed lists
-- the texts not in the index yet; a search checks those directly. Existing texts are
-- re-indexed that way too, so the upgrade itself only copies them.
CREATE TABLE blob_search (
    num INTEGER PRIMARY KEY,
    headers TEXT NOT NULL,
    body TEXT NOT NULL
);
INSERT INTO blob_search (num, headers, body)
    SELECT rowid, COALESCE(headers, ''), COALESCE(body, '') FROM blob_text
    WHERE rowid IN (SELECT num FROM blobs);
CREATE TABLE blob_unindexed (num INTEGER PRIMARY KEY);
INSERT INTO blob_unindexed (num) SELECT num FROM blob_search;
DROP TABLE blob_text;
CREATE VIRTUAL TABLE blob_text USING fts5(
    headers, body, tokenize = 'trigram', detail = 'none',
    content = 'blob_search', content_rowid = 'num'
);
"""

_V6 = """
-- Whether a body stored in the database has a line starting with "." (1) or not (0), as
-- SMTP DATA and POP3 RETR must stuff such lines (mime/dotlines.py): known at delivery, a
-- download skips scanning every byte for them. NULL: stored before v6, so not known.
ALTER TABLE blob_bodies ADD COLUMN dot_lines INTEGER;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6)
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before. The connection
    must be in autocommit mode (isolation_level=None)."""
    found = user_version(conn)
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {found} is newer than this Postar ({SCHEMA_VERSION})"
        )
    for version in range(found, SCHEMA_VERSION):
        if found:  # a new database is made, not migrated: nothing to announce
            # Some steps copy a table (v3 rebuilds the full-text index): say why start waits.
            log.info("store schema migrating", extra={"from": version, "to": version + 1})
        conn.execute("BEGIN IMMEDIATE")
        try:
            # executescript() would COMMIT first; run statement by statement instead so the
            # DDL and the version bump share one transaction.
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return found


def _statements(script: str) -> list[str]:
    """Split a script into statements with sqlite3.complete_statement, so semicolons inside
    comments or strings do not cut a statement short."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out
