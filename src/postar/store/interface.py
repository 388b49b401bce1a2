"""The one interface every store backend implements; protocol code sees only this.

Invariants every backend keeps:
- Durable before acknowledged: when deliver(), append() or enqueue() returns, the message body
  and its metadata are on stable storage (fsync), so the caller may answer 250 / OK.
- Deliveries that arrive together share one commit (group commit).
- UIDs in a mailbox only grow; UIDVALIDITY changes only if UIDs could be reused.
- Every change to a mailbox takes a new MODSEQ from a per-account counter, and expunges are
  logged with their MODSEQ (for QRESYNC VANISHED).
- Bodies are content-addressed (sha256) and reference-counted: one copy on disk whatever the
  number of recipients, COPYs or mailboxes.
- Changes are published (changes()) only after they are committed.
- Errors the caller can answer with are StoreError subclasses; anything else is a bug.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path

from postar.mime.structure import ParsedMessage
from postar.store.model import (
    Account,
    Alias,
    Delivered,
    DeliveryTarget,
    Domain,
    FlagMode,
    Mailbox,
    MailboxChange,
    MailboxDelta,
    MessageRecord,
    QueuedRecipient,
    QueueEntry,
    ScramSecrets,
    WholeBody,
)


class StoreError(Exception):
    """A request the store refuses; protocol code turns it into NO / 4xx / 5xx."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class QuotaExceeded(StoreError):
    pass


class ModifiedSince(StoreError):
    """CONDSTORE UNCHANGEDSINCE failed for some messages."""


class SchemaTooNew(StoreError):
    """The data was written by a newer Postar; refusing to downgrade it."""


class InvalidName(StoreError):
    """A mailbox name, flag or address the store cannot hold (empty component, space in a flag)."""


class MailboxNotSelectable(StoreError):
    """The mailbox is a \\Noselect placeholder kept for its children (RFC 9051 6.3.4)."""


class Store(abc.ABC):
    # ---- life cycle -------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema (refusing a downgrade) and start background workers."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish in-flight commits and release files."""

    # ---- domains, accounts, aliases -----------------------------------------------------
    @abc.abstractmethod
    async def add_domain(self, name: str, catch_all: str | None = None) -> Domain: ...

    @abc.abstractmethod
    async def get_domain(self, name: str) -> Domain | None: ...

    @abc.abstractmethod
    async def set_catch_all(self, name: str, catch_all: str | None) -> None: ...

    @abc.abstractmethod
    async def list_domains(self) -> list[Domain]: ...

    @abc.abstractmethod
    async def remove_domain(self, name: str) -> None:
        """Refuses (StoreError) while accounts or aliases still use the domain."""

    @abc.abstractmethod
    async def add_account(
        self,
        address: str,
        password_hash: str,
        scram: ScramSecrets | None,
        quota_bytes: int = 0,
    ) -> Account:
        """Create the account and its default folders (model.DEFAULT_FOLDERS), subscribed."""

    @abc.abstractmethod
    async def get_account(self, address: str) -> Account | None: ...

    @abc.abstractmethod
    async def get_account_by_id(self, account_id: int) -> Account | None: ...

    @abc.abstractmethod
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...

    @abc.abstractmethod
    async def set_password(
        self, address: str, password_hash: str, scram: ScramSecrets | None
    ) -> None: ...

    @abc.abstractmethod
    async def set_quota(self, address: str, quota_bytes: int) -> None: ...

    @abc.abstractmethod
    async def remove_account(self, address: str) -> None:
        """Delete the account, its mailboxes and messages (blobs unreferenced are freed)."""

    @abc.abstractmethod
    async def add_alias(self, address: str, targets: Sequence[str]) -> Alias: ...

    @abc.abstractmethod
    async def get_alias(self, address: str) -> Alias | None: ...

    @abc.abstractmethod
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    @abc.abstractmethod
    async def remove_alias(self, address: str) -> None: ...

    # ---- mailboxes ------------------------------------------------------------------------
    @abc.abstractmethod
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        """All mailboxes of the account with fresh counts, sorted by name."""

    @abc.abstractmethod
    async def get_mailbox(
        self, account_id: int, name: str, *, counts: bool = True
    ) -> Mailbox | None:
        """By full name; "INBOX" matches case-insensitively (RFC 9051 5.1). counts=False
        leaves messages, unseen, deleted and size at 0 and first_unseen_uid None, and costs
        one row instead of a pass over the mailbox's messages (APPEND, SELECT, COPY)."""

    @abc.abstractmethod
    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None: ...

    @abc.abstractmethod
    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> Mailbox:
        """Creates missing parents too (RFC 9051 6.3.4). AlreadyExists if it exists."""

    @abc.abstractmethod
    async def delete_mailbox(self, account_id: int, name: str) -> None:
        """Deletes the mailbox and its messages; children stay. INBOX cannot be deleted."""

    @abc.abstractmethod
    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        """Renames with children. Renaming INBOX moves its messages to the new mailbox
        and leaves an empty INBOX (RFC 9051 6.3.6)."""

    @abc.abstractmethod
    async def claim_recent(self, mailbox_id: int, highest_uid: int) -> int:
        """RFC 3501 \\Recent: returns the highest UID already claimed by an earlier session
        (messages above it are recent to the caller) and raises the mark to highest_uid,
        atomically, so two sessions never both get a message as recent. highest_uid 0 only
        reads the mark (EXAMINE, STATUS). NotFound for an unknown mailbox."""

    @abc.abstractmethod
    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        """Subscriptions are names: a subscription may outlive its mailbox (RFC 9051 6.3.7)."""

    @abc.abstractmethod
    async def list_subscriptions(self, account_id: int) -> list[str]: ...

    # ---- messages ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def deliver(
        self,
        raw: bytes,
        parsed: ParsedMessage,
        targets: Sequence[DeliveryTarget],
        internal_date: float | None = None,
    ) -> list[Delivered]:
        """Store one message for many local recipients: one blob, one row per recipient,
        durable on return. A recipient over quota raises QuotaExceeded for the whole call
        only if every target is over quota; otherwise over-quota targets are skipped and
        left out of the result (the caller answers per recipient)."""

    @abc.abstractmethod
    async def append(
        self,
        account_id: int,
        mailbox_id: int,
        raw: bytes,
        parsed: ParsedMessage,
        flags: Iterable[str] = (),
        internal_date: float | None = None,
    ) -> MessageRecord:
        """IMAP APPEND: durable on return. QuotaExceeded when it does not fit."""

    @abc.abstractmethod
    async def list_messages(self, mailbox_id: int) -> list[MessageRecord]:
        """Every message of the mailbox in UID order (the IMAP/POP3 session's snapshot)."""

    @abc.abstractmethod
    async def get_messages(self, mailbox_id: int, uids: Iterable[int]) -> list[MessageRecord]: ...

    @abc.abstractmethod
    async def changed_since(self, mailbox_id: int, modseq: int) -> list[MessageRecord]:
        """Messages whose MODSEQ is greater than modseq (CONDSTORE/QRESYNC)."""

    @abc.abstractmethod
    async def expunged_since(self, mailbox_id: int, modseq: int) -> list[int]:
        """UIDs expunged after modseq (QRESYNC VANISHED)."""

    @abc.abstractmethod
    async def mailbox_delta(self, mailbox_id: int, modseq: int) -> MailboxDelta | None:
        """changed_since and expunged_since plus the mailbox's UIDNEXT, HIGHESTMODSEQ and
        noselect, from one snapshot (an IMAP session's refresh); None if the mailbox is gone.
        Costs what changed, not the mailbox's size."""

    @abc.abstractmethod
    async def get_parsed(self, blob_id: str) -> ParsedMessage:
        """The stored parse of a message body (never re-parses)."""

    @abc.abstractmethod
    async def read_blob(
        self, blob_id: str, start: int = 0, length: int | None = None, *, size: int | None = None
    ) -> bytes:
        """A byte range of a stored body; only those bytes are read from disk. size: the
        body's whole size, where the caller knows it (MessageRecord.size), so that a backend
        can tell where the body lives without asking. It must be the size of the body."""

    async def read_whole_blobs(self, blob_ids: Sequence[str]) -> dict[str, WholeBody]:
        """The whole bodies of several small blobs, for a reader going through many messages
        in order (a POP3 download reads ahead with it). A backend returns those it can read
        together more cheaply than one by one, and may leave any out; the caller reads those
        with read_blob(). The caller bounds the sizes: every body asked for is read whole.
        Each comes with whether a line of it starts with "." (None if not known)."""
        return {}

    @abc.abstractmethod
    async def set_flags(
        self,
        mailbox_id: int,
        uids: Iterable[int],
        mode: FlagMode,
        flags: Iterable[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageRecord], list[int]]:
        """Change flags. Returns (records whose flags changed, with their new MODSEQ;
        UIDs refused because their MODSEQ exceeded unchanged_since)."""

    @abc.abstractmethod
    async def expunge(self, mailbox_id: int, uids: Iterable[int] | None = None) -> list[int]:
        """Remove messages: the given UIDs, or (None) every message flagged \\Deleted.
        Returns the UIDs removed, in ascending order; logs them for QRESYNC."""

    @abc.abstractmethod
    async def copy_messages(
        self, mailbox_id: int, uids: Iterable[int], dest_mailbox_id: int
    ) -> list[tuple[int, int]]:
        """COPY: returns (source UID, new UID) pairs in source UID order (UIDPLUS)."""

    @abc.abstractmethod
    async def move_messages(
        self, mailbox_id: int, uids: Iterable[int], dest_mailbox_id: int
    ) -> list[tuple[int, int]]:
        """MOVE (RFC 6851): copy then expunge atomically."""

    @abc.abstractmethod
    async def search_text(self, mailbox_id: int, text: str, where: str) -> set[int]:
        """UIDs of the mailbox's messages whose decoded text contains text, case-insensitively
        (IMAP SEARCH TEXT / BODY / HEADER without a field name). where is "text" (headers and
        body), "body" or "header"; the index holds ParsedMessage.search_headers/search_body."""

    @abc.abstractmethod
    async def quota_usage(self, account_id: int) -> tuple[int, int]:
        """(bytes used, limit in bytes; 0 = unlimited)."""

    # ---- outbound queue -------------------------------------------------------------------
    @abc.abstractmethod
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
        """Durable on return, like deliver()."""

    @abc.abstractmethod
    def watch_queue(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on the event loop after every commit in this process that adds
        queue entries or makes them due sooner (enqueue, reschedule_queue), so the outbound
        worker starts at once instead of at its next poll (Postfix's qmgr is told by
        cleanup), and within a fraction of a second of a commit by another process (`postar
        queue flush|retry|release` beside a running server), at worst with a spurious call.
        Returns the function that stops the calls."""

    def queue_changed_elsewhere(self) -> None:
        """Another process of this server committed queue entries: call the watchers."""
        raise NotImplementedError

    @abc.abstractmethod
    async def list_queue(self) -> list[QueueEntry]: ...

    @abc.abstractmethod
    async def due_queue_entries(
        self,
        now: float,
        limit: int,
        after: tuple[float, int] | None = None,
        skip_domains: Collection[str] = (),
        skip_ids: Collection[int] = (),
    ) -> list[QueueEntry]:
        """At most `limit` entries whose next_attempt is at or before `now`, earliest first
        (the outbound worker's batch; bounded so a huge queue never sits in memory).
        `after` = (next_attempt, id) of the last entry of the previous page: the next page,
        so the worker can look past a backlog for one destination without loading it all.
        `skip_domains` (lower case): leave out entries whose first and last recipients are in
        these domains (destinations with enough deliveries in flight), filtered in the store
        so a backlog of them costs the worker nothing. `skip_ids`: leave out these entries
        (the worker's deliveries in flight)."""

    @abc.abstractmethod
    async def next_queue_attempt(self) -> float | None:
        """The earliest next_attempt in the queue, None if it is empty."""

    @abc.abstractmethod
    async def get_queue_entry(self, entry_id: int) -> QueueEntry | None: ...

    @abc.abstractmethod
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
        """Replace the entry's retry state; `extra` (when given) replaces its extra map."""

    @abc.abstractmethod
    async def reschedule_queue(self, next_attempt: float, entry_id: int | None = None) -> int:
        """Set next_attempt of one entry (or all but the held ones) to `next_attempt` (`postar
        queue retry|flush`); returns how many entries changed. Retrying one held entry
        releases it."""

    @abc.abstractmethod
    async def hold_queue(self, entry_id: int | None = None) -> int:
        """Put one entry (or all) on hold: never tried until released (`postar queue hold`,
        postsuper -h); next_attempt becomes QUEUE_HELD. An attempt under way finishes, and
        its result keeps the hold. Returns how many entries changed."""

    @abc.abstractmethod
    async def release_queue(self, next_attempt: float, entry_id: int | None = None) -> int:
        """Held entries (one or all) become due at `next_attempt` (postsuper -H, then
        postqueue -f); returns how many changed. NotFound for an unknown `entry_id`."""

    @abc.abstractmethod
    async def remove_queue_entry(self, entry_id: int) -> None: ...

    # ---- change feed ----------------------------------------------------------------------
    @abc.abstractmethod
    def changes(self, account_id: int) -> AsyncIterator[MailboxChange]:
        """Committed changes to the account's mailboxes, as they happen (IDLE, webmail).
        Each call is an independent subscription; it ends when the iterator is closed."""

    def forward_commits(
        self,
        on_changes: Callable[[list[MailboxChange]], None],
        on_queue: Callable[[], None],
        on_unreferenced: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Also hand this process's committed mailbox changes, its queue commits, and (in a
        guest, which frees nothing) the bodies its commits may have left unreferenced, to
        these callbacks (on the event loop, after the commit): an SMTP worker process passes
        them to the serving process, whose IDLE sessions, outbound worker and blob frees wait
        on them."""
        raise NotImplementedError

    async def free_if_unreferenced(self, blob_ids: list[str]) -> None:
        """Bodies another process may have left without a reference: free those that are."""
        raise NotImplementedError

    def publish_changes(self, changes: list[MailboxChange]) -> None:
        """Changes another process committed: tell this process's subscribers."""
        raise NotImplementedError

    # ---- maintenance ------------------------------------------------------------------------
    @abc.abstractmethod
    async def backup(self, dest: Path) -> None:
        """A consistent copy of everything into dest while the server runs."""


def open_store_backend(
    config: object,
    *,
    beside_owner: bool = False,
    guest_only: bool = False,
    serving: bool = False,
) -> Store:
    """The backend named by config.store.backend. beside_owner: may open while a running
    server holds the data directory (management commands); guest_only: only while one does
    (a worker process of that server); serving: the server itself, which also does the
    store's background work (the SQLite full-text index)."""
    from postar.config import Config

    assert isinstance(config, Config)
    if config.store.backend == "sqlite":
        from postar.store.sqlite.backend import SQLiteStore

        return SQLiteStore(
            config.data_dir,
            fsync=config.store.fsync,
            group_commit_window=config.store.group_commit_window,
            inline_body_max=config.store.inline_body_max,
            read_mmap=config.store.read_mmap,
            default_quota=config.store.default_quota,
            beside_owner=beside_owner,
            guest_only=guest_only,
            index_in_background=serving,
        )
    raise StoreError(f"unknown store backend {config.store.backend!r}")
