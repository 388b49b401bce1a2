"""A large mailbox: FETCH 1:* (UID FLAGS) and SEARCH TEXT over 100,000 messages.

The first SELECT is timed on its own: Dovecot builds its index then, Postar did its work at
APPEND time, so folding it into the FETCH figure would hide where each spends its effort.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench.load.imapclient import ImapClient
from bench.targets.base import PASSWORD

# A word in a few percent of the corpus messages: the server must read every body to find it.
NEEDLE = "mortgage"


@dataclass
class LargeResult:
    exists: int = 0
    first_select_s: float = 0.0
    fetch_s: list[float] = field(default_factory=list)
    search_s: list[float] = field(default_factory=list)
    fetch_lines: int = 0
    search_hits: int = 0


async def _run(port: int, user: str, rounds: int, deadline_s: float) -> LargeResult:
    res = LargeResult()
    c = await ImapClient.connect("127.0.0.1", port)
    try:
        await c.login(user, PASSWORD)
        t = time.monotonic()
        res.exists = await asyncio.wait_for(c.select("INBOX"), deadline_s)
        res.first_select_s = time.monotonic() - t
        for _ in range(rounds):
            t = time.monotonic()
            res.fetch_lines = await asyncio.wait_for(
                c.count_lines("FETCH 1:* (UID FLAGS)"), deadline_s
            )
            res.fetch_s.append(time.monotonic() - t)
            t = time.monotonic()
            lines = await asyncio.wait_for(c.command(f'SEARCH TEXT "{NEEDLE}"'), deadline_s)
            res.search_s.append(time.monotonic() - t)
            hits = [x for x in lines if x.startswith(b"* SEARCH")]
            res.search_hits = len(hits[0].split()) - 2 if hits else 0
    finally:
        await c.logout()
    return res


def run(port: int, user: str, rounds: int, deadline_s: float) -> LargeResult:
    return asyncio.run(_run(port, user, rounds, deadline_s))
