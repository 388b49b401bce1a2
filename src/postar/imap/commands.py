"""Typed IMAP commands: what the parser produces and the server executes.

One frozen dataclass per command of RFC 9051 and RFC 3501 and of the extensions we speak
(UIDPLUS, CONDSTORE/QRESYNC, LIST-EXTENDED, LIST-STATUS, SPECIAL-USE, ESEARCH, SEARCHRES,
WITHIN, SORT/THREAD, QUOTA, ID, COMPRESS, MOVE, MULTIAPPEND, BINARY, UTF8=ACCEPT, ENABLE,
IDLE, SASL-IR, NAMESPACE, UNSELECT, OBJECTID). Mailbox names are already decoded to str
(modified UTF-7 or UTF-8, RFC 9051 section 5.1), "INBOX" in any case spelled "INBOX".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import ClassVar

from postar.imap.fetch import FetchAtt
from postar.imap.search import SearchKey, SearchReturn
from postar.imap.sequence import SequenceSet
from postar.store.model import FlagMode


@dataclass(frozen=True, kw_only=True)
class Command:
    tag: str
    name: ClassVar[str] = ""


# -- any state ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, kw_only=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True, kw_only=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, kw_only=True)
class Id(Command):
    """RFC 2971: ID NIL or ID ("name" "value" ...); values may be NIL."""

    name: ClassVar[str] = "ID"
    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, kw_only=True)
class Compress(Command):
    """RFC 4978: COMPRESS DEFLATE."""

    name: ClassVar[str] = "COMPRESS"
    mechanism: str


# -- not authenticated ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StartTls(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, kw_only=True)
class Authenticate(Command):
    """RFC 9051 6.2.2; initial_response from SASL-IR (RFC 4959), b"" for "=", base64 decoded."""

    name: ClassVar[str] = "AUTHENTICATE"
    mechanism: str  # upper case
    initial_response: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class Login(Command):
    name: ClassVar[str] = "LOGIN"
    username: str
    password: str


# -- authenticated --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Enable(Command):
    """RFC 5161: capability names, upper case."""

    name: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class QresyncParams:
    """RFC 7162 section 3.2.5: (QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]]))."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_sequences: SequenceSet | None = None  # seq-match-data: message numbers ...
    known_sequence_uids: SequenceSet | None = None  # ... and their UIDs, pairwise


@dataclass(frozen=True, kw_only=True)
class Select(Command):
    name: ClassVar[str] = "SELECT"
    read_only: ClassVar[bool] = False
    mailbox: str
    condstore: bool = False  # RFC 7162 section 3.1.8 (CONDSTORE) parameter
    qresync: QresyncParams | None = None
    # The name as sent when it differs from `mailbox` ("inbox"): RFC 9051 6.3.2 LIST OLDNAME.
    given_name: str | None = None


@dataclass(frozen=True, kw_only=True)
class Examine(Select):
    name: ClassVar[str] = "EXAMINE"
    read_only: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class Create(Command):
    name: ClassVar[str] = "CREATE"
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 section 3: CREATE name (USE (\Sent))


@dataclass(frozen=True, kw_only=True)
class Delete(Command):
    name: ClassVar[str] = "DELETE"
    mailbox: str


@dataclass(frozen=True, kw_only=True)
class Rename(Command):
    name: ClassVar[str] = "RENAME"
    mailbox: str
    new_name: str


@dataclass(frozen=True, kw_only=True)
class Subscribe(Command):
    name: ClassVar[str] = "SUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, kw_only=True)
class Unsubscribe(Command):
    name: ClassVar[str] = "UNSUBSCRIBE"
    mailbox: str


class StatusItem(Enum):
    MESSAGES = "MESSAGES"
    UIDNEXT = "UIDNEXT"
    UIDVALIDITY = "UIDVALIDITY"
    UNSEEN = "UNSEEN"
    DELETED = "DELETED"  # RFC 9051
    SIZE = "SIZE"  # RFC 9051 (STATUS=SIZE, RFC 8438)
    RECENT = "RECENT"  # RFC 3501 only
    HIGHESTMODSEQ = "HIGHESTMODSEQ"  # RFC 7162 section 3.1.6
    APPENDLIMIT = "APPENDLIMIT"  # RFC 7889 section 4
    MAILBOXID = "MAILBOXID"  # RFC 8474 section 4.2
    DELETED_STORAGE = "DELETED-STORAGE"  # RFC 9208 section 4.2.3


@dataclass(frozen=True)
class ListSelect:
    """RFC 5258 list-select-opts, RFC 6154 SPECIAL-USE."""

    subscribed: bool = False
    remote: bool = False
    recursive_match: bool = False
    special_use: bool = False


@dataclass(frozen=True)
class ListReturn:
    """RFC 5258 list-return-opts; status from RFC 5819 LIST-STATUS."""

    subscribed: bool = False
    children: bool = False
    special_use: bool = False
    status: tuple[StatusItem, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class List(Command):
    name: ClassVar[str] = "LIST"
    reference: str
    patterns: tuple[str, ...]  # one or more (RFC 5258 section 3, multiple patterns)
    selection: ListSelect = field(default_factory=ListSelect)
    returns: ListReturn = field(default_factory=ListReturn)
    extended: bool = False  # selection or return options given: answer per RFC 5258


@dataclass(frozen=True, kw_only=True)
class Lsub(Command):
    """RFC 3501 6.3.9 (deprecated by RFC 9051)."""

    name: ClassVar[str] = "LSUB"
    reference: str
    pattern: str


@dataclass(frozen=True, kw_only=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, kw_only=True)
class Status(Command):
    name: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[StatusItem, ...]


@dataclass(frozen=True)
class AppendMessage:
    flags: tuple[str, ...]
    internal_date: datetime | None
    data: bytes
    binary: bool = False  # sent as literal8 (RFC 3516 section 4.4)
    utf8: bool = False  # sent as UTF8 (literal8) (RFC 6855 section 4)


@dataclass(frozen=True, kw_only=True)
class Append(Command):
    """Several messages with MULTIAPPEND (RFC 3502)."""

    name: ClassVar[str] = "APPEND"
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, kw_only=True)
class Idle(Command):
    """RFC 2177; the glue then reads "DONE" with Receiver.expect_line()."""

    name: ClassVar[str] = "IDLE"


@dataclass(frozen=True, kw_only=True)
class GetQuota(Command):
    name: ClassVar[str] = "GETQUOTA"
    root: str


@dataclass(frozen=True, kw_only=True)
class GetQuotaRoot(Command):
    name: ClassVar[str] = "GETQUOTAROOT"
    mailbox: str


@dataclass(frozen=True, kw_only=True)
class SetQuota(Command):
    """RFC 9208 section 4.3: resource names upper case with their limits."""

    name: ClassVar[str] = "SETQUOTA"
    root: str
    limits: tuple[tuple[str, int], ...]


# -- selected -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Check(Command):
    """RFC 3501 6.4.1 (removed in RFC 9051, still sent by old clients)."""

    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True, kw_only=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, kw_only=True)
class Unselect(Command):
    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, kw_only=True)
class Expunge(Command):
    name: ClassVar[str] = "EXPUNGE"


@dataclass(frozen=True, kw_only=True)
class UidExpunge(Command):
    """RFC 4315 section 2.1 / RFC 9051 6.4.9."""

    name: ClassVar[str] = "UID EXPUNGE"
    sequence_set: SequenceSet


@dataclass(frozen=True, kw_only=True)
class Search(Command):
    name: ClassVar[str] = "SEARCH"
    uid: bool = False
    charset: str | None = None
    criteria: SearchKey
    # None: classic "* SEARCH" answer (RFC 3501); a tuple: ESEARCH (RFC 9051, RFC 4731).
    returns: tuple[SearchReturn, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class Fetch(Command):
    name: ClassVar[str] = "FETCH"
    uid: bool = False
    sequence_set: SequenceSet
    items: tuple[FetchAtt, ...]
    changed_since: int | None = None  # RFC 7162 section 3.1.4.1 CHANGEDSINCE
    vanished: bool = False  # RFC 7162 section 3.2.6 VANISHED (UID FETCH only)


@dataclass(frozen=True, kw_only=True)
class Store(Command):
    name: ClassVar[str] = "STORE"
    uid: bool = False
    sequence_set: SequenceSet
    mode: FlagMode
    silent: bool
    flags: tuple[str, ...]
    unchanged_since: int | None = None  # RFC 7162 section 3.1.3 UNCHANGEDSINCE


@dataclass(frozen=True, kw_only=True)
class Copy(Command):
    name: ClassVar[str] = "COPY"
    uid: bool = False
    sequence_set: SequenceSet
    mailbox: str


@dataclass(frozen=True, kw_only=True)
class Move(Command):
    """RFC 6851 / RFC 9051 6.4.8."""

    name: ClassVar[str] = "MOVE"
    uid: bool = False
    sequence_set: SequenceSet
    mailbox: str


class SortKey(Enum):
    """RFC 5256 section 3 sort-key, RFC 5957 DISPLAYFROM/DISPLAYTO."""

    ARRIVAL = "ARRIVAL"
    CC = "CC"
    DATE = "DATE"
    FROM = "FROM"
    SIZE = "SIZE"
    SUBJECT = "SUBJECT"
    TO = "TO"
    DISPLAYFROM = "DISPLAYFROM"
    DISPLAYTO = "DISPLAYTO"


@dataclass(frozen=True)
class SortCriterion:
    key: SortKey
    reverse: bool = False


@dataclass(frozen=True, kw_only=True)
class Sort(Command):
    name: ClassVar[str] = "SORT"
    uid: bool = False
    criteria: tuple[SortCriterion, ...]
    charset: str
    search: SearchKey


class ThreadAlgorithm(Enum):
    ORDEREDSUBJECT = "ORDEREDSUBJECT"  # RFC 5256 section 4
    REFERENCES = "REFERENCES"
    REFS = "REFS"  # RFC 9051 does not name it; draft-ietf-morg-inthread, used by Dovecot


@dataclass(frozen=True, kw_only=True)
class Thread(Command):
    name: ClassVar[str] = "THREAD"
    uid: bool = False
    algorithm: ThreadAlgorithm
    charset: str
    search: SearchKey


ALL_COMMANDS: tuple[type[Command], ...] = (
    Capability, Noop, Logout, Id, Compress, StartTls, Authenticate, Login, Enable, Select,
    Examine, Create, Delete, Rename, Subscribe, Unsubscribe, List, Lsub, Namespace, Status,
    Append, Idle, GetQuota, GetQuotaRoot, SetQuota, Check, Close, Unselect, Expunge,
    UidExpunge, Search, Fetch, Store, Copy, Move, Sort, Thread,
)  # fmt: skip
