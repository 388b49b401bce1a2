"""Memory: resident memory of the whole server per idle IMAP connection in IDLE.

Connections are opened in steps (1,000 then 10,000 in the full run), each logged in, INBOX
selected and IDLE started; two seconds after a step the server's process tree is measured.
Per connection = (tree memory now - tree memory before any connection) / connections.

Logins use AUTHENTICATE SCRAM-SHA-256 where the server offers it: with argon2id, 10,000 LOGINs
would cost ~0.2 s of CPU each, over half an hour on two cores. A server without SCRAM gets
LOGIN, and the deadline (one for all steps) shows how far it got.
"""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass

from bench.load.imapclient import ImapClient, ImapError
from bench.procs import Memory
from bench.targets.base import PASSWORD, Target


@dataclass
class MemoryStep:
    connections: int  # open and idling when measured
    wanted: int
    rss_per_conn: float  # bytes
    pss_per_conn: float  # bytes
    total: Memory
    seconds: float  # to open this step's connections
    auth: str
    errors: int
    first_error: str


def raise_nofile() -> int:
    """Soft fd limit up to the hard limit; servers we start inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def _run(
    target: Target,
    users: list[str],
    steps: tuple[int, ...],
    deadline_s: float,
    concurrency: int = 100,
) -> list[MemoryStep]:
    port = target.ports["imap"]
    base = target.memory()
    conns: list[ImapClient] = []
    out: list[MemoryStep] = []
    probe = await ImapClient.connect("127.0.0.1", port)
    use_scram = b"AUTH=SCRAM-SHA-256" in (await probe.capabilities()).upper()
    await probe.logout()
    auth = "SCRAM-SHA-256" if use_scram else "LOGIN"
    errors = 0
    first_error = ""
    end = time.monotonic() + deadline_s  # for all steps together: the big one needs most
    try:
        for want in steps:
            t0 = time.monotonic()
            deadline = end
            sem = asyncio.Semaphore(concurrency)

            async def one(i: int, deadline: float = deadline, sem: asyncio.Semaphore = sem) -> None:
                nonlocal errors, first_error
                async with sem:
                    if time.monotonic() >= deadline:
                        return
                    c = None
                    try:
                        c = await ImapClient.connect("127.0.0.1", port)
                        user = users[i % len(users)]
                        if use_scram:
                            await c.authenticate_scram(user, PASSWORD)
                        else:
                            await c.login(user, PASSWORD)
                        await c.select("INBOX")
                        await c.idle_start()
                        conns.append(c)
                    except (TimeoutError, OSError, ImapError, asyncio.IncompleteReadError) as exc:
                        errors += 1
                        first_error = first_error or f"{type(exc).__name__}: {exc}"[:200]
                        if c is not None:
                            c.close()

            tasks = [asyncio.create_task(one(i)) for i in range(len(conns), want)]
            try:
                await asyncio.wait_for(asyncio.gather(*tasks), max(1.0, end - t0) + 30)
            except TimeoutError:
                for t in tasks:
                    t.cancel()
            took = time.monotonic() - t0
            await asyncio.sleep(2.0)  # let login processes settle and the allocator quiesce
            mem = target.memory()
            n = len(conns)
            out.append(
                MemoryStep(
                    connections=n,
                    wanted=want,
                    rss_per_conn=(mem.rss - base.rss) / n if n else float("nan"),
                    pss_per_conn=(mem.pss - base.pss) / n if n else float("nan"),
                    total=mem,
                    seconds=took,
                    auth=auth,
                    errors=errors,
                    first_error=first_error,
                )
            )
            if n < want:
                break  # the next step would only repeat the shortfall
    finally:
        for c in conns:
            c.close()
        await asyncio.sleep(0.5)
    return out


def run(
    target: Target, users: list[str], steps: tuple[int, ...], deadline_s: float
) -> list[MemoryStep]:
    raise_nofile()
    return asyncio.run(_run(target, users, steps, deadline_s))
