"""Session transcripts: APPEND, FETCH (every item, sections, partial), STORE, SEARCH,
COPY/MOVE, EXPUNGE."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.imap.imap_session_helpers import deliver, environment, message

MULTIPART = (
    b"From: Carol <carol@example.net>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: parts\r\n"
    b"Date: Tue, 8 Feb 2022 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"first part\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAw==\r\n"
    b"--b1--\r\n"
)


async def test_append_then_fetch_everything(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        raw = message("appended")
        c.send(b'a1 APPEND INBOX (\\Flagged) "07-Feb-2022 21:52:25 -0800" {%d}\r\n' % len(raw))
        assert b"+ " in await c.read_until(b"+ ")
        c.send(raw + b"\r\n")
        answer = await c.read_until(b"\r\na1 ")
        assert re.search(rb"a1 OK \[APPENDUID \d+ 1\] APPEND completed", answer), answer
        await c.command(b"a2 SELECT INBOX")
        answer = await c.command(b"a3 FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE UID ENVELOPE)")
        assert b"FLAGS (\\Flagged \\Recent)" in answer
        assert b'INTERNALDATE " 8-Feb-2022 05:52:25 +0000"' in answer
        assert b"RFC822.SIZE %d" % len(raw) in answer
        assert (
            b'ENVELOPE ("Mon, 7 Feb 2022 21:52:25 -0800" "appended" '
            b'(("Bob Example" NIL "bob" "example.net"))' in answer
        )
        answer = await c.command(b"a4 FETCH 1 BODY.PEEK[]")
        assert b"BODY[] {%d}\r\n" % len(raw) + raw + b")" in answer
        answer = await c.command(b"a5 FETCH 1 FLAGS")
        assert b"\\Seen" not in answer  # PEEK


async def test_append_to_missing_mailbox_asks_trycreate(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        answer = await c.command(b"a1 APPEND nowhere {3+}\r\nabc")
        assert b"a1 NO [TRYCREATE]" in answer


async def test_multiappend(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        m1, m2 = message("m1"), message("m2")
        answer = await c.command(
            b"a1 APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s" % (len(m1), m1, len(m2), m2)
        )
        assert re.search(rb"a1 OK \[APPENDUID \d+ 1:2\]", answer), answer


async def test_body_sections_and_partial(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, MULTIPART)
        c = await env.client()
        await c.command(b"a0 SELECT INBOX")
        answer = await c.command(
            b"a1 FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] BINARY.SIZE[2])"
        )
        assert b"BODY[1] {10}\r\nfirst part" in answer
        assert b"BODY[2.MIME] {77}\r\nContent-Type: application/octet-stream\r\n" in answer
        assert b"BINARY[2] ~{4}\r\n\x00\x01\x02\x03" in answer
        assert b"BINARY.SIZE[2] 4" in answer
        answer = await c.command(b"a2 FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject From)]")
        assert (
            b"BODY[HEADER.FIELDS (Subject From)] {51}\r\n"
            b"From: Carol <carol@example.net>\r\nSubject: parts\r\n\r\n" in answer
        )
        answer = await c.command(
            b"a3 FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (Subject From To Date MIME-Version)]"
        )
        assert b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n)' in answer
        answer = await c.command(b"a4 FETCH 1 BODY.PEEK[1]<2.3>")
        assert b"BODY[1]<2> {3}\r\nrst)" in answer
        answer = await c.command(b"a5 FETCH 1 BODY.PEEK[TEXT]<0.6>")
        assert b"BODY[TEXT]<0> {6}\r\n--b1\r\n)" in answer
        answer = await c.command(b"a6 FETCH 1 BODY.PEEK[9]")
        assert b"BODY[9] NIL" in answer
        answer = await c.command(b"a7 FETCH 1 BODYSTRUCTURE")
        assert (
            b'BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1' in answer
        )
        assert b'"MIXED" ("BOUNDARY" "b1")' in answer
        answer = await c.command(b"a8 FETCH 1 RFC822.HEADER")
        assert b"RFC822.HEADER {" in answer


async def test_partial_fetch_reads_only_what_it_sends(tmp_path: Path, monkeypatch) -> None:
    async with environment(tmp_path) as env:
        big = message("big", "x" * 2_000_000 + "\r\n")
        await deliver(env.store, env.alice, big)
        c = await env.client()
        await c.command(b"a0 SELECT INBOX")
        reads: list[int] = []
        sizes: set[int | None] = set()
        original = env.store.read_blob

        async def counting(
            blob_id: str, start: int = 0, length: int | None = None, *, size: int | None = None
        ) -> bytes:
            data = await original(blob_id, start, length, size=size)
            reads.append(len(data))
            sizes.add(size)
            return data

        monkeypatch.setattr(env.store, "read_blob", counting)
        answer = await c.command(b"a1 FETCH 1 BODY.PEEK[TEXT]<1000.10>")
        assert b"BODY[TEXT]<1000> {10}\r\nxxxxxxxxxx)" in answer
        assert sum(reads) == 10
        reads.clear()
        answer = await c.command(b"a2 FETCH 1 BODY.PEEK[]")
        assert len(answer) > len(big) and max(reads) <= 64 * 1024  # streamed in chunks
        # Every read, the streamed ones included, says how large the body is, so that the
        # store reads this one (a file) without looking for it in the database first.
        assert sizes == {len(big)}


async def test_fetch_sets_seen_unless_peek_or_read_only(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("one"))
        c = await env.client()
        await c.command(b"a0 EXAMINE INBOX")
        answer = await c.command(b"a1 FETCH 1 BODY[TEXT]")
        assert b"\\Seen" not in answer
        await c.command(b"a2 SELECT INBOX")
        answer = await c.command(b"a3 FETCH 1 BODY[TEXT]")
        assert b"FLAGS (\\Seen \\Recent)" in answer
        answer = await c.command(b"a4 UID FETCH 1:* (FLAGS)")
        assert b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))" in answer


async def test_store_flags_forms(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        for s in ("a", "b", "c"):
            await deliver(env.store, env.alice, message(s))
        c = await env.client()
        await c.command(b"a0 SELECT INBOX")
        answer = await c.command(b"a1 STORE 1:2 +FLAGS (\\Flagged $Work)")
        assert b"* 1 FETCH (FLAGS ($Work \\Flagged \\Recent))" in answer
        assert b"* 2 FETCH (FLAGS ($Work \\Flagged \\Recent))" in answer
        answer = await c.command(b"a2 STORE 1 -FLAGS.SILENT ($Work)")
        assert b"FETCH" not in answer and b"a2 OK" in answer
        answer = await c.command(b"a3 UID STORE 3 FLAGS (\\Seen)")
        assert b"* 3 FETCH (FLAGS (\\Seen \\Recent) UID 3)" in answer
        answer = await c.command(b"a4 STORE 9 FLAGS (\\Seen)")
        assert b"a4 BAD" in answer
        answer = await c.command(b"a5 FETCH 1:3 FLAGS")
        assert b"* 1 FETCH (FLAGS (\\Flagged \\Recent))" in answer


async def test_store_unchangedsince(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("a"))
        await deliver(env.store, env.alice, message("b"))
        c = await env.client()
        await c.command(b"a0 SELECT INBOX (CONDSTORE)")
        answer = await c.command(b"a1 FETCH 1:2 (MODSEQ)")
        modseqs = [int(x) for x in re.findall(rb"MODSEQ \((\d+)\)", answer)]
        await c.command(b"a2 STORE 2 +FLAGS (\\Seen)")
        answer = await c.command(
            b"a3 STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % max(modseqs)
        )
        assert b"a3 OK [MODIFIED 2]" in answer
        assert b"* 1 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (" in answer


async def test_search_keys(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("apples", "I like apples and pears\r\n"))
        await deliver(env.store, env.alice, MULTIPART)
        await deliver(
            env.store, env.alice, message("zebra", "nothing here\r\n", Cc="dave@example.com")
        )
        c = await env.client()
        await c.command(b"a0 SELECT INBOX")
        await c.command(b"a1 STORE 2 +FLAGS (\\Flagged)")

        async def search(criteria: bytes) -> bytes:
            answer = await c.command(b"s SEARCH " + criteria)
            return answer.split(b"\r\n")[0]

        assert await search(b"ALL") == b"* SEARCH 1 2 3"
        assert await search(b"FLAGGED") == b"* SEARCH 2"
        assert await search(b"UNFLAGGED") == b"* SEARCH 1 3"
        assert await search(b"FROM carol") == b"* SEARCH 2"
        assert await search(b"SUBJECT ZEBRA") == b"* SEARCH 3"
        assert await search(b"CC dave") == b"* SEARCH 3"
        assert await search(b"HEADER Content-Type multipart") == b"* SEARCH 2"
        assert await search(b"BODY pears") == b"* SEARCH 1"
        assert await search(b"TEXT zebra") == b"* SEARCH 3"
        assert await search(b"OR FLAGGED SUBJECT apples") == b"* SEARCH 1 2"
        assert await search(b"NOT FLAGGED") == b"* SEARCH 1 3"
        assert await search(b"SENTON 8-Feb-2022") == b"* SEARCH 2"
        assert await search(b"SENTBEFORE 8-Feb-2022") == b"* SEARCH 1 3"
        assert await search(b"SINCE 1-Jan-2000") == b"* SEARCH 1 2 3"
        assert await search(b"BEFORE 1-Jan-2000") == b"* SEARCH"
        assert await search(b"LARGER 300") == b"* SEARCH 2"
        assert await search(b"2:3 UID 1:2") == b"* SEARCH 2"
        assert await search(b"YOUNGER 3600") == b"* SEARCH 1 2 3"
        answer = await c.command(b"u UID SEARCH SUBJECT apples")
        assert answer.startswith(b"* SEARCH 1\r\n")
        answer = await c.command(b"e SEARCH RETURN (MIN MAX COUNT ALL) NOT FLAGGED")
        assert b'* ESEARCH (TAG "e") MIN 1 MAX 3 COUNT 2 ALL 1,3\r\n' in answer
        answer = await c.command(b"m SEARCH MODSEQ 1")
        assert re.search(rb"\* SEARCH 1 2 3 \(MODSEQ \d+\)", answer)


async def test_searchres_saved_result(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        for s in ("a", "b", "c"):
            await deliver(env.store, env.alice, message(s))
        c = await env.client()
        await c.command(b"a0 SELECT INBOX")
        answer = await c.command(b"a1 UID SEARCH RETURN (SAVE) SUBJECT b")
        assert b"ESEARCH" not in answer and b"a1 OK" in answer
        answer = await c.command(b"a2 FETCH $ (UID)")
        assert b"* 2 FETCH (UID 2)" in answer and b"* 1 FETCH" not in answer


async def test_copy_move_expunge(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        for s in ("a", "b", "c"):
            await deliver(env.store, env.alice, message(s))
        c = await env.client()
        await c.command(b"a0 SELECT INBOX")
        answer = await c.command(b"a1 COPY 1:2 Archive")
        assert re.search(rb"a1 OK \[COPYUID \d+ 1:2 1:2\] COPY completed", answer), answer
        assert b"a2 NO [TRYCREATE]" in await c.command(b"a2 COPY 1 Nowhere")
        answer = await c.command(b"a3 MOVE 2 Trash")
        assert re.search(rb"\* OK \[COPYUID \d+ 2 1\]", answer)
        assert b"* 2 EXPUNGE\r\n" in answer
        await c.command(b"a4 STORE 1 +FLAGS.SILENT (\\Deleted)")
        answer = await c.command(b"a5 EXPUNGE")
        assert b"* 1 EXPUNGE\r\n" in answer
        answer = await c.command(b"a6 FETCH 1:* (UID)")
        assert b"* 1 FETCH (UID 3)" in answer
        await c.command(b"a7 STORE 1 +FLAGS.SILENT (\\Deleted)")
        answer = await c.command(b"a8 UID EXPUNGE 1:2")
        assert b"EXPUNGE\r\n" not in answer.split(b"a8")[0]  # UID 3 is not in the set
        answer = await c.command(b"a9 UID EXPUNGE 3")
        assert b"* 1 EXPUNGE\r\n" in answer
        assert b"a10 OK" in await c.command(b"a10 STATUS Archive (MESSAGES)")
        answer = await c.command(b"a11 STATUS Trash (MESSAGES)")
        assert b"MESSAGES 1" in answer


async def test_close_expunges_silently_and_unselect_does_not(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("a"))
        await deliver(env.store, env.alice, message("b"))
        c = await env.client()
        await c.command(b"a0 SELECT INBOX")
        await c.command(b"a1 STORE 1 +FLAGS.SILENT (\\Deleted)")
        answer = await c.command(b"a2 UNSELECT")
        assert b"EXPUNGE" not in answer
        await c.command(b"a3 SELECT INBOX")
        answer = await c.command(b"a4 CLOSE")
        assert b"EXPUNGE" not in answer and b"a4 OK" in answer
        answer = await c.command(b"a5 STATUS INBOX (MESSAGES)")
        assert b"MESSAGES 1" in answer
