"""SORT and THREAD algorithms (RFC 5256) on plain values: base subjects, sort keys, trees."""

from __future__ import annotations

import pytest

from postar.imap.commands import SortCriterion, SortKey
from postar.imap.ordering import (
    SortFacts,
    base_subject,
    ordered_subject,
    references,
    sort_messages,
    thread_references,
)
from postar.imap.response import ResponseEncoder, ThreadData, ThreadNode
from postar.mime.structure import Address, Envelope


@pytest.mark.parametrize(
    ("raw", "text", "reply"),
    [
        ("Hello", "Hello", False),
        ("Re: Hello", "Hello", True),
        ("RE:  re: Fwd: Hello", "Hello", True),
        ("Fw: Hello (fwd)", "Hello", True),
        ("Hello (fwd) (FWD)  ", "Hello", True),
        ("[list] Re: Hello", "Hello", True),
        ("Re[2]: Hello", "Hello", True),  # subj-refwd allows a blob before the colon
        ("Reply: Hello", "Reply: Hello", False),  # "re" must be followed by the colon
        ("re [2]: Hello", "Hello", True),
        ("[fwd: Re: Hello]", "Hello", True),
        ("[Fwd: [list] hello]", "hello", True),
        ("[list]", "[list]", False),  # a blob that is all there is stays
        ("[a][b] topic", "topic", False),
        ("  Hello\r\n\t world  ", "Hello world", False),
        ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café", True),
        (None, "", False),
    ],
)
def test_base_subject(raw: str | None, text: str, reply: bool) -> None:
    got = base_subject(raw)
    assert (got.text, got.reply_or_forward) == (text, reply)


def facts(
    seq: int,
    *,
    subject: str = "s",
    date: str | None = None,
    arrival: float = 0.0,
    size: int = 10,
    frm: str = "x",
    msgid: str | None = None,
    refs: str | None = None,
    name: str | None = None,
) -> SortFacts:
    env = Envelope(
        date=date,
        subject=subject,
        from_=(Address(name, None, frm, "example.net"),),
    )
    return SortFacts(
        seq=seq,
        uid=seq * 10,
        envelope=env,
        internal_date=arrival,
        size=size,
        references=thread_references(refs, None),
        message_id=msgid,
    )


def order(items: list[SortFacts], *keys: tuple[SortKey, bool]) -> list[int]:
    return [f.seq for f in sort_messages(items, [SortCriterion(k, r) for k, r in keys])]


def test_sort_keys_reverse_and_ties_by_sequence() -> None:
    items = [
        facts(1, subject="Re: beta", size=30, frm="carol", arrival=3),
        facts(2, subject="alpha", size=10, frm="Bob", arrival=1),
        facts(3, subject="BETA", size=30, frm="alice", arrival=2),
    ]
    assert order(items, (SortKey.SUBJECT, False)) == [2, 1, 3]
    assert order(items, (SortKey.SIZE, True)) == [1, 3, 2]
    assert order(items, (SortKey.SIZE, True), (SortKey.ARRIVAL, False)) == [3, 1, 2]
    # i;unicode-casemap (ASCII letters as upper case): "Bob" sorts between "alice" and "carol".
    assert order(items, (SortKey.FROM, False)) == [3, 2, 1]
    assert order(items, (SortKey.ARRIVAL, True)) == [1, 3, 2]


def test_sort_date_uses_utc_and_falls_back_to_internal_date() -> None:
    items = [
        facts(1, date="Mon, 7 Feb 2022 10:00:00 +0000"),
        facts(2, date="Mon, 7 Feb 2022 11:00:00 +0200"),  # 09:00 UTC: earlier
        facts(3, date="not a date", arrival=0.0),  # 1970: earliest
    ]
    assert order(items, (SortKey.DATE, False)) == [3, 2, 1]


def test_display_from_prefers_the_decoded_name() -> None:
    items = [
        facts(1, frm="zed", name="=?utf-8?q?Anna?="),
        facts(2, frm="bob"),  # no name: "bob@example.net"
        facts(3, frm="aaa", name="Zoe"),
    ]
    assert order(items, (SortKey.DISPLAYFROM, False)) == [1, 2, 3]


def encode(trees: list[ThreadNode]) -> bytes:
    return ResponseEncoder().encode(ThreadData(tuple(trees)))


def test_ordered_subject_groups_by_base_subject_then_date() -> None:
    items = [
        facts(1, subject="b", date="Mon, 7 Feb 2022 10:00:00 +0000"),
        facts(2, subject="a", date="Mon, 7 Feb 2022 09:00:00 +0000"),
        facts(3, subject="Re: b", date="Mon, 7 Feb 2022 12:00:00 +0000"),
        facts(4, subject="Re: a", date="Mon, 7 Feb 2022 11:00:00 +0000"),
        facts(5, subject="b", date="Mon, 7 Feb 2022 10:30:00 +0000"),
    ]
    assert encode(ordered_subject(items)) == b"* THREAD (2 4)(1 (5)(3))\r\n"


def day(hour: int) -> str:
    return f"Mon, 7 Feb 2022 {hour:02d}:00:00 +0000"


def test_references_builds_trees_with_missing_parents() -> None:
    items = [
        facts(1, subject="topic", msgid="<a@x>", date=day(1)),
        facts(2, subject="Re: topic", msgid="<b@x>", refs="<a@x>", date=day(2)),
        facts(3, subject="Re: topic", msgid="<c@x>", refs="<a@x>", date=day(3)),
        facts(4, subject="Re: topic", msgid="<d@x>", refs="<a@x> <b@x>", date=day(4)),
        # Replies to a message we do not have, from two branches: a dummy root keeps both.
        facts(5, subject="other", msgid="<e@x>", refs="<gone@x>", date=day(5)),
        facts(6, subject="Re: other", msgid="<f@x>", refs="<gone@x>", date=day(6)),
        # A reply whose parent is missing and alone: promoted to the root.
        facts(7, subject="third", msgid="<g@x>", refs="<lost@x> <lost2@x>", date=day(7)),
    ]
    assert encode(references(items)) == b"* THREAD (1 (2 4)(3))((5)(6))(7)\r\n"


def test_references_merges_roots_by_subject_and_survives_loops() -> None:
    items = [
        facts(1, subject="hello", msgid="<a@x>", date=day(1)),
        # No references, but "Re: hello": joins the thread of "hello" as a child.
        facts(2, subject="Re: hello", msgid="<b@x>", date=day(2)),
        # Two non-replies with the same subject: siblings under a dummy.
        facts(3, subject="same", msgid="<c@x>", date=day(3)),
        facts(4, subject="same", msgid="<d@x>", date=day(4)),
        # A loop in References and a duplicate Message-ID must not hang or lose messages.
        facts(5, subject="loop", msgid="<e@x>", refs="<f@x> <e@x>", date=day(5)),
        facts(6, subject="loop2", msgid="<f@x>", refs="<e@x> <f@x>", date=day(6)),
        facts(7, subject="dup", msgid="<a@x>", date=day(7)),
    ]
    out = encode(references(items))
    assert out.startswith(b"* THREAD (1 2)((3)(4))")
    numbers = sorted(int(n) for n in out.replace(b"(", b" ").replace(b")", b" ").split()[2:])
    assert numbers == [1, 2, 3, 4, 5, 6, 7]
