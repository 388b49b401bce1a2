"""Records the store hands out: typed, immutable, with IMAP semantics built in."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

# RFC 9051 2.3.2 system flags. Keywords are any other atom; stored as given, compared
# case-insensitively for system flags only.
SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")

# RFC 6154 special-use attributes of the folders every new account gets, in this order.
DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Junk", "\\Junk"),
    ("Trash", "\\Trash"),
    ("Archive", "\\Archive"),
)


@dataclass(frozen=True)
class Domain:
    name: str  # lower-case ASCII (A-label for IDNs)
    catch_all: str | None = None  # address that receives mail for unknown local parts


@dataclass(frozen=True)
class ScramSecrets:
    """RFC 5802/7677 SCRAM-SHA-256 verifier, kept beside the argon2id hash."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True)
class Account:
    id: int
    address: str  # lower-case local@domain, the login name
    domain: str
    password_hash: str  # argon2id PHC string
    scram: ScramSecrets | None
    quota_bytes: int  # 0 = unlimited
    disabled: bool = False


@dataclass(frozen=True)
class Alias:
    address: str  # lower-case local@domain
    targets: tuple[str, ...]  # local or remote addresses


@dataclass(frozen=True)
class Mailbox:
    id: int
    account_id: int
    name: str  # full hierarchical name, "/" separator, UTF-8; "INBOX" for the inbox
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None = None  # "\\Sent", "\\Trash", ...
    subscribed: bool = False
    messages: int = 0  # count
    unseen: int = 0  # messages without \Seen
    deleted: int = 0  # messages with \Deleted
    size: int = 0  # bytes, sum of RFC822.SIZE (STATUS=SIZE)
    first_unseen_uid: int | None = None
    # A placeholder that keeps the hierarchy after its own deletion (RFC 9051 6.3.4): it has
    # children, holds no messages and cannot be selected until created again.
    noselect: bool = False


class WholeBody(NamedTuple):
    """A stored body read whole (Store.read_whole_blobs), with what the store knows of it."""

    data: bytes
    dot_lines: bool | None  # a line starts with "." (mime/dotlines.py); None: not known


@dataclass(frozen=True)
class MessageRecord:
    """One message in one mailbox."""

    mailbox_id: int
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: float  # seconds since the epoch, UTC
    size: int
    blob_id: str  # sha256 hex of the stored bytes; the same for every copy
    email_id: str  # RFC 8474 OBJECTID EMAILID: stable across COPY/MOVE
    thread_id: str  # RFC 8474 THREADID


@dataclass(frozen=True)
class MailboxDelta:
    """What changed in a mailbox after a MODSEQ, read in one snapshot (store.mailbox_delta):
    the mailbox's counters as of that snapshot, the messages whose MODSEQ is greater (in UID
    order) and the UIDs expunged after it."""

    uidnext: int
    highestmodseq: int
    noselect: bool
    changed: tuple[MessageRecord, ...]
    expunged: tuple[int, ...]


class FlagMode(Enum):
    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


@dataclass(frozen=True)
class DeliveryTarget:
    """Where one local recipient's copy goes."""

    account_id: int
    mailbox: str = "INBOX"  # a missing mailbox falls back to INBOX
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Delivered:
    account_id: int
    mailbox_id: int
    uid: int


@dataclass(frozen=True)
class QueuedRecipient:
    address: str
    notify: tuple[str, ...] = ()  # DSN NOTIFY values (RFC 3461), upper case
    orcpt: str | None = None  # DSN ORCPT, as given


@dataclass(frozen=True)
class QueueEntry:
    id: int
    sender: str  # reverse-path, "" for the null sender
    recipients: tuple[QueuedRecipient, ...]
    blob_id: str
    created: float
    next_attempt: float
    attempts: int = 0
    last_error: str | None = None
    ret: str | None = None  # DSN RET=FULL|HDRS
    envid: str | None = None  # DSN ENVID
    auth_user: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return self.next_attempt == QUEUE_HELD


# next_attempt of an entry on hold (`postar queue hold`, like postsuper -h): never due, so the
# worker's due query, index and ordering need nothing else; release makes it due again.
QUEUE_HELD = float("inf")

RESYNC_ALL = 0  # MailboxChange.mailbox_id of a coalesced "everything may have changed" event


@dataclass(frozen=True)
class MailboxChange:
    """Published after a commit: mailbox X of account A changed and now stands at modseq N.

    Creation, rename and deletion of a mailbox are published too (a deleted mailbox's id no
    longer resolves). mailbox_id RESYNC_ALL means the subscriber fell behind and its pending
    changes were coalesced into one: re-read every mailbox of the account.
    """

    account_id: int
    mailbox_id: int
    modseq: int
