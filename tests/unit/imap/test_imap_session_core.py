"""Session transcripts: authentication, capabilities, SELECT, mailbox management, LIST/STATUS."""

from __future__ import annotations

from pathlib import Path

from tests.unit.imap.imap_session_helpers import deliver, environment, message


async def test_greeting_capability_and_logout(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client(login=None)
        answer = await c.command(b"a1 CAPABILITY")
        assert b"* CAPABILITY IMAP4rev1 IMAP4rev2" in answer
        assert b"AUTH=PLAIN" in answer  # loopback: plain text allowed
        assert b"LOGINDISABLED" not in answer
        assert b"IDLE" not in answer  # only after authentication
        answer = await c.command(b"a2 LOGOUT")
        assert answer.endswith(b"* BYE Logging out\r\na2 OK LOGOUT completed\r\n")


async def test_login_refused_without_tls_from_remote(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client(login=None, peer_ip="192.0.2.7")
        answer = await c.command(b"a1 CAPABILITY")
        assert b"LOGINDISABLED" in answer and b"AUTH=PLAIN" not in answer
        answer = await c.command(b'a2 LOGIN alice@example.org "secret pass"')
        assert b"a2 NO [PRIVACYREQUIRED]" in answer


async def test_login_wrong_password_and_state(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client(login=None)
        answer = await c.command(b"a1 LOGIN alice@example.org wrong")
        assert b"a1 NO [AUTHENTICATIONFAILED]" in answer
        answer = await c.command(b"a2 SELECT INBOX")
        assert b"a2 BAD" in answer


async def test_authenticate_plain_with_initial_response(tmp_path: Path) -> None:
    import base64

    async with environment(tmp_path) as env:
        c = await env.client(login=None)
        ir = base64.b64encode(b"\0alice@example.org\0secret pass")
        answer = await c.command(b"a1 AUTHENTICATE PLAIN " + ir)
        assert b"a1 OK [CAPABILITY " in answer and b" IDLE" in answer


async def test_authenticate_plain_with_challenge(tmp_path: Path) -> None:
    import base64

    async with environment(tmp_path) as env:
        c = await env.client(login=None)
        c.send(b"a1 AUTHENTICATE PLAIN\r\n")
        assert (await c.read_until(b"+ ")).endswith(b"+ \r\n")
        c.send(base64.b64encode(b"\0alice@example.org\0secret pass") + b"\r\n")
        assert b"a1 OK" in await c.read_until(b"\r\na1 ")


async def test_select_reports_mailbox_state(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.alice, message("one"))
        await deliver(env.store, env.alice, message("two"))
        c = await env.client()
        answer = await c.command(b"a1 SELECT INBOX")
        assert b"* 2 EXISTS\r\n" in answer
        assert b"* 2 RECENT\r\n" in answer  # the first session to see them (RFC 3501 2.3.2)
        assert b"* OK [UNSEEN 1]" in answer
        assert b"* OK [UIDVALIDITY " in answer
        assert b"* OK [UIDNEXT 3]" in answer
        assert (
            b"* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)]" in answer
        )
        assert b"* OK [HIGHESTMODSEQ " in answer
        assert b"a1 OK [READ-WRITE] SELECT completed" in answer
        answer = await c.command(b"a2 EXAMINE INBOX")
        assert b"a2 OK [READ-ONLY]" in answer
        answer = await c.command(b"a3 SELECT nosuch")
        assert b"a3 NO [NONEXISTENT]" in answer
        answer = await c.command(b"a4 FETCH 1 FLAGS")
        assert b"a4 BAD" in answer  # a failed SELECT leaves no mailbox selected


async def test_enable_imap4rev2_changes_select(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        answer = await c.command(b"a1 ENABLE IMAP4rev2 CONDSTORE X-UNKNOWN")
        assert b"* ENABLED IMAP4rev2 CONDSTORE\r\n" in answer
        answer = await c.command(b"a2 SELECT inbox")
        assert b"RECENT" not in answer
        # RFC 9051 section 8: the name as given comes back in OLDNAME.
        assert b'* LIST (\\HasNoChildren) "/" INBOX ("OLDNAME" ("inbox"))\r\n' in answer
        answer = await c.command(b"a3 EXAMINE INBOX")
        assert b'* LIST (\\HasNoChildren) "/" INBOX\r\n' in answer


async def test_list_patterns_and_attributes(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        assert b"a1 OK" in await c.command(b"a1 CREATE Projects/2024/")
        assert b"a2 NO [ALREADYEXISTS]" in await c.command(b"a2 CREATE Projects")
        answer = await c.command(b'a3 LIST "" "%"')
        assert b'* LIST (\\HasNoChildren) "/" INBOX\r\n' in answer
        assert b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n' in answer
        assert b'* LIST (\\HasChildren) "/" Projects\r\n' in answer
        assert b"2024" not in answer
        answer = await c.command(b'a4 LIST "" "*"')
        assert b'"/" Projects/2024\r\n' in answer
        answer = await c.command(b'a5 LIST "" ""')
        assert b'* LIST (\\Noselect) "/" ""\r\n' in answer
        answer = await c.command(b'a6 LIST "Projects/" "%"')
        assert b'"/" Projects/2024\r\n' in answer and b"Sent" not in answer
        answer = await c.command(b'a7 LIST (SPECIAL-USE) "" "*"')
        assert b"Projects" not in answer and b"\\Trash" in answer
        answer = await c.command(b'a8 LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT))')
        assert b"* STATUS INBOX (MESSAGES 0 UIDNEXT 1)\r\n" in answer


async def test_list_subscribed_and_lsub(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        await c.command(b"a1 CREATE a/b")
        await c.command(b"a2 SUBSCRIBE a/b")
        await c.command(b"a3 UNSUBSCRIBE Sent")
        answer = await c.command(b'a4 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
        assert b'* LIST (\\HasChildren) "/" a ("CHILDINFO" ("SUBSCRIBED"))\r\n' in answer
        assert b"Sent" not in answer
        answer = await c.command(b'a5 LSUB "" "*"')
        assert b'* LSUB () "/" a/b\r\n' in answer and b"Sent" not in answer


async def test_status_items(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        raw = message("one")
        await deliver(env.store, env.alice, raw)
        c = await env.client()
        answer = await c.command(
            b"a1 STATUS INBOX (MESSAGES UIDNEXT UNSEEN DELETED SIZE HIGHESTMODSEQ)"
        )
        assert (
            b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UNSEEN 1 DELETED 0 SIZE %d HIGHESTMODSEQ "
            % len(raw)
            in answer
        )
        assert b"a2 NO [NONEXISTENT]" in await c.command(b"a2 STATUS nope (MESSAGES)")


async def test_rename_delete_and_inbox_rules(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        await c.command(b"a1 CREATE old/child")
        assert b"a2 OK" in await c.command(b"a2 RENAME old new")
        answer = await c.command(b'a3 LIST "" "*"')
        assert b"new/child" in answer and b"old" not in answer
        assert b"a4 NO" in await c.command(b"a4 DELETE INBOX")
        assert b"a5 NO [NONEXISTENT]" in await c.command(b"a5 DELETE nothing")
        assert b"a6 OK" in await c.command(b"a6 DELETE new/child")
        assert b"new/child" not in await c.command(b'a7 LIST "" "*"')


async def test_names_never_leave_the_account(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        await deliver(env.store, env.bob, message("for bob only"))
        c = await env.client()
        for name in (b"../bob@example.org/INBOX", b"bob@example.org/INBOX", b'"/INBOX"'):
            answer = await c.command(b"a1 SELECT " + name)
            assert b"a1 NO" in answer and b"EXISTS" not in answer
        await c.command(b"a2 CREATE ../bob")
        answer = await c.command(b'a3 LIST "" "*"')
        assert b"for bob" not in answer
        bob_boxes = [m.name for m in await env.store.list_mailboxes(env.bob.id)]
        assert ".." not in bob_boxes and "../bob" not in bob_boxes
        answer = await c.command(b'a4 STATUS "../bob" (MESSAGES)')
        assert b"MESSAGES 0" in answer  # alice's own new folder, not bob's INBOX


async def test_namespace_id_noop(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        c = await env.client()
        assert b'* NAMESPACE (("" "/")) NIL NIL\r\n' in await c.command(b"a1 NAMESPACE")
        assert b'* ID ("name" "Postar")' in await c.command(b'a2 ID ("name" "test")')
        assert b"a3 OK NOOP completed" in await c.command(b"a3 NOOP")
