"""Delivery, APPEND, flags, expunge, COPY/MOVE, quota, threads, search (RFC 9051, 7162, 4315)."""

from __future__ import annotations

import asyncio

import pytest

from postar.mime.parser import parse_message
from postar.store.interface import (
    InvalidName,
    MailboxNotSelectable,
    NotFound,
    QuotaExceeded,
    Store,
)
from postar.store.model import Account, DeliveryTarget, FlagMode, Mailbox, QueuedRecipient
from tests.unit.store.store_helpers import make_message


async def _inbox(store: Store, account: Account) -> Mailbox:
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    return inbox


async def test_deliver_to_many_recipients_stores_one_body(
    store: Store, alice: Account, bob: Account
) -> None:
    raw, parsed = make_message("Team lunch", "Friday at noon")
    await store.create_mailbox(alice.id, "Lists")
    delivered = await store.deliver(
        raw,
        parsed,
        [
            DeliveryTarget(alice.id),
            DeliveryTarget(bob.id, flags=frozenset({"\\seen", "$Label1"})),
            DeliveryTarget(alice.id, "Lists"),
            DeliveryTarget(bob.id, "No/Such/Folder"),  # falls back to INBOX
        ],
        internal_date=1_790_000_000.0,
    )
    assert [(d.account_id, d.uid) for d in delivered] == [
        (alice.id, 1),
        (bob.id, 1),
        (alice.id, 1),
        (bob.id, 2),
    ]
    records = [(await store.get_messages(d.mailbox_id, [d.uid]))[0] for d in delivered]
    assert len({r.blob_id for r in records}) == 1
    assert len({r.email_id for r in records}) == 4
    assert records[1].flags == {"\\Seen", "$Label1"}
    assert records[0].internal_date == 1_790_000_000.0 and records[0].size == len(raw)
    assert await store.read_blob(records[0].blob_id) == raw
    got = await store.get_parsed(records[0].blob_id)
    assert got.envelope == parsed.envelope and got.root.body_start == parsed.root.body_start


async def test_read_blob_range(store: Store, alice: Account) -> None:
    raw, parsed = make_message(pad_to=10_000)
    [d] = await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    [record] = await store.get_messages(d.mailbox_id, [d.uid])
    assert await store.read_blob(record.blob_id, 100, 50) == raw[100:150]
    assert await store.read_blob(record.blob_id, 9_990) == raw[9_990:]
    assert await store.read_blob(record.blob_id, 20_000, 10) == b""
    with pytest.raises(NotFound):
        await store.read_blob("0" * 64)
    with pytest.raises(NotFound):
        await store.get_parsed("0" * 64)


async def test_uids_and_modseq_grow(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    seen_modseqs = [inbox.highestmodseq]
    for expected_uid in (1, 2, 3):
        raw, parsed = make_message()
        record = await store.append(alice.id, inbox.id, raw, parsed, ["\\Draft"])
        assert record.uid == expected_uid and record.flags == {"\\Draft"}
        seen_modseqs.append(record.modseq)
    assert seen_modseqs == sorted(set(seen_modseqs))  # strictly increasing
    await store.expunge(inbox.id, [3])
    raw, parsed = make_message()
    record = await store.append(alice.id, inbox.id, raw, parsed)
    assert record.uid == 4  # a UID is never reused
    inbox = await _inbox(store, alice)
    assert inbox.uidnext == 5 and inbox.highestmodseq == record.modseq


async def test_append_refusals(store: Store, alice: Account, bob: Account) -> None:
    raw, parsed = make_message()
    bob_inbox = await _inbox(store, bob)
    with pytest.raises(NotFound):
        await store.append(alice.id, bob_inbox.id, raw, parsed)
    with pytest.raises(NotFound):
        await store.append(alice.id, 999_999, raw, parsed)
    with pytest.raises(InvalidName):
        await store.append(alice.id, bob_inbox.id, raw, parsed, ["bad flag"])


async def test_set_flags_modes_and_canonical_system_flags(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    for _ in range(3):
        raw, parsed = make_message()
        await store.append(alice.id, inbox.id, raw, parsed)
    changed, refused = await store.set_flags(
        inbox.id, [1, 2, 99], FlagMode.ADD, ["\\SEEN", "$Important"]
    )
    assert refused == [] and [r.uid for r in changed] == [1, 2]
    assert changed[0].flags == {"\\Seen", "$Important"}
    modseq = changed[0].modseq
    # The same change again is a no-op: no record, no new MODSEQ.
    again, _ = await store.set_flags(inbox.id, [1, 2], FlagMode.ADD, ["\\seen", "$important"])
    assert again == []
    assert (await _inbox(store, alice)).highestmodseq == modseq
    removed, _ = await store.set_flags(inbox.id, [1], FlagMode.REMOVE, ["$IMPORTANT"])
    assert removed[0].flags == {"\\Seen"} and removed[0].modseq > modseq
    replaced, _ = await store.set_flags(inbox.id, [2], FlagMode.REPLACE, ["\\Flagged"])
    assert replaced[0].flags == {"\\Flagged"}
    [one, two, three] = await store.list_messages(inbox.id)
    assert (one.flags, two.flags, three.flags) == ({"\\Seen"}, {"\\Flagged"}, frozenset())
    assert (await _inbox(store, alice)).highestmodseq == replaced[0].modseq


async def test_unchangedsince(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    for _ in range(2):
        raw, parsed = make_message()
        await store.append(alice.id, inbox.id, raw, parsed)
    second = (await store.list_messages(inbox.id))[1]
    changed, _ = await store.set_flags(inbox.id, [2], FlagMode.ADD, ["\\Answered"])
    # RFC 7162 3.1.3: message 2 changed after second.modseq, so it is refused.
    changed, refused = await store.set_flags(
        inbox.id, [1, 2], FlagMode.ADD, ["\\Flagged"], unchanged_since=second.modseq
    )
    assert [r.uid for r in changed] == [1] and refused == [2]
    _, refused = await store.set_flags(inbox.id, [1], FlagMode.ADD, ["$x"], unchanged_since=0)
    assert refused == [1]


async def test_changed_since(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    for _ in range(3):
        raw, parsed = make_message()
        await store.append(alice.id, inbox.id, raw, parsed)
    mark = (await _inbox(store, alice)).highestmodseq
    await store.set_flags(inbox.id, [2], FlagMode.ADD, ["\\Seen"])
    assert [r.uid for r in await store.changed_since(inbox.id, mark)] == [2]
    assert len(await store.changed_since(inbox.id, 0)) == 3


async def test_mailbox_delta_is_changes_and_expunges_since(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    for _ in range(4):
        raw, parsed = make_message()
        await store.append(alice.id, inbox.id, raw, parsed)
    mark = (await _inbox(store, alice)).highestmodseq
    nothing = await store.mailbox_delta(inbox.id, mark)
    assert nothing is not None and nothing.changed == () and nothing.expunged == ()
    assert nothing.highestmodseq == mark and nothing.uidnext == 5 and not nothing.noselect
    await store.set_flags(inbox.id, [2], FlagMode.ADD, ["\\Seen"])
    await store.expunge(inbox.id, [3])
    raw, parsed = make_message()
    await store.append(alice.id, inbox.id, raw, parsed)
    delta = await store.mailbox_delta(inbox.id, mark)
    assert delta is not None
    assert [r.uid for r in delta.changed] == [2, 5] and delta.expunged == (3,)
    assert delta.changed[0].flags == {"\\Seen"}
    now = await _inbox(store, alice)
    assert (delta.uidnext, delta.highestmodseq) == (now.uidnext, now.highestmodseq)
    assert await store.mailbox_delta(999_999, 0) is None


async def test_mailbox_delta_larger_than_an_inline_read(store: Store, alice: Account) -> None:
    # More changed rows than one read on the loop's thread takes: the whole delta still comes.
    inbox = await _inbox(store, alice)
    count = 300
    for _ in range(count):
        raw, parsed = make_message()
        await store.append(alice.id, inbox.id, raw, parsed)
    mark = (await _inbox(store, alice)).highestmodseq
    await store.set_flags(inbox.id, range(1, count + 1), FlagMode.ADD, ["\\Deleted"])
    await store.expunge(inbox.id)
    delta = await store.mailbox_delta(inbox.id, 0)
    assert delta is not None and delta.changed == ()
    assert delta.expunged == tuple(range(1, count + 1))
    since_mark = await store.mailbox_delta(inbox.id, mark)
    assert since_mark is not None and len(since_mark.expunged) == count


async def test_expunge_deleted_and_log(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    for _ in range(5):
        raw, parsed = make_message()
        await store.append(alice.id, inbox.id, raw, parsed)
    before = (await _inbox(store, alice)).highestmodseq
    await store.set_flags(inbox.id, [2, 4], FlagMode.ADD, ["\\Deleted"])
    assert await store.expunge(inbox.id) == [2, 4]
    assert await store.expunge(inbox.id) == []
    middle = (await _inbox(store, alice)).highestmodseq
    assert await store.expunge(inbox.id, [5, 1, 77]) == [1, 5]
    assert [m.uid for m in await store.list_messages(inbox.id)] == [3]
    assert await store.expunged_since(inbox.id, before) == [1, 2, 4, 5]
    assert await store.expunged_since(inbox.id, middle) == [1, 5]
    assert (await _inbox(store, alice)).highestmodseq > middle
    used, _ = await store.quota_usage(alice.id)
    assert used == (await store.list_messages(inbox.id))[0].size


async def test_copy_keeps_email_id_and_gives_new_uids(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    archive = await store.get_mailbox(alice.id, "Archive")
    assert archive is not None
    for _ in range(3):
        raw, parsed = make_message()
        await store.append(alice.id, inbox.id, raw, parsed, ["$Keep"])
    raw, parsed = make_message()
    await store.append(alice.id, archive.id, raw, parsed)
    pairs = await store.copy_messages(inbox.id, [3, 1, 42], archive.id)
    assert pairs == [(1, 2), (3, 3)]  # UIDPLUS COPYUID: source order, new UIDs
    src = {m.uid: m for m in await store.list_messages(inbox.id)}
    dst = {m.uid: m for m in await store.list_messages(archive.id)}
    assert len(src) == 3
    for old, new in pairs:
        assert dst[new].email_id == src[old].email_id
        assert dst[new].blob_id == src[old].blob_id and dst[new].flags == {"$Keep"}
    used, _ = await store.quota_usage(alice.id)
    assert used == sum(m.size for m in src.values()) + sum(m.size for m in dst.values())


async def test_move_is_copy_plus_expunge(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    trash = await store.get_mailbox(alice.id, "Trash")
    assert trash is not None
    for _ in range(3):
        raw, parsed = make_message()
        await store.append(alice.id, inbox.id, raw, parsed)
    before = {m.uid: m for m in await store.list_messages(inbox.id)}
    mark = (await _inbox(store, alice)).highestmodseq
    pairs = await store.move_messages(inbox.id, [2, 3], trash.id)
    assert pairs == [(2, 1), (3, 2)]
    assert [m.uid for m in await store.list_messages(inbox.id)] == [1]
    moved = await store.list_messages(trash.id)
    assert [m.email_id for m in moved] == [before[2].email_id, before[3].email_id]
    assert await store.expunged_since(inbox.id, mark) == [2, 3]
    used, _ = await store.quota_usage(alice.id)
    assert used == sum(m.size for m in before.values())
    with pytest.raises(NotFound):
        await store.move_messages(inbox.id, [1], 999_999)


async def test_quota_deliver_skips_append_refuses(
    store: Store, alice: Account, bob: Account
) -> None:
    raw, parsed = make_message(pad_to=1000)
    await store.set_quota("alice@example.org", 2500)
    first = await store.deliver(raw, parsed, [DeliveryTarget(alice.id), DeliveryTarget(bob.id)])
    assert len(first) == 2
    raw2, parsed2 = make_message(pad_to=1000)
    # Alice has room for one more copy, not two: the second target is skipped.
    second = await store.deliver(
        raw2, parsed2, [DeliveryTarget(alice.id), DeliveryTarget(alice.id, "Archive")]
    )
    assert [d.account_id for d in second] == [alice.id]
    raw3, parsed3 = make_message(pad_to=1000)
    third = await store.deliver(raw3, parsed3, [DeliveryTarget(alice.id), DeliveryTarget(bob.id)])
    assert [d.account_id for d in third] == [bob.id]
    with pytest.raises(QuotaExceeded):
        await store.deliver(raw3, parsed3, [DeliveryTarget(alice.id)])
    inbox = await _inbox(store, alice)
    with pytest.raises(QuotaExceeded):
        await store.append(alice.id, inbox.id, raw3, parsed3)
    with pytest.raises(QuotaExceeded):
        await store.copy_messages(inbox.id, [1, 2], inbox.id)
    used, limit = await store.quota_usage(alice.id)
    assert used == 2 * len(raw) and limit == 2500
    # MOVE within the account does not grow usage, so it is allowed even when full.
    archive = await store.get_mailbox(alice.id, "Archive")
    assert archive is not None
    assert len(await store.move_messages(inbox.id, [1], archive.id)) == 1


async def test_threads_follow_references(store: Store, alice: Account, bob: Account) -> None:
    raw, parsed = make_message("Plans", message_id="<root@example.net>")
    [root, _] = await store.deliver(raw, parsed, [DeliveryTarget(alice.id), DeliveryTarget(bob.id)])
    raw, parsed = make_message(
        "Re: Plans", message_id="<reply@example.net>", in_reply_to="<root@example.net>"
    )
    [reply] = await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    raw, parsed = make_message(
        "Re: Re: Plans",
        message_id="<deep@example.net>",
        references="<root@example.net>\r\n <reply@example.net>",
    )
    [deep] = await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    raw, parsed = make_message("Unrelated")
    [other] = await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    records = await store.list_messages(root.mailbox_id)
    threads = [r.thread_id for r in records]
    assert threads[0] == threads[1] == threads[2] != threads[3]
    bob_records = await store.list_messages((await _inbox(store, bob)).id)
    assert bob_records[0].thread_id != threads[0]  # threads are per account
    assert (reply.uid, deep.uid, other.uid) == (2, 3, 4)


async def test_search_text(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    messages = [
        make_message("Quarterly report", "Revenue grew in Köln and München."),
        make_message("Lunch", 'Bring the "special" sauce'),
        make_message("Re: report", "see attached"),
    ]
    for raw, parsed in messages:
        await store.append(alice.id, inbox.id, raw, parsed)
    assert await store.search_text(inbox.id, "report", "text") == {1, 3}
    assert await store.search_text(inbox.id, "REPORT", "header") == {1, 3}
    assert await store.search_text(inbox.id, "report", "body") == set()
    assert await store.search_text(inbox.id, "KÖLN", "body") == {1}
    assert await store.search_text(inbox.id, '"special"', "body") == {2}
    assert await store.search_text(inbox.id, "Mü", "body") == {1}  # shorter than a trigram
    assert await store.search_text(inbox.id, "nowhere to be found", "text") == set()
    # Another mailbox holding the same body matches on its own UIDs only.
    archive = await store.get_mailbox(alice.id, "Archive")
    assert archive is not None
    await store.copy_messages(inbox.id, [2], archive.id)
    assert await store.search_text(archive.id, "sauce", "body") == {1}
    assert await store.search_text(inbox.id, "sauce", "body") == {2}
    with pytest.raises(ValueError):
        await store.search_text(inbox.id, "x", "subject")


async def test_search_text_checks_the_index_candidates(store: Store, alice: Account) -> None:
    # The index records which bodies hold a trigram, not where: "abcd xbcde" holds every
    # trigram of "abcde" (abc, bcd, cde) but not the text, and must not match it.
    inbox = await _inbox(store, alice)
    for body in ("abcd xbcde", "an ABCDE here", "100% sure_thing", "100x sureXthing Straße"):
        raw, parsed = make_message("Letters", body)
        await store.append(alice.id, inbox.id, raw, parsed)
    assert await store.search_text(inbox.id, "abcde", "body") == {2}
    # LIKE's wildcards in a needle are plain characters.
    assert await store.search_text(inbox.id, "0% SURE_", "body") == {3}
    assert await store.search_text(inbox.id, "straSSE", "body") == set()  # no ß folding
    assert await store.search_text(inbox.id, "STRAßE", "body") == {4}  # non-ASCII: casefold
    assert await store.search_text(inbox.id, "bcd", "body") == {1, 2}
    assert await store.search_text(inbox.id, "xbcd", "text") == {1}
    assert await store.search_text(inbox.id, "abcde", "header") == set()


async def test_queue(store: Store) -> None:
    raw, _ = make_message()
    recipients = [
        QueuedRecipient("carol@remote.test", ("SUCCESS", "FAILURE"), "rfc822;carol@remote.test"),
        QueuedRecipient("dave@remote.test"),
    ]
    entry = await store.enqueue("alice@example.org", recipients, raw, ret="HDRS", envid="e1")
    assert entry.recipients == tuple(recipients) and entry.attempts == 0
    assert await store.get_queue_entry(entry.id) == entry
    assert await store.read_blob(entry.blob_id) == raw
    await store.update_queue_entry(
        entry.id,
        recipients=recipients[1:],
        next_attempt=entry.created + 300,
        attempts=1,
        last_error="451 try later",
    )
    [updated] = await store.list_queue()
    assert updated.recipients == (recipients[1],) and updated.last_error == "451 try later"
    assert updated.ret == "HDRS" and updated.envid == "e1"
    await store.remove_queue_entry(entry.id)
    assert await store.get_queue_entry(entry.id) is None
    with pytest.raises(NotFound):
        await store.remove_queue_entry(entry.id)
    with pytest.raises(NotFound):
        await store.read_blob(entry.blob_id)  # its only reference is gone


async def test_concurrent_appends_get_distinct_uids(store: Store, alice: Account) -> None:
    inbox = await _inbox(store, alice)
    messages = [make_message() for _ in range(40)]
    records = await asyncio.gather(
        *(store.append(alice.id, inbox.id, raw, parsed) for raw, parsed in messages)
    )
    assert sorted(r.uid for r in records) == list(range(1, 41))
    assert len({r.modseq for r in records}) == 40


async def test_unselectable_destination(store: Store, alice: Account) -> None:
    await store.create_mailbox(alice.id, "P/C")
    await store.delete_mailbox(alice.id, "P")
    parent = await store.get_mailbox(alice.id, "P")
    inbox = await _inbox(store, alice)
    raw, parsed = make_message()
    await store.append(alice.id, inbox.id, raw, parsed)
    assert parent is not None
    with pytest.raises(MailboxNotSelectable):
        await store.copy_messages(inbox.id, [1], parent.id)


async def test_message_parsed_by_the_mime_parser(store: Store, alice: Account) -> None:
    raw = (
        b"From: Carol <carol@example.net>\r\n"
        b"To: alice@example.org\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"Message-ID: <parsed@example.net>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n'
        b"\r\n"
        b"--b\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n"
        b"Wir treffen uns in K=C3=B6ln.\r\n"
        b"--b\r\n"
        b"Content-Type: text/html\r\n"
        b"\r\n"
        b"<p>Wir treffen uns</p>\r\n"
        b"--b--\r\n"
    )
    parsed = parse_message(raw)
    [d] = await store.deliver(raw, parsed, [DeliveryTarget(alice.id)])
    [record] = await store.get_messages(d.mailbox_id, [d.uid])
    stored = await store.get_parsed(record.blob_id)
    assert stored.root.subtype == "alternative" and len(stored.root.children) == 2
    first = stored.root.children[0]
    body = await store.read_blob(record.blob_id, first.body_start, first.size)
    assert body == raw[first.body_start : first.end]
    assert await store.search_text(d.mailbox_id, "köln", "body") == {d.uid}
    assert await store.search_text(d.mailbox_id, "carol@example", "header") == {d.uid}
