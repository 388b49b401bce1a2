"""Session transcripts: \\Recent for IMAP4rev1 clients (RFC 3501 2.3.2): a message is recent
to the first session that selects its mailbox after it arrived, and to that one only."""

from __future__ import annotations

from pathlib import Path

from tests.unit.imap.imap_session_helpers import deliver, environment, message


async def test_recent_belongs_to_the_first_selecting_session(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        store, alice = env.store, env.alice
        await deliver(store, alice, message("one"))
        await deliver(store, alice, message("two"))
        peeker = await env.client()
        # EXAMINE looks without claiming.
        answer = await peeker.command(b"e1 EXAMINE INBOX")
        assert b"* 2 RECENT\r\n" in answer
        first = await env.client()
        answer = await first.command(b"a1 SELECT INBOX")
        assert b"* 2 EXISTS\r\n* 2 RECENT\r\n" in answer
        answer = await first.command(b"a2 FETCH 1 FLAGS")
        assert b"FLAGS (\\Recent)" in answer
        second = await env.client()
        assert b"* 0 RECENT\r\n" in await second.command(b"b1 SELECT INBOX")
        assert b"FLAGS ()" in await second.command(b"b2 FETCH 1 FLAGS")
        assert b"* SEARCH\r\n" in await second.command(b"b3 SEARCH RECENT")
        assert b"* SEARCH 1 2\r\n" in await second.command(b"b4 SEARCH OLD")
        # A message arriving now is recent to the one session that sees it first.
        await deliver(store, alice, message("three"))
        answer = await second.command(b"b5 NOOP")
        assert b"* 3 EXISTS\r\n* 1 RECENT\r\n" in answer
        answer = await first.command(b"a3 NOOP")
        assert b"* 3 EXISTS\r\n* 2 RECENT\r\n" in answer
        assert b"* SEARCH 1 2\r\n" in await first.command(b"a4 SEARCH RECENT")
        await first.command(b"a5 STORE 1 +FLAGS (\\Seen)")
        assert b"* SEARCH 2\r\n" in await first.command(b"a6 SEARCH NEW")
        assert b"* SEARCH 3\r\n" in await second.command(b"b6 SEARCH NEW")
        answer = await second.command(b"b7 STATUS Sent (RECENT MESSAGES)")
        assert b"(RECENT 0 MESSAGES 0)" in answer
        await deliver(store, alice, message("four"), "Sent")
        answer = await second.command(b"b8 STATUS Sent (RECENT)")
        assert b"(RECENT 1)" in answer


async def test_rev2_clients_see_no_recent(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("one"))
        c = await env.client()
        await c.command(b"a1 ENABLE IMAP4rev2")
        answer = await c.command(b"a2 SELECT INBOX")
        assert b"RECENT" not in answer
        assert b"\\Recent" not in await c.command(b"a3 FETCH 1 FLAGS")
