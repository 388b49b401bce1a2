"""Mailbox commands: LIST, LSUB, STATUS, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, and the
QRESYNC part of SELECT (RFC 9051 6.3, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154
SPECIAL-USE, RFC 7162 3.2.5).

Every name is looked up under the session's own account: a pattern or a name can only ever
match that account's mailboxes (the store holds no paths, only names per account).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from postar.imap import commands as c
from postar.imap.codes import Code, MailboxId
from postar.imap.fetch import FetchItem
from postar.imap.mailbox_view import MailboxView
from postar.imap.response import (
    FetchData,
    FlagsItem,
    ListData,
    NumberItem,
    StatusData,
    Tagged,
    VanishedData,
)
from postar.imap.response import Status as S
from postar.imap.sequence import SequenceSet
from postar.store.interface import (
    AlreadyExists,
    InvalidName,
    MailboxNotSelectable,
    NotFound,
    QuotaExceeded,
    StoreError,
)
from postar.store.model import Mailbox

if TYPE_CHECKING:
    from postar.imap.session import CommandError, ImapSession

SEPARATOR = "/"
# RFC 6154 section 2 attributes a mailbox can carry; \All and \Flagged are virtual views we
# do not offer, so CREATE ... USE refuses them with [USEATTR] (RFC 6154 section 3).
CREATABLE_SPECIAL_USE = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")


def store_error(exc: StoreError) -> CommandError:
    """The NO a store refusal deserves (RFC 9051 7.1 response codes)."""
    from postar.imap.session import no

    if isinstance(exc, AlreadyExists):
        return no("Mailbox already exists", Code.ALREADYEXISTS)
    if isinstance(exc, NotFound):
        return no("No such mailbox", Code.NONEXISTENT)
    if isinstance(exc, InvalidName):
        return no("Invalid mailbox name", Code.CANNOT)
    if isinstance(exc, MailboxNotSelectable):
        return no("Mailbox cannot be selected", Code.NONEXISTENT)
    if isinstance(exc, QuotaExceeded):
        return no("Quota exceeded", Code.OVERQUOTA)
    return no("Operation failed", Code.SERVERBUG)


# -- object ids -------------------------------------------------------------------------------


def mailbox_object_id(mailbox: Mailbox) -> str:
    """RFC 8474 4.1 MAILBOXID: stable across RENAME, never reused for another mailbox.

    Derived from the row id (kept by RENAME) and UIDVALIDITY (kept by RENAME, and unique
    across the database, so a reused row id still yields a new value); hashed so clients
    see an opaque objectid ("F" + 24 hex digits fits its 1-255 [A-Za-z0-9_-]).
    """
    digest = hashlib.blake2b(f"{mailbox.id}.{mailbox.uidvalidity}".encode(), digest_size=12)
    return "F" + digest.hexdigest()


# -- patterns ---------------------------------------------------------------------------------


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """RFC 9051 6.3.9: "*" matches anything, "%" anything but the separator."""
    # "INBOX" is case-insensitive also as the first level of a pattern (RFC 9051 5.1).
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/*%"):
        pattern = "INBOX" + pattern[5:]
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _canonical(name: str) -> str:
    first, sep, rest = name.partition(SEPARATOR)
    return ("INBOX" if first.upper() == "INBOX" else first) + sep + rest


def _sort_key(name: str) -> tuple[int, str]:
    return (0 if name == "INBOX" or name.startswith("INBOX/") else 1, name)


def _has_children(name: str, names: Iterable[str]) -> bool:
    prefix = name + SEPARATOR
    return any(n.startswith(prefix) for n in names)


def _attributes(
    mailbox: Mailbox | None, has_children: bool, subscribed: bool | None
) -> tuple[str, ...]:
    attrs: list[str] = []
    if mailbox is None:
        attrs.append("\\NonExistent")  # RFC 5258 3.4 (implies \Noselect)
    elif mailbox.noselect:
        attrs.append("\\Noselect")
    # RFC 3348 CHILDREN / RFC 5258 3.5: always sent, they cost us nothing.
    attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
    if mailbox is not None and mailbox.special_use:
        attrs.append(mailbox.special_use)  # RFC 6154 section 2
    if subscribed:
        attrs.append("\\Subscribed")
    return tuple(attrs)


async def attributes_of(session: ImapSession, name: str) -> tuple[str, ...]:
    mailboxes = await session.store.list_mailboxes(session.account_id)
    names = [m.name for m in mailboxes]
    mailbox = next((m for m in mailboxes if m.name == name), None)
    return _attributes(mailbox, _has_children(name, names), None)


# -- LIST / LSUB ------------------------------------------------------------------------------


async def list_mailboxes(session: ImapSession, command: c.List | c.Lsub) -> Tagged:
    store = session.store
    account = session.account_id
    if isinstance(command, c.Lsub):
        regex = pattern_regex(command.reference + command.pattern)
        subs = sorted(set(await store.list_subscriptions(account)), key=_sort_key)
        for name in subs:
            if regex.fullmatch(name):
                await session.send(ListData((), SEPARATOR, name, lsub=True))
        return Tagged(command.tag, S.OK, "LSUB completed")

    if not command.extended and command.patterns == ("",):
        # RFC 9051 6.3.9: an empty pattern asks for the separator and the root.
        await session.send(ListData(("\\Noselect",), SEPARATOR, ""))
        return Tagged(command.tag, S.OK, "LIST completed")

    mailboxes = {m.name: m for m in await store.list_mailboxes(account)}
    subscribed = {_canonical(n) for n in await store.list_subscriptions(account)}
    regexes = [pattern_regex(command.reference + p) for p in command.patterns if p]
    sel, ret = command.selection, command.returns
    names = set(mailboxes)
    if sel.subscribed:
        names |= subscribed

    def matches(name: str) -> bool:
        return any(r.fullmatch(name) for r in regexes)

    show_subscribed = ret.subscribed or sel.subscribed
    results: list[tuple[str, ListData]] = []
    for name in sorted(names, key=_sort_key):
        if not matches(name):
            continue
        mailbox = mailboxes.get(name)
        child_info: tuple[str, ...] = ()
        if sel.subscribed and name not in subscribed:
            # RFC 5258 3.5: with RECURSIVEMATCH a parent of a subscribed mailbox is listed
            # with CHILDINFO, without being subscribed itself.
            if not (sel.recursive_match and _has_children(name, subscribed)):
                continue
            child_info = ("SUBSCRIBED",)
        if sel.special_use and (mailbox is None or not mailbox.special_use):
            continue
        attrs = _attributes(
            mailbox,
            _has_children(name, mailboxes.keys()),
            (name in subscribed) if show_subscribed else None,
        )
        results.append((name, ListData(attrs, SEPARATOR, name, child_info=child_info)))

    for name, data in results:
        await session.send(data)
        mailbox = mailboxes.get(name)
        if ret.status and mailbox is not None and not mailbox.noselect:
            # RFC 5819: a STATUS response follows the LIST response of each selectable one.
            await session.send(await _status_data(session, mailbox, ret.status))
    return Tagged(command.tag, S.OK, "LIST completed")


# -- STATUS -----------------------------------------------------------------------------------


async def _status_data(
    session: ImapSession, mailbox: Mailbox, items: tuple[c.StatusItem, ...]
) -> StatusData:
    from postar.imap.quota_exec import kib_up

    values: dict[c.StatusItem, int | str] = {
        c.StatusItem.MAILBOXID: mailbox_object_id(mailbox),
        c.StatusItem.MESSAGES: mailbox.messages,
        c.StatusItem.UIDNEXT: mailbox.uidnext,
        c.StatusItem.UIDVALIDITY: mailbox.uidvalidity,
        c.StatusItem.UNSEEN: mailbox.unseen,
        c.StatusItem.DELETED: mailbox.deleted,
        c.StatusItem.SIZE: mailbox.size,
        c.StatusItem.HIGHESTMODSEQ: mailbox.highestmodseq,
        c.StatusItem.APPENDLIMIT: session.settings.limits.max_literal_size,
    }
    if c.StatusItem.RECENT in items:
        # RFC 3501 6.3.10: messages no session has claimed yet would be recent to the next
        # SELECT (those a session holds as recent are recent to it alone).
        mark = await session.store.claim_recent(mailbox.id, 0)
        records = await session.store.list_messages(mailbox.id)
        values[c.StatusItem.RECENT] = sum(1 for r in records if r.uid > mark)
    if c.StatusItem.DELETED_STORAGE in items:
        # RFC 9208 4.2.3: what EXPUNGE would reclaim, in the STORAGE resource's 1024-octet units.
        records = await session.store.list_messages(mailbox.id)
        reclaim = sum(r.size for r in records if "\\Deleted" in r.flags)
        values[c.StatusItem.DELETED_STORAGE] = kib_up(reclaim)
    out = [(item, values[item]) for item in items if item in values]
    return StatusData(mailbox.name, tuple(out))


async def status(session: ImapSession, command: c.Status) -> Tagged:
    from postar.imap.session import no

    if c.StatusItem.HIGHESTMODSEQ in command.items:
        session.condstore = True  # RFC 7162 3.1: a CONDSTORE-enabling command
    mailbox = await session.store.get_mailbox(session.account_id, command.mailbox)
    if mailbox is None or mailbox.noselect:
        raise no("No such mailbox", Code.NONEXISTENT)
    await session.send(await _status_data(session, mailbox, command.items))
    return Tagged(command.tag, S.OK, "STATUS completed")


# -- CREATE / DELETE / RENAME / (UN)SUBSCRIBE ---------------------------------------------------


async def manage(
    session: ImapSession,
    command: c.Create | c.Delete | c.Rename | c.Subscribe | c.Unsubscribe,
) -> Tagged:
    from postar.imap.session import no

    store = session.store
    account = session.account_id
    try:
        match command:
            case c.Create():
                # RFC 9051 6.3.4: a trailing separator only declares the intent to add children.
                name = command.mailbox.rstrip(SEPARATOR)
                if name.upper() == "INBOX":
                    raise no("INBOX always exists", Code.ALREADYEXISTS)
                use: str | None = None
                if command.special_use:
                    wanted = {u.lower(): u for u in CREATABLE_SPECIAL_USE}
                    if len(command.special_use) > 1 or command.special_use[0].lower() not in wanted:
                        raise no("Special-use attribute not supported", Code.USEATTR)
                    use = wanted[command.special_use[0].lower()]
                existing = await store.get_mailbox(account, name)
                if existing is not None and not existing.noselect:
                    raise no("Mailbox already exists", Code.ALREADYEXISTS)
                created = await store.create_mailbox(account, name, use)
                # RFC 8474 4.1: the tagged OK of CREATE names the new mailbox's id.
                return Tagged(
                    command.tag, S.OK, "CREATE completed", MailboxId(mailbox_object_id(created))
                )
            case c.Delete():
                name = command.mailbox
                if name.upper() == "INBOX":
                    raise no("INBOX cannot be deleted", Code.CANNOT)
                mailboxes = await store.list_mailboxes(account)
                target = next((m for m in mailboxes if m.name == _canonical(name)), None)
                if target is None:
                    raise no("No such mailbox", Code.NONEXISTENT)
                if target.noselect and _has_children(target.name, [m.name for m in mailboxes]):
                    # RFC 9051 6.3.5: a \Noselect name with children cannot be deleted.
                    raise no("Mailbox has children", Code.HASCHILDREN)
                if session.view is not None and session.view.id == target.id:
                    await session._deselect(closed_code=False)
                    from postar.imap.state import State

                    session.state = State.AUTHENTICATED
                await store.delete_mailbox(account, target.name)
            case c.Rename():
                if command.new_name.upper() == "INBOX":
                    raise no("INBOX already exists", Code.ALREADYEXISTS)
                if await store.get_mailbox(account, command.mailbox) is None:
                    raise no("No such mailbox", Code.NONEXISTENT)
                await store.rename_mailbox(account, command.mailbox, command.new_name)
            case c.Subscribe():
                await store.set_subscribed(account, command.mailbox, True)
            case c.Unsubscribe():
                await store.set_subscribed(account, command.mailbox, False)
    except StoreError as exc:
        raise store_error(exc) from None
    return Tagged(command.tag, S.OK, f"{command.name} completed")


# -- SELECT (QRESYNC) ---------------------------------------------------------------------------


async def qresync_select(session: ImapSession, view: MailboxView, params: c.QresyncParams) -> None:
    """RFC 7162 3.2.5.2: tell a resyncing client what vanished and what changed since its
    MODSEQ, when its UIDVALIDITY still holds."""
    if params.uidvalidity != view.mailbox.uidvalidity:
        return
    known = params.known_uids
    vanished = await session.store.expunged_since(view.id, params.modseq)
    if known is not None and vanished:
        resolved = known.resolve(max(vanished))
        vanished = [u for u in vanished if u in resolved]
    if vanished:
        await session.send(VanishedData(SequenceSet.from_numbers(vanished), earlier=True))
    top = view.uids[-1] if view.uids else 0
    resolved_known = known.resolve(top) if known is not None else None
    for seq, uid in enumerate(view.uids, start=1):
        if view.modseqs[uid] <= params.modseq:
            continue
        if resolved_known is not None and uid not in resolved_known:
            continue
        await session.send(
            FetchData(
                seq,
                (
                    NumberItem(FetchItem.UID, uid),
                    FlagsItem(view.flags_of(uid)),
                    NumberItem(FetchItem.MODSEQ, view.modseqs[uid]),
                ),
            )
        )
