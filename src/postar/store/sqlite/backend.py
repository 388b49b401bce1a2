"""The embedded store: SQLite (WAL) metadata plus content-addressed blob files.

base.py holds the machinery and its theory of operation; the operations live in one mixin
per concern (directory, mailboxes, messages, queue), all running their writes as jobs of the
single writer thread.
"""

from __future__ import annotations

from postar.store.sqlite.base import BLOB_DIR, DB_NAME
from postar.store.sqlite.directory import DirectoryOps
from postar.store.sqlite.mailboxes import MailboxOps
from postar.store.sqlite.messages import MessageOps
from postar.store.sqlite.queue import QueueOps

__all__ = ["BLOB_DIR", "DB_NAME", "SQLiteStore"]


class SQLiteStore(DirectoryOps, MailboxOps, MessageOps, QueueOps):
    """The Store for one node: data_dir/postar.sqlite3 and data_dir/blobs/."""
