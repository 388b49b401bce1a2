"""Session transcripts: QUOTA (RFC 9208) and OVERQUOTA on APPEND and COPY."""

from __future__ import annotations

from pathlib import Path

from tests.unit.imap.imap_session_helpers import deliver, environment, message


async def test_quota_roots_usage_and_setquota_refused(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        raw = message("sized", body="y" * 3000 + "\r\n")
        await deliver(env.store, env.alice, raw)
        c = await env.client()
        assert b" QUOTA QUOTA=RES-STORAGE" in await c.command(b"c1 CAPABILITY")
        # Unlimited: the root exists and lists no resource.
        answer = await c.command(b"a1 GETQUOTAROOT INBOX")
        assert b'* QUOTAROOT INBOX ""\r\n* QUOTA "" ()\r\na1 OK' in answer
        await env.store.set_quota("alice@example.org", 10 * 1024 + 500)
        answer = await c.command(b'a2 GETQUOTA ""')
        used = -(-len(raw) // 1024)  # 1024-octet units, a started unit counts
        assert b'* QUOTA "" (STORAGE %d 10)\r\na2 OK' % used in answer
        assert b"a3 NO [NONEXISTENT]" in await c.command(b"a3 GETQUOTA other")
        assert b"a4 NO [NONEXISTENT]" in await c.command(b"a4 GETQUOTAROOT nowhere")
        assert b"a5 NO [NOPERM]" in await c.command(b'a5 SETQUOTA "" (STORAGE 99999)')
        answer = await c.command(b'a6 GETQUOTA ""')
        assert b"(STORAGE %d 10)" % used in answer


async def test_append_and_copy_over_quota_answer_overquota(tmp_path: Path) -> None:
    async with environment(tmp_path) as env:
        raw = message("big", body="z" * 4000 + "\r\n")
        await deliver(env.store, env.alice, raw)
        await env.store.set_quota("alice@example.org", len(raw) + 1000)
        c = await env.client()
        answer = await c.command(b"a1 APPEND INBOX {%d+}\r\n" % len(raw) + raw)
        assert b"a1 NO [OVERQUOTA]" in answer
        await c.command(b"a2 SELECT INBOX")
        assert b"a3 NO [OVERQUOTA]" in await c.command(b"a3 COPY 1 INBOX")
        await c.command(b"a4 STORE 1 +FLAGS (\\Deleted)")
        answer = await c.command(b"a5 STATUS INBOX (DELETED DELETED-STORAGE)")
        assert b"* STATUS INBOX (DELETED 1 DELETED-STORAGE %d)" % -(-len(raw) // 1024) in answer
        await c.command(b"a6 EXPUNGE")
        # Room again once the message is gone.
        assert b"a7 OK" in await c.command(b"a7 APPEND INBOX {%d+}\r\n" % len(raw) + raw)
