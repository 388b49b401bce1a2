"""Filling a mailbox before a measurement: direct Maildir writes where the target allows it,
IMAP APPEND over a few connections otherwise. Bounded by a deadline; returns what got in."""

from __future__ import annotations

import asyncio
import time

from bench.load.imapclient import ImapClient
from bench.targets.base import PASSWORD, Target


async def _append_all(
    port: int, user: str, messages: list[bytes], connections: int, deadline: float
) -> int:
    next_index = 0
    done = 0

    async def worker() -> None:
        nonlocal next_index, done
        client = await ImapClient.connect("127.0.0.1", port)
        await client.login(user, PASSWORD)
        try:
            while next_index < len(messages) and time.monotonic() < deadline:
                i = next_index
                next_index += 1
                await client.append(messages[i], flags="\\Seen")
                done += 1
        finally:
            await client.logout()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return done


def seed(
    target: Target, user: str, messages: list[bytes], seconds: float, connections: int = 4
) -> tuple[int, float]:
    """(messages stored, seconds taken)."""
    t0 = time.monotonic()
    if target.direct_seed:
        target.seed_direct(user, messages)
        return len(messages), time.monotonic() - t0
    n = asyncio.run(_append_all(target.ports["imap"], user, messages, connections, t0 + seconds))
    return n, time.monotonic() - t0
