"""SORT and THREAD (RFC 5256) and their UID forms: the glue between the store and `ordering`.

Sort keys come from the stored parse (ENVELOPE) and the message record, never from parsing
the message again. THREAD=REFERENCES also needs the References header, which ENVELOPE does
not carry: it is read from the message's header block with one bounded ranged read. What a
message yields is cached per session by blob id (bodies are immutable), so re-sorting a
mailbox costs no store reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from postar.imap import commands as c
from postar.imap.ordering import (
    SortFacts,
    message_ids,
    ordered_subject,
    references,
    renumber,
    sort_messages,
    thread_references,
)
from postar.imap.response import SortData, Tagged, ThreadData
from postar.imap.response import Status as S
from postar.imap.search_exec import run_search, uses_modseq
from postar.mime.headers import split_fields
from postar.mime.structure import Envelope
from postar.store.interface import NotFound

if TYPE_CHECKING:
    from postar.imap.session import ImapSession

MAX_HEADER_READ = 256 * 1024  # a References header beyond this is not worth a bigger read
MAX_CACHED = 200_000  # blob ids whose sort facts a session keeps


def _halve(table: dict[Any, Any]) -> None:
    if len(table) > MAX_CACHED:
        for key in list(table)[: MAX_CACHED // 2]:
            del table[key]


class SortCache:
    """Per-session, by blob id: (envelope, header block length); thread references.
    Also what SEARCH's envelope keys (FROM, SUBJECT, SENTON...) read (search_exec)."""

    def __init__(self) -> None:
        self.envelopes: dict[str, tuple[Envelope, int]] = {}
        self.references: dict[str, tuple[str, ...]] = {}
        # SEARCH FROM/TO/CC/BCC/SUBJECT: (blob id, field) -> decoded, casefolded values.
        self.texts: dict[tuple[str, str], tuple[str, ...]] = {}

    def trim(self) -> None:
        # Bodies never change, so dropping the oldest half only costs re-reads.
        _halve(self.envelopes)
        _halve(self.references)
        _halve(self.texts)

    async def envelope(self, session: ImapSession, blob_id: str) -> Envelope:
        known = self.envelopes.get(blob_id)
        if known is None:
            try:
                parsed = await session.parsed(blob_id)
            except NotFound:
                # Expunged elsewhere and freed before this session heard of it: it sorts and
                # searches as a message with no headers (not cached: it is not a fact).
                return Envelope()
            known = self.envelopes[blob_id] = (parsed.envelope, parsed.root.body_start)
            self.trim()
        return known[0]

    async def thread_refs(
        self, session: ImapSession, blob_id: str, env: Envelope
    ) -> tuple[str, ...]:
        refs = self.references.get(blob_id)
        if refs is None:
            if blob_id not in self.envelopes:
                await self.envelope(session, blob_id)
            if blob_id not in self.envelopes:
                return ()  # gone (see envelope())
            length = min(self.envelopes[blob_id][1], MAX_HEADER_READ)
            try:
                block = await session.store.read_blob(blob_id, 0, length)
            except NotFound:
                return ()
            values = [v for n, v in split_fields(block) if n.lower() == "references"]
            refs = thread_references(values[0] if values else None, env.in_reply_to)
            self.references[blob_id] = refs
            self.trim()
        return refs


async def _facts(
    session: ImapSession, hits: list[tuple[int, int]], *, with_refs: bool
) -> list[SortFacts]:
    view = session.selected()
    wanted = {u for _, u in hits}
    records = {r.uid: r for r in await session.store.list_messages(view.id) if r.uid in wanted}
    cache = session.sort_cache
    out: list[SortFacts] = []
    for seq, uid in hits:
        record = records.get(uid)
        if record is None:
            continue  # expunged by another session since the search
        env = await cache.envelope(session, record.blob_id)
        refs = await cache.thread_refs(session, record.blob_id, env) if with_refs else ()
        ids = message_ids(env.message_id)
        out.append(
            SortFacts(
                seq=seq,
                uid=uid,
                envelope=env,
                internal_date=record.internal_date,
                size=record.size,
                references=refs,
                message_id=ids[0] if ids else None,
            )
        )
    return out


async def sort(session: ImapSession, command: c.Sort) -> Tagged:
    view = session.selected()
    modseq_used = uses_modseq(command.search)
    if modseq_used:
        session.condstore = True  # RFC 7162 3.1
    hits = await run_search(session, command.search)
    ordered = sort_messages(await _facts(session, hits, with_refs=False), command.criteria)
    numbers = [f.uid if command.uid else f.seq for f in ordered]
    modseq = None
    if modseq_used and hits:
        # RFC 7162 3.1.5 (and 3.2 for SORT): the highest MODSEQ of the messages found.
        modseq = max(view.modseqs.get(u, 0) for _, u in hits)
    await session.send(SortData(numbers, modseq))
    return Tagged(command.tag, S.OK, f"{'UID ' if command.uid else ''}SORT completed")


async def thread(session: ImapSession, command: c.Thread) -> Tagged:
    hits = await run_search(session, command.search)
    if command.algorithm is c.ThreadAlgorithm.ORDEREDSUBJECT:
        trees = ordered_subject(await _facts(session, hits, with_refs=False))
    elif command.algorithm is c.ThreadAlgorithm.REFERENCES:
        trees = references(await _facts(session, hits, with_refs=True))
    else:
        # Only the algorithms we advertise (RFC 5256 section 4: THREAD=<name>).
        from postar.imap.session import bad

        raise bad(f"Threading algorithm {command.algorithm.value} is not supported")
    threads = tuple(trees)
    if command.uid:
        threads = renumber(threads, dict(hits))
    await session.send(ThreadData(threads))
    return Tagged(command.tag, S.OK, f"{'UID ' if command.uid else ''}THREAD completed")
