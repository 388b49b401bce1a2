"""Filling a mailbox before a measurement: direct Maildir writes where the target allows it,
IMAP APPEND over a few connections otherwise (SMTP delivery if the target has no IMAP yet).
Bounded by a deadline; returns what got in."""

from __future__ import annotations

import asyncio
import poplib
import smtplib
import threading
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


def _smtp_all(
    target: Target, user: str, messages: list[bytes], connections: int, deadline: float
) -> int:
    """Delivery over SMTP, for a target whose IMAP is not there: threads, one session each."""
    lock = threading.Lock()
    state = {"next": 0, "done": 0}

    def worker() -> None:
        with smtplib.SMTP("127.0.0.1", target.ports["smtp"], timeout=30) as s:
            while time.monotonic() < deadline:
                with lock:
                    i = state["next"]
                    if i >= len(messages):
                        return
                    state["next"] += 1
                s.sendmail("seed@client.test", [user], messages[i])
                with lock:
                    state["done"] += 1

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 30))
    # Accepted is not yet stored: wait (bounded) until POP3 shows them all.
    want = state["done"]
    while time.monotonic() < deadline:
        p = poplib.POP3("127.0.0.1", target.ports["pop3"], timeout=30)
        p.user(user)
        p.pass_(PASSWORD)
        have = int(p.stat()[0])
        p.quit()
        if have >= want:
            return have
        time.sleep(0.5)
    return want


def seed(
    target: Target, user: str, messages: list[bytes], seconds: float, connections: int = 4
) -> tuple[int, float]:
    """(messages stored, seconds taken)."""
    t0 = time.monotonic()
    if target.direct_seed:
        return target.seed_direct(user, messages, t0 + seconds), time.monotonic() - t0
    if "imap" not in target.ports and {"smtp", "pop3"} <= target.ports.keys():
        return _smtp_all(target, user, messages, connections, t0 + seconds), time.monotonic() - t0
    n = asyncio.run(_append_all(target.ports["imap"], user, messages, connections, t0 + seconds))
    return n, time.monotonic() - t0
