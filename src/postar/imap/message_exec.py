"""Commands that change messages: APPEND (RFC 9051 6.3.12, RFC 3502 MULTIAPPEND, RFC 4315
APPENDUID), STORE (6.4.6, RFC 7162 UNCHANGEDSINCE), COPY/MOVE (6.4.7, 6.4.8, COPYUID),
EXPUNGE and UID EXPUNGE (6.4.3, 6.4.9).

Every change is durable in the store before the tagged OK is sent.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from postar.imap import commands as c
from postar.imap.codes import AppendUid, Code, CopyUid, Modified
from postar.imap.fetch import FetchItem
from postar.imap.mailbox_exec import store_error
from postar.imap.response import FetchData, FetchValue, FlagsItem, NumberItem, Tagged, Untagged
from postar.imap.response import Status as S
from postar.imap.sequence import SequenceSet
from postar.mime.parser import parse_message
from postar.store import names
from postar.store.interface import InvalidName, StoreError

if TYPE_CHECKING:
    from postar.imap.session import ImapSession

PARSE_IN_THREAD = 1024 * 1024  # bodies larger than this are parsed off the event loop


def _flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    from postar.imap.session import bad

    # RFC 3501 \Recent cannot be set by a client; it is silently not stored.
    wanted = tuple(f for f in flags if f.lower() != "\\recent")
    try:
        names.canonical_flags(wanted)
    except InvalidName:
        raise bad("Invalid flag") from None
    return wanted


# -- APPEND -----------------------------------------------------------------------------------


async def append(session: ImapSession, command: c.Append) -> Tagged:
    from postar.imap.session import no

    store = session.store
    mailbox = await store.get_mailbox(session.account_id, command.mailbox, counts=False)
    if mailbox is None or mailbox.noselect:
        # RFC 9051 6.3.12: TRYCREATE tells the client it may CREATE and retry.
        raise no("No such mailbox", Code.TRYCREATE)
    appended: list[int] = []
    try:
        for message in command.messages:
            if not message.data:
                raise no("Empty message")
            flags = _flags(message.flags)
            # Parse once, here; FETCH and SEARCH only ever read the stored parse.
            if len(message.data) > PARSE_IN_THREAD:
                parsed = await asyncio.to_thread(parse_message, message.data)
            else:
                parsed = parse_message(message.data)
            when = message.internal_date.timestamp() if message.internal_date else None
            record = await store.append(
                session.account_id, mailbox.id, message.data, parsed, flags, when
            )
            appended.append(record.uid)
    except BaseException as exc:
        # RFC 3502 section 6: MULTIAPPEND is all or nothing.
        if appended:
            await store.expunge(mailbox.id, appended)
        if isinstance(exc, StoreError):
            raise store_error(exc) from None
        raise
    if session.view is not None and session.view.id == mailbox.id:
        session._changed.set()  # announce our own EXISTS before the tagged OK
    code = AppendUid(mailbox.uidvalidity, SequenceSet.from_numbers(appended))
    return Tagged(command.tag, S.OK, "APPEND completed", code)


# -- EXPUNGE ----------------------------------------------------------------------------------


async def expunge(session: ImapSession, command: c.Expunge | c.UidExpunge) -> Tagged:
    view = session.writable()
    await session.announce(command, force=True)
    if isinstance(command, c.UidExpunge):
        pairs = session.resolve(command.sequence_set, uid=True)
        # RFC 4315 2.1: only messages that are both in the set and \Deleted.
        targets = [u for _, u in pairs if view.live(u) and "\\Deleted" in view.flags[u]]
        removed = await session.store.expunge(view.id, targets) if targets else []
    else:
        removed = await session.store.expunge(view.id)
    view.mark_expunged(removed)
    return Tagged(command.tag, S.OK, f"{command.name} completed")


# -- STORE ------------------------------------------------------------------------------------


async def store_flags(session: ImapSession, command: c.Store) -> Tagged:
    view = session.writable()
    flags = _flags(command.flags)
    if command.unchanged_since is not None:
        session.condstore = True  # RFC 7162 3.1
    pairs = [(s, u) for s, u in session.resolve(command.sequence_set, uid=command.uid)
             if view.live(u)]  # fmt: skip
    if not pairs:
        return Tagged(command.tag, S.OK, "STORE completed")
    seq_of = {u: s for s, u in pairs}
    try:
        changed, refused = await session.store.set_flags(
            view.id, [u for _, u in pairs], command.mode, flags, command.unchanged_since
        )
    except StoreError as exc:
        raise store_error(exc) from None
    view.apply_own(changed)
    changed_uids = {r.uid for r in changed}
    refused_set = set(refused)
    for seq, uid in pairs:
        if uid in refused_set:
            continue
        # RFC 9051 6.4.6: the new flags of each message, unless .SILENT; RFC 7162 3.1.3: with
        # UNCHANGEDSINCE, changed messages are reported (with MODSEQ) even when silent.
        silent_ok = command.silent and not (
            command.unchanged_since is not None and uid in changed_uids
        )
        if silent_ok:
            continue
        items: list[FetchValue] = [FlagsItem(view.flags_of(uid))]
        if command.uid:
            items.append(NumberItem(FetchItem.UID, uid))
        if session.condstore:
            items.append(NumberItem(FetchItem.MODSEQ, view.modseqs[uid]))
        await session.send(FetchData(seq, tuple(items)))
    if refused:
        numbers = refused if command.uid else [seq_of[u] for u in refused]
        return Tagged(
            command.tag,
            S.OK,
            "Conditional STORE failed for some messages",
            Modified(SequenceSet.from_numbers(numbers)),
        )
    return Tagged(command.tag, S.OK, "STORE completed")


# -- COPY / MOVE ------------------------------------------------------------------------------


async def copy_move(session: ImapSession, command: c.Copy | c.Move) -> Tagged:
    from postar.imap.session import no

    view = session.selected()
    move = isinstance(command, c.Move)
    if move:
        session.writable()
    store = session.store
    dest = await store.get_mailbox(session.account_id, command.mailbox, counts=False)
    if dest is None or dest.noselect:
        raise no("No such mailbox", Code.TRYCREATE)
    pairs = [(s, u) for s, u in session.resolve(command.sequence_set, uid=command.uid)
             if view.live(u)]  # fmt: skip
    if not pairs:
        return Tagged(command.tag, S.OK, f"{command.name} completed")
    uids = [u for _, u in pairs]
    try:
        if move:
            mapping = await store.move_messages(view.id, uids, dest.id)
        else:
            mapping = await store.copy_messages(view.id, uids, dest.id)
    except StoreError as exc:
        raise store_error(exc) from None
    if dest.id == view.id:
        session._changed.set()
    code = (
        CopyUid(
            dest.uidvalidity,
            SequenceSet.from_ordered(s for s, _ in mapping),
            SequenceSet.from_ordered(d for _, d in mapping),
        )
        if mapping
        else None
    )
    if move:
        # RFC 6851 4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
        if code is not None:
            await session.send(Untagged(S.OK, "Moved", code))
        view.mark_expunged([s for s, _ in mapping])
        return Tagged(command.tag, S.OK, "MOVE completed")
    return Tagged(command.tag, S.OK, "COPY completed", code)
