"""Two sessions on one mailbox: each sees the other's changes as untagged responses, at once
during IDLE and otherwise when RFC 9051 allows (never EXPUNGE during FETCH/STORE/SEARCH)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from postar.store.interface import NotFound
from tests.unit.imap.imap_session_helpers import deliver, environment, message


async def test_noop_shows_new_messages_flags_and_expunges(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("a"))
        await deliver(env.store, env.alice, message("b"))
        one, two = await env.client(), await env.client()
        await one.command(b"a SELECT INBOX")
        await two.command(b"b SELECT INBOX")
        await two.command(b"b1 STORE 2 +FLAGS (\\Flagged)")
        await deliver(env.store, env.alice, message("c"))
        answer = await one.command(b"a1 NOOP")
        assert b"* 3 EXISTS\r\n" in answer
        assert b"* 2 FETCH (FLAGS (\\Flagged \\Recent) UID 2)\r\n" in answer
        await two.command(b"b2 STORE 1 +FLAGS.SILENT (\\Deleted)")
        await two.command(b"b3 EXPUNGE")
        answer = await one.command(b"a2 NOOP")
        assert b"* 1 EXPUNGE\r\n" in answer
        answer = await one.command(b"a3 FETCH 1:* (UID)")
        assert b"* 1 FETCH (UID 2)" in answer and b"* 2 FETCH (UID 3)" in answer


async def test_no_expunge_during_fetch_store_search(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        for s in ("a", "b", "c"):
            await deliver(env.store, env.alice, message(s))
        one, two = await env.client(), await env.client()
        await one.command(b"a SELECT INBOX")
        await two.command(b"b SELECT INBOX")
        await two.command(b"b1 STORE 1 +FLAGS.SILENT (\\Deleted)")
        await two.command(b"b2 EXPUNGE")
        await asyncio.sleep(0.05)  # let the change feed reach the first session
        answer = await one.command(b"a1 FETCH 1:* (UID)")
        assert b"EXPUNGE" not in answer
        # Sequence numbers did not move: 2 and 3 are still UIDs 2 and 3; 1 is a ghost.
        assert b"* 2 FETCH (UID 2)" in answer and b"* 3 FETCH (UID 3)" in answer
        answer = await one.command(b"a2 SEARCH ALL")
        assert b"EXPUNGE" not in answer and b"* SEARCH 2 3\r\n" in answer
        answer = await one.command(b"a3 STORE 2 +FLAGS (\\Seen)")
        assert b"EXPUNGE" not in answer
        answer = await one.command(b"a4 NOOP")
        assert b"* 1 EXPUNGE\r\n" in answer


async def test_idle_wakes_on_delivery_flags_and_expunge(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("a"))
        one, two = await env.client(), await env.client()
        await one.command(b"a SELECT INBOX")
        await two.command(b"b SELECT INBOX")
        one.send(b"a1 IDLE\r\n")
        await one.read_until(b"+ idling")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await deliver(env.store, env.alice, message("b"))
        assert b"* 2 EXISTS\r\n" in await one.read_until(b"EXISTS")
        assert loop.time() - started < 1.0
        await two.command(b"b1 STORE 1 +FLAGS (\\Answered)")
        assert b"* 1 FETCH (FLAGS (\\Answered \\Recent) UID 1)" in await one.read_until(b"FETCH")
        await two.command(b"b2 STORE 1 +FLAGS.SILENT (\\Deleted)")
        await two.command(b"b3 EXPUNGE")
        assert b"* 1 EXPUNGE" in await one.read_until(b"EXPUNGE")
        one.send(b"DONE\r\n")
        assert b"a1 OK IDLE terminated" in await one.read_until(b"a1 OK")
        assert b"a2 OK" in await one.command(b"a2 NOOP")


async def test_idle_needs_done(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        c.send(b"a1 IDLE\r\n")
        await c.read_until(b"+ idling")
        c.send(b"a2 NOOP\r\n")
        assert b"a1 BAD" in await c.read_until(b"a1 BAD")


async def test_qresync_select_and_vanished(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        for s in ("a", "b", "c"):
            await deliver(env.store, env.alice, message(s))
        c = await env.client()
        await c.command(b"a0 ENABLE QRESYNC")
        answer = await c.command(b"a1 SELECT INBOX")
        validity = int(re.search(rb"UIDVALIDITY (\d+)", answer)[1])  # type: ignore[index]
        modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", answer)[1])  # type: ignore[index]
        await c.command(b"a2 STORE 1 +FLAGS.SILENT (\\Deleted)")
        answer = await c.command(b"a3 EXPUNGE")
        assert b"* VANISHED 1\r\n" in answer
        await c.command(b"a4 UID STORE 2 +FLAGS (\\Seen)")
        await c.command(b"a5 UNSELECT")
        answer = await c.command(b"a6 SELECT INBOX (QRESYNC (%d %d 1:3))" % (validity, modseq))
        assert b"* VANISHED (EARLIER) 1\r\n" in answer
        assert re.search(rb"\* 1 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", answer)
        answer = await c.command(b"a7 UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
        assert b"* VANISHED (EARLIER) 1\r\n" in answer
        assert b"UID 2" in answer and b"UID 3" not in answer


async def test_append_to_selected_mailbox_announces_exists(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        await c.command(b"a0 SELECT INBOX")
        raw = message("self")
        answer = await c.command(b"a1 APPEND INBOX {%d+}\r\n%s" % (len(raw), raw))
        assert b"* 1 EXISTS\r\n" in answer


async def test_search_and_sort_survive_a_body_freed_mid_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another session expunges a message and its body is freed while this session's SEARCH
    # or SORT runs, before the change reaches it (RFC 9051 7.5.1 keeps the message in this
    # session's view). The store then answers NotFound for it: the command must still answer
    # OK, the message matching nothing, not NO [SERVERBUG].
    async with environment(tmp_path) as env:
        for s in ("apple", "banana"):
            await deliver(env.store, env.alice, message(s))
        one = await env.client()
        await one.command(b"a SELECT INBOX")
        inbox = await env.store.get_mailbox(env.alice.id, "INBOX")
        assert inbox is not None
        gone = (await env.store.list_messages(inbox.id))[0].blob_id
        real_parsed, real_read = env.store.get_parsed, env.store.read_blob

        async def get_parsed(blob_id: str) -> object:
            if blob_id == gone:
                raise NotFound(blob_id)
            return await real_parsed(blob_id)

        async def read_blob(
            blob_id: str, start: int = 0, length: int | None = None, *, size: int | None = None
        ) -> bytes:
            if blob_id == gone:
                raise NotFound(blob_id)
            return await real_read(blob_id, start, length, size=size)

        monkeypatch.setattr(env.store, "get_parsed", get_parsed)
        monkeypatch.setattr(env.store, "read_blob", read_blob)
        answer = await one.command(b'a1 SEARCH HEADER Subject "banana"')
        assert b"* SEARCH 2\r\n" in answer and b"a1 OK" in answer
        answer = await one.command(b'a2 SEARCH SUBJECT "apple"')
        assert b"* SEARCH\r\n" in answer and b"a2 OK" in answer
        answer = await one.command(b"a3 SORT (SUBJECT) UTF-8 ALL")
        assert b"a3 OK" in answer and b"SERVERBUG" not in answer


async def test_search_follows_other_sessions_changes(tmp_path: Path) -> None:
    # SEARCH answers flag keys from the session's view and keeps the records it read for
    # keys like LARGER: both must follow what other sessions append, flag and expunge.
    async with environment(tmp_path) as env:
        for s in ("a", "b"):
            await deliver(env.store, env.alice, message(s))
        one, two = await env.client(), await env.client()
        await one.command(b"a SELECT INBOX")
        await two.command(b"b SELECT INBOX")
        assert b"* SEARCH 1 2\r\n" in await one.command(b"a1 SEARCH LARGER 10")
        assert b"* SEARCH\r\n" in await one.command(b"a2 SEARCH FLAGGED")
        await two.command(b"b1 STORE 2 +FLAGS.SILENT (\\Flagged)")
        await deliver(env.store, env.alice, message("c", body="x" * 500 + "\r\n"))
        await asyncio.sleep(0.05)  # let the change feed reach the first session
        await one.command(b"a3 NOOP")
        assert b"* SEARCH 2\r\n" in await one.command(b"a4 SEARCH FLAGGED")
        assert b"* SEARCH 3\r\n" in await one.command(b"a5 SEARCH LARGER 600")
        assert b"* SEARCH 1 2 3\r\n" in await one.command(b"a6 SEARCH LARGER 10")
        await two.command(b"b2 STORE 1 +FLAGS.SILENT (\\Deleted)")
        await two.command(b"b3 EXPUNGE")
        await asyncio.sleep(0.05)
        assert b"* 1 EXPUNGE\r\n" in await one.command(b"a7 NOOP")
        assert b"* SEARCH 1 2\r\n" in await one.command(b"a8 SEARCH LARGER 10")
        assert b"* SEARCH 1\r\n" in await one.command(b"a9 SEARCH FLAGGED UNDELETED")
        assert b"* SEARCH 2\r\n" in await one.command(b"a10 SEARCH LARGER 600")
