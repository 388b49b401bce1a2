"""SEARCH FROM/TO/CC/BCC/SUBJECT and the sent-date keys answer from the stored ENVELOPE, with
no blob reads; HEADER still reads the header block (RFC 9051 6.4.4)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.imap.imap_session_helpers import deliver, environment

RAW = (
    b"From: =?utf-8?q?Zo=C3=AB_Martin?= <zoe@example.net>\r\n"
    b"To: Team: alice@example.org, Bob <bob@example.org>;\r\n"
    b"Cc: carol@example.com\r\n"
    b"Bcc: secret@example.com\r\n"
    b"Subject: =?utf-8?q?Quarterly_r=C3=A9sum=C3=A9?=\r\n"
    b"Date: Tue, 8 Feb 2022 23:30:00 -0500\r\n"
    b"X-Ticket: T-42\r\n"
    b"\r\n"
    b"body\r\n"
)
PLAIN = b"From: dave@example.net\r\nSubject: other\r\n\r\nno date\r\n"


async def test_envelope_keys_read_no_blobs(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, RAW)
        await deliver(env.store, env.alice, PLAIN)
        c = await env.client()
        await c.command(b"a0 SELECT INBOX")
        reads = 0
        original = env.store.read_blob

        async def counting(
            blob_id: str, start: int = 0, length: int | None = None, *, size: int | None = None
        ) -> bytes:
            nonlocal reads
            reads += 1
            return await original(blob_id, start, length, size=size)

        env.store.read_blob = counting  # type: ignore[method-assign]
        cases = [
            (b"FROM {4+}\r\nzo\xc3\xab", b"1"),  # the decoded display name
            (b"FROM ZOE@EXAMPLE", b"1"),  # the address, case-insensitively
            (b"FROM example.net", b"1 2"),
            (b"TO bob@example.org", b"1"),
            (b"TO Team", b"1"),  # a group's name
            (b"CC carol", b"1"),
            (b"BCC secret", b"1"),
            (b"SUBJECT {8+}\r\nr\xc3\xa9sum\xc3\xa9", b"1"),
            (b"NOT SUBJECT quarterly", b"2"),
            # The Date header's own day (8 Feb), not the UTC one (9 Feb); no Date: no match.
            (b"SENTON 8-Feb-2022", b"1"),
            (b"SENTBEFORE 9-Feb-2022", b"1"),
            (b"OR SENTSINCE 9-Feb-2022 FROM nobody", b""),
        ]
        for n, (criteria, hits) in enumerate(cases):
            tag = b"s%d" % n
            answer = await c.command(tag + b" SEARCH CHARSET UTF-8 " + criteria)
            expected = b"* SEARCH" + (b" " + hits if hits else b"") + b"\r\n"
            assert expected in answer, (criteria, answer)
        assert reads == 0
        answer = await c.command(b"h1 SEARCH HEADER X-Ticket t-42")
        assert b"* SEARCH 1\r\n" in answer
        assert reads > 0  # HEADER of an arbitrary field still reads the header block
