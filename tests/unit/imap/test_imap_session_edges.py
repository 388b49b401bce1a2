"""Session edge cases: mailbox name encodings, CREATE-SPECIAL-USE, bad input, error limits."""

from __future__ import annotations

from pathlib import Path

from tests.unit.imap.imap_session_helpers import environment


async def test_mutf7_for_rev1_and_utf8_after_enable(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        assert b"a1 OK" in await c.command(b"a1 CREATE R&AOk-sum&AOk-")  # "Résumé"
        assert "Résumé" in [m.name for m in await env.store.list_mailboxes(env.alice.id)]
        assert b'"/" R&AOk-sum&AOk-\r\n' in await c.command(b'a2 LIST "" R*')
        await c.command(b"a3 ENABLE UTF8=ACCEPT")
        assert '"/" "Résumé"\r\n'.encode() in await c.command(b'a4 LIST "" R*')
        assert b"a5 OK" in await c.command('a5 SELECT "Résumé"'.encode())


async def test_create_special_use(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        assert b"a1 OK" in await c.command(b"a1 CREATE MySent (USE (\\Sent))")
        assert b'(\\HasNoChildren \\Sent) "/" MySent' in await c.command(b'a2 LIST "" MySent')
        assert b"a3 NO [USEATTR]" in await c.command(b"a3 CREATE Everything (USE (\\All))")


async def test_bad_commands_and_error_limit(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        assert b"a1 BAD" in await c.command(b"a1 FETCH (")
        assert b"a2 BAD" in await c.command(b"a2 SEARCH (ALL")
        assert b"a3 BAD" in await c.command(b"a3 FROBNICATE")
        answer = await c.command(b"a4 APPEND INBOX {3000000000}")
        assert b"a4 NO [TOOBIG]" in answer
        await c.command(b"a5 SELECT INBOX")
        assert b"a6 BAD" in await c.command(b"a6 FETCH 5 FLAGS")  # beyond EXISTS (0)
        c.send(b"x BAD\r\n" * 30)
        answer = await c.read_until(b"* BYE")
        assert b"* BYE Too many errors" in answer
        await c.task  # the session ended


async def test_commands_out_of_state(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client(login=None)
        assert b"a1 BAD" in await c.command(b'a1 LIST "" *')
        c2 = await env.client()
        assert b"a2 BAD" in await c2.command(b"a2 EXPUNGE")
        assert b"a3 BAD" in await c2.command(b"a3 LOGIN a b")
