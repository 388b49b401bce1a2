"""Session transcripts: OBJECTID (RFC 8474): MAILBOXID, EMAILID, THREADID."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.imap.imap_session_helpers import deliver, environment, message


def mailbox_id(answer: bytes) -> bytes:
    found = re.search(rb"MAILBOXID \(([A-Za-z0-9_-]{1,255})\)", answer)
    assert found, answer
    return found.group(1)


async def test_mailboxid_is_stable_across_rename_and_never_reused(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        assert b" OBJECTID" in await c.command(b"c1 CAPABILITY")
        created = await c.command(b"a1 CREATE Projects")
        assert re.search(rb"a1 OK \[MAILBOXID \(", created), created
        first = mailbox_id(created)
        answer = await c.command(b"a2 STATUS Projects (MESSAGES MAILBOXID)")
        assert b"* STATUS Projects (MESSAGES 0 MAILBOXID (%s))" % first in answer
        await c.command(b"a3 RENAME Projects Archive/Projects")
        answer = await c.command(b"a4 SELECT Archive/Projects")
        assert b"* OK [MAILBOXID (%s)]" % first in answer
        await c.command(b"a5 UNSELECT")
        inbox = mailbox_id(await c.command(b"a6 STATUS INBOX (MAILBOXID)"))
        assert inbox != first
        # Deleted and created again under the same name: a new id (RFC 8474 4.1).
        await c.command(b"a7 DELETE Archive/Projects")
        again = mailbox_id(await c.command(b"a8 CREATE Archive/Projects"))
        assert again not in (first, inbox)
        answer = await c.command(b'a9 LIST "" "Archive/*" RETURN (STATUS (MAILBOXID))')
        assert b"MAILBOXID (%s)" % again in answer


async def test_search_by_emailid_and_threadid(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("first"))
        reply = message("Re: first", In_Reply_To="<first@example.net>")
        await deliver(env.store, env.alice, reply)
        await deliver(env.store, env.alice, message("other"))
        c = await env.client()
        await c.command(b"a1 SELECT INBOX")
        answer = await c.command(b"a2 FETCH 1:3 (EMAILID THREADID)")
        ids = re.findall(rb"EMAILID \(([\w-]+)\) THREADID \(([\w-]+)\)", answer)
        assert len(ids) == 3 and len({e for e, _ in ids}) == 3, answer
        assert ids[0][1] == ids[1][1] != ids[2][1]  # the reply joins the first's thread
        answer = await c.command(b"a3 SEARCH EMAILID " + ids[1][0])
        assert b"* SEARCH 2\r\n" in answer
        answer = await c.command(b"a4 UID SEARCH THREADID " + ids[0][1])
        assert b"* SEARCH 1 2\r\n" in answer
        answer = await c.command(b"a5 SEARCH EMAILID Mnothing")
        assert b"* SEARCH\r\n" in answer
