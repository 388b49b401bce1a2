"""Session transcripts: SORT, UID SORT, THREAD and UID THREAD (RFC 5256)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.imap.imap_session_helpers import deliver, environment


def mail(subject: str, frm: str, date: str, msgid: str, refs: str = "", body: str = "x") -> bytes:
    lines = [
        f"From: {frm}",
        "To: alice@example.org",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: {msgid}",
    ]
    if refs:
        lines.append(f"References: {refs}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


async def test_sort_and_thread_transcripts(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        store, alice = env.store, env.alice
        await deliver(
            store,
            alice,
            mail("zebra", "zed@x.net", "Mon, 7 Feb 2022 10:00:00 +0000", "<1@x>", body="x" * 300),
        )
        await deliver(
            store,
            alice,
            mail("Re: zebra", "amy@x.net", "Mon, 7 Feb 2022 12:00:00 +0000", "<2@x>", "<1@x>"),
        )
        await deliver(
            store,
            alice,
            mail("apple", "Bob@x.net", "Mon, 7 Feb 2022 09:00:00 +0000", "<3@x>", body="x" * 100),
        )
        # UID 4 is expunged below, so sequence numbers and UIDs differ.
        await deliver(
            store, alice, mail("gone", "g@x.net", "Mon, 7 Feb 2022 08:00:00 +0000", "<4@x>")
        )
        await deliver(
            store,
            alice,
            mail(
                "Re: zebra", "cat@x.net", "Mon, 7 Feb 2022 11:00:00 +0000", "<5@x>", "<1@x> <2@x>"
            ),
        )
        c = await env.client()
        caps = await c.command(b"c1 CAPABILITY")
        for cap in (b" SORT", b" SORT=DISPLAY", b" THREAD=ORDEREDSUBJECT", b" THREAD=REFERENCES"):
            assert cap in caps
        await c.command(b"a0 SELECT INBOX")
        await c.command(b"a1 UID STORE 4 +FLAGS (\\Deleted)")
        await c.command(b"a2 EXPUNGE")
        # seq: 1=zebra(uid1) 2=Re: zebra(uid2) 3=apple(uid3) 4=Re: zebra(uid5)
        answer = await c.command(b"a3 SORT (SUBJECT) UTF-8 ALL")
        assert b"* SORT 3 1 2 4\r\n" in answer and b"a3 OK" in answer
        answer = await c.command(b"a4 SORT (REVERSE SIZE) UTF-8 ALL")
        assert b"* SORT 1 3 4 2\r\n" in answer  # 4 carries a longer References than 2
        answer = await c.command(b"a5 SORT (FROM REVERSE DATE) US-ASCII ALL")
        assert b"* SORT 2 3 4 1\r\n" in answer  # amy, Bob, cat, zed
        answer = await c.command(b"a6 UID SORT (DATE) UTF-8 SUBJECT zebra")
        assert b"* SORT 1 5 2\r\n" in answer and b"a6 OK" in answer
        answer = await c.command(b"a7 SORT (ARRIVAL) UTF-8 NOT SUBJECT zebra")
        assert b"* SORT 3\r\n" in answer
        answer = await c.command(b"a8 SORT (SUBJECT) KOI9 ALL")
        assert b"a8 NO [BADCHARSET" in answer
        answer = await c.command(b"a9 THREAD REFERENCES UTF-8 ALL")
        # 4 references 1 then 2: a chain 1 -> 2 -> 4, though 4 is older than 2.
        assert b"* THREAD (3)(1 2 4)\r\n" in answer
        answer = await c.command(b"b1 UID THREAD REFERENCES UTF-8 ALL")
        assert b"* THREAD (3)(1 2 5)\r\n" in answer
        answer = await c.command(b"b2 THREAD ORDEREDSUBJECT UTF-8 ALL")
        assert b"* THREAD (3)(1 (4)(2))\r\n" in answer
        answer = await c.command(b"b3 UID THREAD ORDEREDSUBJECT UTF-8 SUBJECT apple")
        assert b"* THREAD (3)\r\n" in answer
        answer = await c.command(b"b4 THREAD REFERENCES UTF-8 SUBJECT nothing")
        assert b"* THREAD\r\n" in answer and b"b4 OK" in answer
        answer = await c.command(b"b5 SORT (DISPLAYFROM) UTF-8 ALL")
        assert b"* SORT 2 3 4 1\r\n" in answer
