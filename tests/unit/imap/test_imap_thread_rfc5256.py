"""THREAD (RFC 5256) checked against the RFC's own examples and rules.

The RFC's THREAD example (A283 ORDEREDSUBJECT, A284, A285 REFERENCES, over "SINCE 5-MAR-2000")
shows the answers, not the mailbox. MAILBOX below is one mailbox for which both published
answers are right: messages 166 to 208 after 5 March 2000, 165 older ones that SINCE leaves
out. Each line says which rule of the RFC makes its message land where the RFC shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest

from postar.imap.ordering import (
    SortFacts,
    base_subject,
    message_ids,
    ordered_subject,
    references,
    thread_references,
)
from postar.imap.response import ResponseEncoder, ThreadData, ThreadNode
from postar.mime.parser import parse_message
from postar.mime.structure import Envelope
from tests.unit.imap.imap_session_helpers import environment

# The published answers; the RFC breaks the lines "for editorial clarity": each break is
# nothing, except after "(177", where thread-members puts SP before a nested thread-list.
A283 = (
    b"* THREAD (166)(167)(168)(169)(172)(170)(171)"
    b"(173)(174 (175)(176)(178)(181)(180))(179)(177"
    b" (183)(182)(188)(184)(185)(186)(187)(189))(190)"
    b"(191)(192)(193)(194 195)(196 (197)(198))(199)"
    b"(200 202)(201)(203)(204)(205)(206 207)(208)"
)
A284 = b"* THREAD"
A285 = (
    b"* THREAD (166)(167)(168)(169)(172)((170)(179))"
    b"(171)(173)((174)(175)(176)(178)(181)(180))"
    b"((177)(183)(182)(188 (184)(189))(185 186)(187))"
    b"(190)(191)(192)(193)((194)(195 196))(197 198)"
    b"(199)(200 202)(201)(203)(204)(205 206 207)(208)"
)


class Mail(NamedTuple):
    subject: str
    references: str = ""


def mid(n: int) -> str:
    return f"<{n}@example.org>"


MAILBOX: dict[int, Mail] = {
    **{n: Mail(f"subject {n}") for n in (166, 167, 168, 169, 171, 172, 173)},
    **{n: Mail(f"subject {n}") for n in (190, 191, 192, 193, 199, 201, 203, 204, 208)},
    # Two replies to a message not in the mailbox: REFERENCES keeps a dummy with two children
    # at the root (step 3); their subjects differ, so ORDEREDSUBJECT keeps them apart.
    170: Mail("subject 170", "<gone@example.org>"),
    179: Mail("subject 179", "<gone@example.org>"),
    # One subject, no references, no "Re:": step 5C gathers them under a dummy.
    **{n: Mail("group A") for n in (174, 175, 176, 178, 180, 181)},
    **{n: Mail("group B") for n in (177, 182, 183, 185, 187, 188)},
    # Replies inside group B: children by References (step 1B), same base subject.
    184: Mail("Re: group B", mid(188)),
    189: Mail("Re: group B", mid(188)),
    186: Mail("Re: group B", mid(185)),
    194: Mail("subject 194"),
    195: Mail("subject 194"),
    196: Mail("subject 196", mid(195)),
    # A reply without references heads its own REFERENCES thread: 196, the only other
    # "subject 196", is not at the root, so step 5 has nothing to merge it with.
    197: Mail("Re: subject 196"),
    198: Mail("Re: subject 196", mid(197)),
    200: Mail("subject 200"),
    202: Mail("Re: subject 200", mid(200)),
    205: Mail("subject 205"),
    206: Mail("subject 206", mid(205)),
    207: Mail("Re: subject 206", f"{mid(205)} {mid(206)}"),
}
# Sent dates, oldest first: top-level order, and siblings (181 before 180, 183 before 182)
# follow dates, not sequence numbers (RFC 5256 section 2.2; REFERENCES steps 4 and 6).
BY_DATE = [
    166, 167, 168, 169, 172, 170, 171, 173, 174, 175, 176, 178, 181, 180, 179, 177, 183,
    182, 188, 184, 185, 186, 187, 189, 190, 191, 192, 193, 194, 195, 196, 197, 198, 199,
    200, 202, 201, 203, 204, 205, 206, 207, 208,
]  # fmt: skip
FIRST = datetime(2000, 3, 6, tzinfo=UTC)


def sent(n: int) -> datetime:
    return FIRST + timedelta(hours=BY_DATE.index(n))


def facts(n: int) -> SortFacts:
    mail = MAILBOX[n]
    date = sent(n).strftime("%a, %d %b %Y %H:%M:%S +0000")
    return SortFacts(
        seq=n,
        uid=n,
        envelope=Envelope(date=date, subject=mail.subject),
        internal_date=sent(n).timestamp(),
        size=100,
        references=thread_references(mail.references or None, None),
        message_id=mid(n),
    )


def encode(trees: Sequence[ThreadNode]) -> bytes:
    return ResponseEncoder().encode(ThreadData(tuple(trees)))


def test_the_mailbox_covers_the_example() -> None:
    assert sorted(MAILBOX) == list(range(166, 209)) == sorted(BY_DATE)


def test_ordered_subject_gives_the_published_a283() -> None:
    assert encode(ordered_subject([facts(n) for n in MAILBOX])) == A283 + b"\r\n"


def test_references_gives_the_published_a285() -> None:
    assert encode(references([facts(n) for n in MAILBOX])) == A285 + b"\r\n"


def raw_message(n: int) -> bytes:
    mail = MAILBOX[n]
    lines = [
        "From: someone@example.org",
        f"Subject: {mail.subject}",
        "Date: " + sent(n).strftime("%a, %d %b %Y %H:%M:%S +0000"),
        f"Message-ID: {mid(n)}",
    ]
    if mail.references:
        lines.append(f"References: {mail.references}")
    return ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()


async def test_the_published_example_through_a_session(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        inbox = await env.store.get_mailbox(env.alice.id, "INBOX")
        assert inbox is not None
        before = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
        for n in range(1, 209):
            if n in MAILBOX:
                raw, when = raw_message(n), sent(n).timestamp()
            else:  # 1 to 165 arrived before 5 March 2000: SINCE leaves them out
                raw, when = f"Subject: old {n}\r\n\r\nold\r\n".encode(), before
            parsed = parse_message(raw)
            await env.store.append(env.alice.id, inbox.id, raw, parsed, internal_date=when)
        client = await env.client()
        await client.command(b"s SELECT INBOX")
        answer = await client.command(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000")
        assert answer == A283 + b"\r\nA283 OK THREAD completed\r\n"
        answer = await client.command(b'A284 THREAD ORDEREDSUBJECT US-ASCII TEXT "gewp"')
        assert answer == A284 + b"\r\nA284 OK THREAD completed\r\n"
        answer = await client.command(b"A285 THREAD REFERENCES UTF-8 SINCE 5-MAR-2000")
        assert answer == A285 + b"\r\nA285 OK THREAD completed\r\n"


# -- the rules, one at a time -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text", "reply"),
    [
        # (2) then (6): "(fwd)" trailer, then "[fwd: ...]" unwrapped and (2)-(5) again.
        ("[fwd: Re: Hello] (fwd)", "Hello", True),
        # (3) leader, (4) a blob that leaves a non-empty rest, then (6).
        ("Re: [list] [fwd: hello]", "hello", True),
        ("RE: [fwd: [a] b]", "b", True),
        # subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
        ("Re :x", "x", True),
        ("Re: Re[3]: [x] Fw: y (fwd)(fwd)", "y", True),
        ("Fwd x", "Fwd x", False),  # no colon: not a leader
        # (4) removes a leading blob without making it a reply or forward.
        ("[fwd: x] extra", "extra", False),
        ("(fwd) x", "(fwd) x", False),  # "(fwd)" is only a trailer
        ("x(fwd)", "x", True),
        ("Re: [a]", "[a]", True),  # the last blob is the base when nothing else is left
        ("Re:", "", True),
    ],
)
def test_base_subject_rules(raw: str, text: str, reply: bool) -> None:
    got = base_subject(raw)
    assert (got.text, got.reply_or_forward) == (text, reply)


def test_message_ids_are_normalized_before_matching() -> None:
    # RFC 5256: <"01KF8JCEOCBS0045PS"@xxx.yyy.com> and <01KF8JCEOCBS0045PS@xxx.yyy.com> MUST
    # be the same Message ID; comparison stays case-sensitive.
    (quoted,) = message_ids('<"01KF8JCEOCBS0045PS"@xxx.yyy.com>')
    assert quoted == "<01KF8JCEOCBS0045PS@xxx.yyy.com>"
    parent = SortFacts(1, 1, Envelope(subject="first"), 1.0, 1, (), quoted)
    child = SortFacts(
        2,
        2,
        Envelope(subject="second"),
        2.0,
        1,
        thread_references("<01KF8JCEOCBS0045PS@xxx.yyy.com>", None),
        "<2@x>",
    )
    other = SortFacts(
        3,
        3,
        Envelope(subject="third"),
        3.0,
        1,
        thread_references("<01kf8jceocbs0045ps@xxx.yyy.com>", None),
        "<3@x>",
    )
    assert encode(references([parent, child, other])) == b"* THREAD (1 2)(3)\r\n"


def subject_facts(seq: int, subject: str) -> SortFacts:
    return SortFacts(seq, seq, Envelope(subject=subject), float(seq), 1, (), f"<{seq}@x>")


def test_two_replies_without_the_original_meet_under_a_dummy() -> None:
    # Step 5C: neither is a dummy and the current one is not a reply to a non-reply, so
    # "create a new dummy message and make both ... children of the dummy".
    items = [subject_facts(1, "Re: lunch"), subject_facts(2, "Re: lunch")]
    assert encode(references(items)) == b"* THREAD ((1)(2))\r\n"
    # A non-reply in the table takes a later reply as its child instead.
    items = [subject_facts(1, "lunch"), subject_facts(2, "Re: lunch")]
    assert encode(references(items)) == b"* THREAD (1 2)\r\n"
    # The reply came first: 5B puts the non-reply in the table, the reply becomes its child.
    items = [subject_facts(1, "Re: lunch"), subject_facts(2, "lunch")]
    assert encode(references(items)) == b"* THREAD (2 1)\r\n"


def test_subjects_collate_with_unicode_casemap() -> None:
    # RFC 5256 section 7: i;unicode-casemap (RFC 5051): titlecase, then decomposition, so
    # these three spellings are one base subject; "ß" has no titlecase of its own.
    items = [
        subject_facts(1, "Über"),
        subject_facts(2, "über"),
        subject_facts(3, "U\u0308ber"),
        subject_facts(4, "=?utf-8?q?=C3=9Cber?="),
        subject_facts(5, "Straße"),
        subject_facts(6, "STRASSE"),
    ]
    assert encode(ordered_subject(items)) == b"* THREAD (1 (2)(3)(4))(5)(6)\r\n"
