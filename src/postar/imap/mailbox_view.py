"""The selected mailbox as one session sees it: UID <-> message sequence number map, the
flags last announced, and the changes other sessions made that are still to be announced.

Theory of operation
-------------------
A session's view is a snapshot taken at SELECT. `refresh()` brings it up to date from the
store with `mailbox_delta` from the view's synced MODSEQ (one snapshot, costing what changed,
done only when the change feed said the mailbox changed, or at NOOP/IDLE). What it finds is
held as pending news; `announce()` turns it into untagged responses when the protocol allows:

- New messages are added at once (EXISTS may be sent at any time, RFC 9051 7.3.1).
- Flag changes made elsewhere become unsolicited FETCH (FLAGS) responses (RFC 9051 7.5.2).
- Expunged messages stay in the view as ghosts, keeping their sequence numbers, until an
  EXPUNGE (or QRESYNC VANISHED) may be sent: never while answering FETCH, STORE or SEARCH
  and never when no command is in progress (RFC 9051 7.5.1), so a client's sequence numbers
  never shift under it in the middle of a command.

Invariants
----------
- `uids` is ascending; a message's sequence number is its index + 1 (ghosts included).
- `flags` holds what this client was last told; a change equal to it is not re-announced, so
  the session's own STORE (already answered) is not echoed back by the next refresh.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from postar.imap.fetch import FetchItem
from postar.imap.response import (
    ExistsData,
    ExpungeData,
    FetchData,
    FetchValue,
    FlagsItem,
    NumberItem,
    RecentData,
    Response,
    VanishedData,
)
from postar.imap.sequence import SequenceSet
from postar.store.interface import Store
from postar.store.model import Mailbox, MessageRecord


class MailboxGone(Exception):
    """The selected mailbox was deleted by another session."""


@dataclass
class MailboxView:
    mailbox: Mailbox  # as at SELECT: its id, name and UIDVALIDITY; counters below are current
    read_only: bool
    uids: list[int] = field(default_factory=list)
    flags: dict[int, frozenset[str]] = field(default_factory=dict)
    modseqs: dict[int, int] = field(default_factory=dict)
    synced_modseq: int = 0
    uidnext: int = 1
    # Pending news: expunged UIDs not yet announced, UIDs whose flags changed elsewhere.
    ghosts: set[int] = field(default_factory=set)
    flag_news: set[int] = field(default_factory=set)
    announced_exists: int = 0
    # RFC 3501 \Recent, kept for this session only: the UIDs it claimed (store.claim_recent),
    # the highest UID it has considered, and whether the client is rev1 (rev2 has no \Recent).
    recent: set[int] = field(default_factory=set)
    recent_top: int = 0
    show_recent: bool = False
    # Records SEARCH has read, kept for what never changes for a UID (size, INTERNALDATE,
    # body, object ids); their flags and MODSEQ may be stale, `flags`/`modseqs` are not.
    facts: dict[int, MessageRecord] = field(default_factory=dict)

    @classmethod
    def from_records(
        cls, mailbox: Mailbox, records: list[MessageRecord], *, read_only: bool
    ) -> MailboxView:
        view = cls(mailbox, read_only)
        for r in records:
            view.uids.append(r.uid)
            view.flags[r.uid] = r.flags
            view.modseqs[r.uid] = r.modseq
        view.synced_modseq = mailbox.highestmodseq
        view.uidnext = max(mailbox.uidnext, (view.uids[-1] + 1) if view.uids else 1)
        view.announced_exists = len(view.uids)
        return view

    # -- numbers -----------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def id(self) -> int:
        return self.mailbox.id

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def live(self, uid: int) -> bool:
        return uid in self.flags and uid not in self.ghosts

    def by_sequence(self, seqs: SequenceSet) -> list[tuple[int, int]] | None:
        """(seq, uid) pairs of a message-number set; None if a number is beyond EXISTS
        (RFC 9051 section 9: "a number ... greater than the number of messages" is invalid).
        "*" in an empty mailbox names nothing."""
        if not self.uids:
            return [] if seqs.uses_star else None
        resolved = seqs.resolve(len(self.uids))
        top = resolved.max
        if top is not None and top > len(self.uids):
            return None
        out: list[tuple[int, int]] = []
        for first, last in resolved.ranges():
            out.extend((n, self.uids[n - 1]) for n in range(first, last + 1))
        return out

    def by_uid(self, uids: SequenceSet) -> list[tuple[int, int]]:
        """(seq, uid) pairs of the messages a UID set names; UIDs not present are ignored
        (RFC 9051 6.4.9). "*" is the highest UID in use, so "n:*" always names it."""
        if not self.uids:
            return []
        resolved = uids.resolve(self.uids[-1])
        out: list[tuple[int, int]] = []
        for first, last in resolved.ranges():
            lo = bisect.bisect_left(self.uids, first)
            hi = bisect.bisect_right(self.uids, last)
            out.extend((i + 1, self.uids[i]) for i in range(lo, hi))
        return out

    def by_uid_list(self, uids: list[int]) -> list[tuple[int, int]]:
        out = []
        for uid in sorted(uids):
            seq = self.seq_of(uid)
            if seq is not None:
                out.append((seq, uid))
        return out

    def flags_of(self, uid: int) -> tuple[str, ...]:
        r"""The FLAGS a client is told: stored flags, plus \Recent for a rev1 client."""
        flags = sorted(self.flags[uid])
        if self.show_recent and uid in self.recent:
            flags.append("\\Recent")
        return tuple(flags)

    def claim_recent(self, old_mark: int) -> None:
        """Messages above both the store's mark (before this session's claim) and what this
        session already considered become recent to it (RFC 3501 2.3.2)."""
        floor = max(old_mark, self.recent_top)
        self.recent.update(self.uids[bisect.bisect_right(self.uids, floor) :])
        self.recent_top = max(self.recent_top, self.uids[-1] if self.uids else 0)

    def keywords(self) -> set[str]:
        found: set[str] = set()
        for f in self.flags.values():
            found.update(x for x in f if not x.startswith("\\"))
        return found

    # -- changes -----------------------------------------------------------------------------

    def apply_own(self, records: list[MessageRecord]) -> None:
        """Flags this session changed itself and will answer for."""
        for r in records:
            if r.uid in self.flags:
                self.flags[r.uid] = r.flags
                self.modseqs[r.uid] = r.modseq
                self.flag_news.discard(r.uid)

    def mark_expunged(self, uids: list[int]) -> None:
        for uid in uids:
            if uid in self.flags:
                self.ghosts.add(uid)

    async def refresh(self, store: Store) -> None:
        """Read what changed since the last refresh (see the module docstring)."""
        since = self.synced_modseq
        # One snapshot: the mailbox's MODSEQ and the changes up to it, so nothing committed
        # later falls between two refreshes (it has a larger MODSEQ and is read next time).
        delta = await store.mailbox_delta(self.mailbox.id, since)
        if delta is None or delta.noselect:
            raise MailboxGone
        top = self.uids[-1] if self.uids else 0
        gone = set(delta.expunged)
        for r in delta.changed:
            if r.uid in gone:
                continue
            if r.uid in self.flags:
                self.modseqs[r.uid] = r.modseq
                if self.flags[r.uid] != r.flags and r.uid not in self.ghosts:
                    self.flags[r.uid] = r.flags
                    self.flag_news.add(r.uid)
            elif r.uid > top:
                # UIDs only grow (RFC 9051 2.3.1.1): anything above our top is new.
                self.uids.append(r.uid)
                self.flags[r.uid] = r.flags
                self.modseqs[r.uid] = r.modseq
                top = r.uid
        for uid in delta.expunged:
            if uid in self.flags:
                self.ghosts.add(uid)
        self.synced_modseq = max(since, delta.highestmodseq)
        self.uidnext = max(self.uidnext, delta.uidnext, top + 1)

    def announce(self, *, expunge: bool, qresync: bool, condstore: bool) -> list[Response]:
        """Untagged responses for the pending news; expunges only when `expunge` is allowed."""
        out: list[Response] = []
        if expunge and self.ghosts:
            gone = sorted(self.ghosts)
            if qresync:
                # RFC 7162 3.2.10: after ENABLE QRESYNC, VANISHED replaces EXPUNGE.
                out.append(VanishedData(SequenceSet.from_numbers(gone)))
            else:
                # Highest first, so each number is still valid when the client reads it.
                out.extend(ExpungeData(self.seq_of(uid) or 0) for uid in reversed(gone))
            keep = [u for u in self.uids if u not in self.ghosts]
            for uid in gone:
                self.flags.pop(uid, None)
                self.modseqs.pop(uid, None)
                self.facts.pop(uid, None)
                self.recent.discard(uid)
                self.flag_news.discard(uid)
            self.uids = keep
            self.ghosts.clear()
            self.announced_exists = len(self.uids)
        if len(self.uids) != self.announced_exists:
            # EXISTS never decreases without EXPUNGE (RFC 9051 7.3.1); ghosts keep the count.
            if len(self.uids) > self.announced_exists:
                out.append(ExistsData(len(self.uids)))
                if self.show_recent:
                    # RFC 3501 7.3.2: the new messages are recent to this session.
                    out.append(RecentData(len(self.recent)))
            self.announced_exists = len(self.uids)
        for uid in sorted(self.flag_news):
            seq = self.seq_of(uid)
            if seq is None or uid in self.ghosts:
                continue
            items: list[FetchValue] = [
                FlagsItem(self.flags_of(uid)),
                NumberItem(FetchItem.UID, uid),
            ]
            if condstore:
                items.append(NumberItem(FetchItem.MODSEQ, self.modseqs[uid]))
            out.append(FetchData(seq, tuple(items)))
        self.flag_news.clear()
        return out
