"""SEARCH (RFC 9051 6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES, RFC 7162 MODSEQ, RFC 5032
WITHIN, RFC 8474 EMAILID/THREADID).

TEXT and BODY go to the store's full-text index (store.search_text), once per distinct
string; nothing scans bodies. FROM, TO, CC, BCC and SUBJECT match the stored ENVELOPE (RFC
9051 6.4.4: "the envelope structure's ... field"), as do the sent-date keys (its Date), so
they cost no blob reads and are cached per session with SORT's (sort_exec.SortCache). Only
HEADER reads the message's header block, with one ranged read. Values are compared decoded
and case-insensitively. BEFORE/ON/SINCE use the INTERNALDATE; date keys disregard time and
timezone as RFC 9051 asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from postar.imap import commands as c
from postar.imap import search as k
from postar.imap.response import ESearchData, SearchData, Tagged
from postar.imap.response import Status as S
from postar.imap.sequence import SequenceSet
from postar.mime.headers import decode_words, split_fields
from postar.mime.structure import Address, Envelope
from postar.store.interface import NotFound
from postar.store.model import MessageRecord

if TYPE_CHECKING:
    from postar.imap.mailbox_view import MailboxView
    from postar.imap.session import ImapSession


def _walk(key: k.SearchKey) -> list[k.SearchKey]:
    out: list[k.SearchKey] = [key]
    if isinstance(key, k.Not):
        out += _walk(key.key)
    elif isinstance(key, k.Or):
        out += _walk(key.left) + _walk(key.right)
    elif isinstance(key, k.And):
        for sub in key.keys:
            out += _walk(sub)
    return out


def _on(op: k.DateOp, day: date, target: date) -> bool:
    if op is k.DateOp.BEFORE:
        return day < target
    if op is k.DateOp.ON:
        return day == target
    return day >= target  # SINCE: "within or later than the specified date"


class _Evaluator:
    def __init__(self, session: ImapSession, view: MailboxView) -> None:
        self.session = session
        self.view = view
        self.text_hits: dict[tuple[str, bool], set[int]] = {}
        self.headers: dict[int, list[tuple[str, str]]] = {}
        self.envelopes: dict[int, Envelope] = {}
        self.blob_of: dict[int, str] = {}  # uid -> blob id, for the per-blob text cache
        # Flag sets repeat (a mailbox has a few combinations): each lowered once per search.
        self._lowered: dict[frozenset[str], frozenset[str]] = {}
        self._needles: dict[str, str] = {}  # search strings, casefolded once
        self.now = time.time()
        self.saved = set(session.saved_search or [])

    async def prepare(self, key: k.SearchKey, records: dict[int, MessageRecord]) -> None:
        """Ask the index for every TEXT/BODY string, and read header blocks if needed."""
        needs_headers = needs_envelope = False
        for node in _walk(key):
            if isinstance(node, k.Text):
                where = "body" if node.body_only else "text"
                hits = await self.session.store.search_text(self.view.id, node.value, where)
                self.text_hits[(node.value, node.body_only)] = hits
            elif isinstance(node, k.Header):
                needs_headers = True
            elif isinstance(node, k.EnvelopeContains) or (
                isinstance(node, k.DateCompare) and node.field is k.DateField.SENT
            ):
                needs_envelope = True
        if needs_envelope:
            cache = self.session.sort_cache
            for uid, record in records.items():
                self.envelopes[uid] = await cache.envelope(self.session, record.blob_id)
                self.blob_of[uid] = record.blob_id
        if needs_headers:
            for uid, record in records.items():
                try:
                    parsed = await self.session.parsed(record.blob_id)
                    block = await self.session.store.read_blob(
                        record.blob_id, 0, parsed.root.body_start, size=record.size
                    )
                except NotFound:
                    # Expunged by another session and its body already freed: this session
                    # has not been told yet (RFC 9051 7.5.1), so it stays, matching nothing.
                    continue
                self.headers[uid] = split_fields(block)

    def _field_values(self, uid: int, name: str) -> list[str]:
        name = name.lower()
        return [decode_words(v) for n, v in self.headers.get(uid, []) if n.lower() == name]

    def _envelope_values(self, uid: int, field: k.EnvelopeField) -> tuple[str, ...]:
        """The field's values decoded and casefolded, computed once per body and session
        (SortCache.texts): a client repeats its searches over the same messages."""
        env = self.envelopes.get(uid)
        if env is None:
            return ()
        texts = self.session.sort_cache.texts
        key = (self.blob_of[uid], field.value)
        known = texts.get(key)
        if known is not None:
            return known
        if field is k.EnvelopeField.SUBJECT:
            values = [decode_words(env.subject)] if env.subject is not None else []
        else:
            addresses = {
                k.EnvelopeField.FROM: env.from_,
                k.EnvelopeField.TO: env.to,
                k.EnvelopeField.CC: env.cc,
                k.EnvelopeField.BCC: env.bcc,
            }[field]
            values = [_address_text(a) for a in addresses if a.mailbox is not None]
        known = texts[key] = tuple(v.casefold() for v in values)
        self.session.sort_cache.trim()
        return known

    def _lower(self, flags: frozenset[str]) -> frozenset[str]:
        lowered = self._lowered.get(flags)
        if lowered is None:
            lowered = self._lowered[flags] = frozenset(f.lower() for f in flags)
        return lowered

    def match(self, key: k.SearchKey, seq: int, uid: int, record: MessageRecord | None) -> bool:
        """`record` is None when the criteria need nothing the view does not hold
        (`needs_records`). One call per key and message: dispatched by the key's type."""
        return _MATCHERS[type(key)](self, key, seq, uid, record)

    def _all(self, key: k.All, seq: int, uid: int, record: MessageRecord | None) -> bool:
        return True

    def _and(self, key: k.And, seq: int, uid: int, record: MessageRecord | None) -> bool:
        return all(self.match(sub, seq, uid, record) for sub in key.keys)

    def _or(self, key: k.Or, seq: int, uid: int, record: MessageRecord | None) -> bool:
        return self.match(key.left, seq, uid, record) or self.match(key.right, seq, uid, record)

    def _not(self, key: k.Not, seq: int, uid: int, record: MessageRecord | None) -> bool:
        return not self.match(key.key, seq, uid, record)

    def _flag(self, key: k.Flag, seq: int, uid: int, record: MessageRecord | None) -> bool:
        # The flags this client was told (the view's), which a refresh keeps current.
        flags = self.view.flags.get(uid)
        if flags is None:
            flags = record.flags if record is not None else frozenset()
        has = key.flag in flags or key.flag.lower() in self._lower(flags)
        return has == key.present

    def _recent(self, key: k.Recent, seq: int, uid: int, record: MessageRecord | None) -> bool:
        return (uid in self.view.recent) == key.present  # RFC 3501 \Recent, per session

    def _numbers(self, key: k.Numbers, seq: int, uid: int, record: MessageRecord | None) -> bool:
        if key.set.saved:
            return uid in self.saved
        if key.uid:
            top = self.view.uids[-1] if self.view.uids else 0
            return uid in key.set.resolve(top)
        return seq in key.set.resolve(self.view.exists)

    def _text(self, key: k.Text, seq: int, uid: int, record: MessageRecord | None) -> bool:
        return uid in self.text_hits[(key.value, key.body_only)]

    def _size(self, key: k.Size, seq: int, uid: int, record: MessageRecord | None) -> bool:
        assert record is not None, "needs_records() was not consulted"
        return record.size > key.octets if key.larger else record.size < key.octets

    def _age(self, key: k.Age, seq: int, uid: int, record: MessageRecord | None) -> bool:
        assert record is not None, "needs_records() was not consulted"
        age = self.now - record.internal_date
        return age >= key.seconds if key.older else age <= key.seconds

    def _modseq(self, key: k.ModSeq, seq: int, uid: int, record: MessageRecord | None) -> bool:
        assert record is not None, "needs_records() was not consulted"
        return max(record.modseq, self.view.modseqs.get(uid, 0)) >= key.modseq

    def _object_id(self, key: k.ObjectId, seq: int, uid: int, record: MessageRecord | None) -> bool:
        assert record is not None, "needs_records() was not consulted"
        value = record.email_id if key.kind == "EMAILID" else record.thread_id
        return value == key.value

    def _envelope(
        self, key: k.EnvelopeContains, seq: int, uid: int, record: MessageRecord | None
    ) -> bool:
        needle = self._needles.get(key.value)
        if needle is None:
            needle = self._needles[key.value] = key.value.casefold()
        return any(needle in v for v in self._envelope_values(uid, key.field))

    def _header(self, key: k.Header, seq: int, uid: int, record: MessageRecord | None) -> bool:
        values = self._field_values(uid, key.name)
        needle = key.value.casefold()
        return any(needle in v.casefold() for v in values)

    def _date(self, key: k.DateCompare, seq: int, uid: int, record: MessageRecord | None) -> bool:
        assert record is not None, "needs_records() was not consulted"
        if key.field is k.DateField.INTERNAL:
            day = datetime.fromtimestamp(record.internal_date, UTC).date()
        else:
            env = self.envelopes.get(uid)
            if env is None or not env.date:
                return False
            try:
                day = parsedate_to_datetime(env.date).date()
            except (TypeError, ValueError, IndexError):
                return False
        return _on(key.op, day, key.date)


_MATCHERS: dict[type, Callable[[_Evaluator, Any, int, int, MessageRecord | None], bool]] = {
    k.All: _Evaluator._all,
    k.And: _Evaluator._and,
    k.Or: _Evaluator._or,
    k.Not: _Evaluator._not,
    k.Flag: _Evaluator._flag,
    k.Recent: _Evaluator._recent,
    k.Numbers: _Evaluator._numbers,
    k.Text: _Evaluator._text,
    k.Size: _Evaluator._size,
    k.Age: _Evaluator._age,
    k.ModSeq: _Evaluator._modseq,
    k.ObjectId: _Evaluator._object_id,
    k.EnvelopeContains: _Evaluator._envelope,
    k.Header: _Evaluator._header,
    k.DateCompare: _Evaluator._date,
}


def _address_text(address: Address) -> str:
    """One envelope address as a person would search it: "Name <mailbox@host>", or the
    group's name for a group start (RFC 9051 7.5.2: host NIL)."""
    name = decode_words(address.name) if address.name else ""
    if address.host is None:
        return address.mailbox or ""
    spec = f"{address.mailbox}@{address.host}"
    return f"{name} <{spec}>" if name else spec


def uses_modseq(key: k.SearchKey) -> bool:
    return any(isinstance(n, k.ModSeq) for n in _walk(key))


# Keys the view alone answers: flags, \Recent, numbers, the saved result, and TEXT/BODY
# (the full-text index answers those by UID).
_VIEW_KEYS = (k.All, k.Flag, k.Recent, k.Numbers, k.Text, k.Not, k.Or, k.And)


def needs_records(key: k.SearchKey) -> bool:
    return not all(isinstance(n, _VIEW_KEYS) for n in _walk(key))


async def _records(
    session: ImapSession, view: MailboxView, fresh: bool
) -> dict[int, MessageRecord]:
    """The live messages' records. Size, dates, body and object ids never change for a UID,
    so the view keeps what it read once (`MailboxView.facts`) and asks the store only for
    messages it has not seen; MODSEQ changes, so a MODSEQ search reads everything afresh."""
    live = [u for u in view.uids if view.live(u)]
    facts = view.facts
    missing = [u for u in live if u not in facts]
    if fresh or len(missing) > len(live) // 2:
        found = await session.store.list_messages(view.id)
    else:
        found = await session.store.get_messages(view.id, missing) if missing else []
    for r in found:
        if r.uid in view.flags:
            facts[r.uid] = r
    return {u: facts[u] for u in live if u in facts}


async def run_search(session: ImapSession, criteria: k.SearchKey) -> list[tuple[int, int]]:
    """The (seq, uid) pairs of live messages matching `criteria`, ascending."""
    view = session.selected()
    evaluator = _Evaluator(session, view)
    hits: list[tuple[int, int]] = []
    if not needs_records(criteria):
        await evaluator.prepare(criteria, {})
        for seq, uid in enumerate(view.uids, start=1):
            if view.live(uid) and evaluator.match(criteria, seq, uid, None):
                hits.append((seq, uid))
        return hits
    records = await _records(session, view, fresh=uses_modseq(criteria))
    await evaluator.prepare(criteria, records)
    for seq, uid in enumerate(view.uids, start=1):
        record = records.get(uid)
        if record is not None and evaluator.match(criteria, seq, uid, record):
            hits.append((seq, uid))
    return hits


async def search(session: ImapSession, command: c.Search) -> Tagged:
    view = session.selected()
    modseq_used = uses_modseq(command.criteria)
    if modseq_used:
        session.condstore = True  # RFC 7162 3.1
    hits = await run_search(session, command.criteria)
    numbers = [u if command.uid else s for s, u in hits]
    modseq = None
    if modseq_used and hits:
        # RFC 7162 3.1.5: the highest MODSEQ of the messages found.
        modseq = max(view.modseqs.get(u, 0) for _, u in hits)
    returns = command.returns
    if returns is None and session.rev2:
        returns = (k.SearchReturn.ALL,)  # RFC 9051 6.4.4: IMAP4rev2 answers with ESEARCH
    if returns is None:
        await session.send(SearchData(numbers, modseq))
        return Tagged(command.tag, S.OK, "SEARCH completed")
    opts = set(returns)
    if k.SearchReturn.SAVE in opts:
        # RFC 5182 2.1: the saved result is kept as messages (UIDs), whatever the form.
        session.saved_search = [u for _, u in hits]
        opts.discard(k.SearchReturn.SAVE)
        if not opts:
            return Tagged(command.tag, S.OK, "SEARCH completed, result saved")
    await session.send(
        ESearchData(
            command.tag,
            command.uid,
            min=min(numbers) if numbers and k.SearchReturn.MIN in opts else None,
            max=max(numbers) if numbers and k.SearchReturn.MAX in opts else None,
            all=(
                SequenceSet.from_numbers(numbers)
                if numbers and k.SearchReturn.ALL in opts
                else None
            ),
            count=len(numbers) if k.SearchReturn.COUNT in opts else None,
            modseq=modseq,
        )
    )
    return Tagged(command.tag, S.OK, "SEARCH completed")
