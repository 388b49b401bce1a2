"""The in-process change feed: committed mailbox changes fanned out to subscribers.

Invariants:
- publish() runs on the event loop thread; a writer thread hands changes over with
  loop.call_soon_threadsafe, after its COMMIT, never before.
- Memory per subscriber is bounded: pending changes are coalesced per mailbox (the newest
  modseq wins, which is all IDLE needs), and past MAX_PENDING distinct mailboxes they collapse
  into one RESYNC_ALL change. A slow subscriber loses detail, never correctness.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from postar.store.model import RESYNC_ALL, MailboxChange

MAX_PENDING = 256


class Subscription(AsyncIterator[MailboxChange]):
    """One subscriber's view of an account's changes; registered from creation on, so a
    change committed after store.changes() returned is never missed."""

    def __init__(self, feed: ChangeFeed, account_id: int) -> None:
        self._feed = feed
        self.account_id = account_id
        self._pending: dict[int, MailboxChange] = {}
        self._wakeup = asyncio.Event()
        self._closed = False

    def _push(self, change: MailboxChange) -> None:
        if RESYNC_ALL in self._pending:
            # Already told to re-read everything: keep only the newest modseq.
            change = MailboxChange(change.account_id, RESYNC_ALL, change.modseq)
        self._pending.pop(change.mailbox_id, None)  # re-insert: order by latest change
        self._pending[change.mailbox_id] = change
        if len(self._pending) > MAX_PENDING:
            newest = max(c.modseq for c in self._pending.values())
            self._pending = {RESYNC_ALL: MailboxChange(self.account_id, RESYNC_ALL, newest)}
        self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> MailboxChange:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        key = next(iter(self._pending))
        return self._pending.pop(key)

    def pending(self) -> int:
        return len(self._pending)

    async def aclose(self) -> None:
        self._feed._unsubscribe(self)
        self._end()


class ChangeFeed:
    def __init__(self) -> None:
        self._subscribers: dict[int, set[Subscription]] = {}

    def subscribe(self, account_id: int) -> Subscription:
        sub = Subscription(self, account_id)
        self._subscribers.setdefault(account_id, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.account_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.account_id]

    def publish(self, changes: Iterable[MailboxChange]) -> None:
        for change in changes:
            for sub in self._subscribers.get(change.account_id, ()):
                sub._push(change)

    def close(self) -> None:
        """End every subscription (store shutdown): iterators finish after their backlog."""
        for subs in self._subscribers.values():
            for sub in subs:
                sub._end()
        self._subscribers.clear()
