"""Mailbox hierarchy, UIDVALIDITY, subscriptions, rename and delete (RFC 9051 6.3)."""

from __future__ import annotations

import asyncio

import pytest

from postar.store.interface import (
    AlreadyExists,
    InvalidName,
    MailboxNotSelectable,
    NotFound,
    Store,
    StoreError,
)
from postar.store.model import Account, DeliveryTarget, FlagMode
from tests.unit.store.store_helpers import make_message


async def _deliver(store: Store, account: Account, mailbox: str = "INBOX", n: int = 1) -> None:
    for _ in range(n):
        raw, parsed = make_message()
        await store.deliver(raw, parsed, [DeliveryTarget(account.id, mailbox)])


async def test_inbox_is_case_insensitive(store: Store, alice: Account) -> None:
    for spelling in ("INBOX", "inbox", "InBoX"):
        found = await store.get_mailbox(alice.id, spelling)
        assert found is not None and found.name == "INBOX"
    child = await store.create_mailbox(alice.id, "inbox/Receipts")
    assert child.name == "INBOX/Receipts"
    assert await store.get_mailbox(alice.id, "sent") is None  # only INBOX folds case


async def test_create_makes_parents_and_refuses_duplicates(store: Store, alice: Account) -> None:
    created = await store.create_mailbox(alice.id, "Work/2026/Q4", special_use="\\Archive")
    assert created.special_use == "\\Archive" and created.uidnext == 1 and created.messages == 0
    for name in ("Work", "Work/2026"):
        parent = await store.get_mailbox(alice.id, name)
        assert parent is not None and not parent.noselect
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(alice.id, "Work/2026")
    for bad in ("", "a//b", "/a", "a/", "a\r\nb"):
        with pytest.raises(InvalidName):
            await store.create_mailbox(alice.id, bad)


async def test_uidvalidity_changes_when_a_name_is_recreated(store: Store, alice: Account) -> None:
    first = await store.create_mailbox(alice.id, "Lists")
    await _deliver(store, alice, "Lists", 2)
    await store.delete_mailbox(alice.id, "Lists")
    second = await store.create_mailbox(alice.id, "Lists")
    assert second.uidvalidity != first.uidvalidity
    assert second.uidvalidity > 0 and second.uidvalidity < 2**32
    assert second.uidnext == 1 and second.messages == 0


async def test_delete_leaf_and_inbox(store: Store, alice: Account) -> None:
    await store.create_mailbox(alice.id, "Old")
    await _deliver(store, alice, "Old", 3)
    await store.delete_mailbox(alice.id, "Old")
    assert await store.get_mailbox(alice.id, "Old") is None
    assert await store.quota_usage(alice.id) == (0, 0)
    with pytest.raises(NotFound):
        await store.delete_mailbox(alice.id, "Old")
    with pytest.raises(StoreError):
        await store.delete_mailbox(alice.id, "inbox")


async def test_delete_with_children_leaves_noselect(store: Store, alice: Account) -> None:
    await store.create_mailbox(alice.id, "Projects/Postar")
    await _deliver(store, alice, "Projects", 2)
    await store.delete_mailbox(alice.id, "Projects")
    parent = await store.get_mailbox(alice.id, "Projects")
    assert parent is not None and parent.noselect and parent.messages == 0
    assert await store.get_mailbox(alice.id, "Projects/Postar") is not None
    # RFC 9051 6.3.4: deleting a \Noselect name that has inferiors is an error.
    with pytest.raises(MailboxNotSelectable):
        await store.delete_mailbox(alice.id, "Projects")
    # Delivery to a \Noselect mailbox falls back to INBOX; APPEND is refused.
    await _deliver(store, alice, "Projects")
    inbox = await store.get_mailbox(alice.id, "INBOX")
    assert inbox is not None and inbox.messages == 1
    raw, parsed = make_message()
    with pytest.raises(MailboxNotSelectable):
        await store.append(alice.id, parent.id, raw, parsed)
    # CREATE on the placeholder makes it real again; UIDs are never reused.
    again = await store.create_mailbox(alice.id, "Projects")
    assert not again.noselect and again.uidnext == 3
    await store.delete_mailbox(alice.id, "Projects/Postar")
    await store.delete_mailbox(alice.id, "Projects")
    assert await store.get_mailbox(alice.id, "Projects") is None


async def test_rename_moves_children_and_keeps_uidvalidity(store: Store, alice: Account) -> None:
    work = await store.create_mailbox(alice.id, "Work")
    await store.create_mailbox(alice.id, "Work/Clients/Acme")
    await store.create_mailbox(alice.id, "Workshop")  # shares a prefix, not a child
    await store.set_subscribed(alice.id, "Work/Clients", True)
    await _deliver(store, alice, "Work", 2)
    await store.rename_mailbox(alice.id, "Work", "Archive/2026/Work")
    names = {m.name for m in await store.list_mailboxes(alice.id)}
    assert {"Archive/2026", "Archive/2026/Work", "Archive/2026/Work/Clients"} <= names
    assert "Archive/2026/Work/Clients/Acme" in names
    assert not {"Work", "Work/Clients", "Work/Clients/Acme"} & names
    assert "Workshop" in names
    moved = await store.get_mailbox(alice.id, "Archive/2026/Work")
    assert moved is not None
    assert (moved.id, moved.uidvalidity, moved.messages) == (work.id, work.uidvalidity, 2)
    subs = await store.list_subscriptions(alice.id)
    assert "Archive/2026/Work/Clients" in subs and "Work/Clients" not in subs


async def test_rename_refusals(store: Store, alice: Account) -> None:
    await store.create_mailbox(alice.id, "A/B")
    with pytest.raises(NotFound):
        await store.rename_mailbox(alice.id, "Nope", "Other")
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(alice.id, "A/B", "Sent")
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(alice.id, "A", "inbox")
    with pytest.raises(InvalidName):
        await store.rename_mailbox(alice.id, "A", "A/B/C")


async def test_rename_inbox_moves_messages(store: Store, alice: Account) -> None:
    await store.create_mailbox(alice.id, "INBOX/Child")
    await _deliver(store, alice, "INBOX", 3)
    inbox = await store.get_mailbox(alice.id, "INBOX")
    assert inbox is not None and inbox.messages == 3
    await store.rename_mailbox(alice.id, "INBOX", "Old Mail")
    after = await store.get_mailbox(alice.id, "INBOX")
    old = await store.get_mailbox(alice.id, "Old Mail")
    assert after is not None and old is not None
    assert after.id == inbox.id and after.messages == 0 and after.uidvalidity == inbox.uidvalidity
    assert after.uidnext == inbox.uidnext  # UIDs of INBOX are not reused
    assert old.messages == 3 and [m.uid for m in await store.list_messages(old.id)] == [1, 2, 3]
    assert await store.expunged_since(inbox.id, inbox.highestmodseq) == [1, 2, 3]
    assert await store.get_mailbox(alice.id, "INBOX/Child") is not None  # RFC 9051 6.3.6


async def test_subscriptions_are_names(store: Store, alice: Account) -> None:
    await store.set_subscribed(alice.id, "Not/Yet/There", True)
    await store.set_subscribed(alice.id, "Not/Yet/There", True)  # idempotent
    await store.set_subscribed(alice.id, "Junk", False)
    subs = await store.list_subscriptions(alice.id)
    assert "Not/Yet/There" in subs and "Junk" not in subs
    await store.create_mailbox(alice.id, "Gone")
    await store.set_subscribed(alice.id, "Gone", True)
    await store.delete_mailbox(alice.id, "Gone")
    # RFC 9051 6.3.7: the subscription outlives the mailbox.
    assert "Gone" in await store.list_subscriptions(alice.id)
    junk = await store.get_mailbox(alice.id, "Junk")
    assert junk is not None and not junk.subscribed


async def test_mailbox_counts(store: Store, alice: Account) -> None:
    await _deliver(store, alice, "INBOX", 4)
    inbox = await store.get_mailbox(alice.id, "INBOX")
    assert inbox is not None
    await store.set_flags(inbox.id, [1, 3], FlagMode.ADD, ["\\Seen"])
    await store.set_flags(inbox.id, [2], FlagMode.ADD, ["\\Deleted"])
    inbox = await store.get_mailbox_by_id(inbox.id)
    assert inbox is not None
    assert (inbox.messages, inbox.unseen, inbox.deleted) == (4, 2, 1)
    assert inbox.first_unseen_uid == 2
    assert inbox.size == sum(m.size for m in await store.list_messages(inbox.id))
    assert inbox.uidnext == 5


async def test_mailbox_without_counts_is_the_same_row(store: Store, alice: Account) -> None:
    await _deliver(store, alice, "INBOX", 3)
    counted = await store.get_mailbox(alice.id, "INBOX")
    light = await store.get_mailbox(alice.id, "inbox", counts=False)
    assert counted is not None and light is not None
    assert counted.messages == 3 and light.messages == 0 and light.first_unseen_uid is None
    same = ("id", "name", "uidvalidity", "uidnext", "highestmodseq", "subscribed", "noselect")
    assert all(getattr(light, f) == getattr(counted, f) for f in same)
    assert await store.get_mailbox(alice.id, "Nowhere", counts=False) is None


async def test_claim_recent_gives_each_message_to_one_claimer(store: Store, alice: Account) -> None:
    # RFC 3501 2.3.2: concurrent SELECTs must not both get the same message as recent.
    inbox = await store.get_mailbox(alice.id, "INBOX")
    assert inbox is not None
    await _deliver(store, alice, n=3)
    assert await store.claim_recent(inbox.id, 0) == 0  # a read: nothing claimed yet
    olds = await asyncio.gather(*(store.claim_recent(inbox.id, 3) for _ in range(5)))
    assert sorted(olds) == [0, 3, 3, 3, 3]
    await _deliver(store, alice)
    assert await store.claim_recent(inbox.id, 4) == 3
    assert await store.claim_recent(inbox.id, 2) == 4  # the mark never goes down
    assert await store.claim_recent(inbox.id, 0) == 4
    with pytest.raises(NotFound):
        await store.claim_recent(10_000, 1)
