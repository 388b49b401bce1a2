"""IMAP: a mixed workload from many concurrent clients, in several load processes.

Each process drives one account with `clients` connections plus an IDLE probe. A client
logs in, selects INBOX and runs 200 operations drawn at random (weights below) before it logs out
and starts again, so LOGIN and SELECT are part of the mix (the first logins happen before the
measured window opens). APPENDs carry \\Deleted, and EXPUNGE removes them, so the mailbox stays
near its seeded size. The IDLE probe measures the time from an APPEND being sent to its EXISTS
arriving at a connection in IDLE on that mailbox (the wake-up latency).

The generator must not be the bottleneck: every process measures its own CPU time over the
window; one that used more than 90% of a core is reported as saturated.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import random
import time
from dataclasses import dataclass, field
from typing import Any

from bench.load.imapclient import ImapClient, ImapError
from bench.stats import percentile

# (operation, weight): reads dominate as in real mail clients; writes keep the indexes busy.
MIX: tuple[tuple[str, int], ...] = (
    ("FETCH FLAGS", 18),
    ("FETCH HEADER", 16),
    ("FETCH BODYSTRUCTURE", 14),
    ("FETCH PARTIAL", 14),
    ("STORE", 12),
    ("SEARCH", 8),
    ("APPEND", 9),
    ("EXPUNGE", 9),
)
# Logging in costs an argon2id hash (~0.2 s of CPU here): often enough to be in the mix,
# rarely enough that the mix does not become a password-hashing benchmark.
OPS_PER_SESSION = 200
SATURATED = 0.90
_SEARCHES = ("SEARCH FLAGGED", "SEARCH UNSEEN", 'SEARCH FROM "example"', 'SEARCH SUBJECT "re"')


@dataclass
class WorkerArgs:
    port: int
    user: str
    password: str
    clients: int
    start_at: float  # time.time() at which every process begins, so windows line up
    seconds: float
    seed_count: int
    appends: list[bytes]
    max_ops_per_client: int = 100_000
    rng_seed: int = 0


@dataclass
class WorkerResult:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # ms
    errors: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0
    cpu: float = 0.0
    ops: int = 0  # operations inside the window (warm-up LOGIN/SELECT excluded)
    warmup: int = 0
    first_error: str = ""


async def _op(c: ImapClient, op: str, rnd: random.Random, a: WorkerArgs) -> None:
    top = max(1, a.seed_count)
    n = rnd.randint(1, top)
    if op == "FETCH FLAGS":
        lo = rnd.randint(1, max(1, top - 49))
        await c.command(f"FETCH {lo}:{min(top, lo + 49)} (FLAGS)")
    elif op == "FETCH HEADER":
        await c.command(f"FETCH {n} (BODY.PEEK[HEADER])")
    elif op == "FETCH BODYSTRUCTURE":
        await c.command(f"FETCH {n}:{min(top, n + 9)} (BODYSTRUCTURE)")
    elif op == "FETCH PARTIAL":
        await c.command(f"FETCH {n} (BODY.PEEK[TEXT]<0.4096>)")
    elif op == "STORE":
        sign = "+" if rnd.random() < 0.5 else "-"
        await c.command(f"STORE {n} {sign}FLAGS.SILENT (\\Flagged)")
    elif op == "SEARCH":
        await c.command(rnd.choice(_SEARCHES))
    elif op == "APPEND":
        await c.append(rnd.choice(a.appends), flags="\\Deleted")
    elif op == "EXPUNGE":
        await c.command("EXPUNGE")


async def _session(a: WorkerArgs, lat: dict[str, list[float]]) -> ImapClient:
    c = await ImapClient.connect("127.0.0.1", a.port)
    t = time.monotonic()
    await c.login(a.user, a.password)
    lat["LOGIN"].append((time.monotonic() - t) * 1000)
    t = time.monotonic()
    await c.select("INBOX")
    lat["SELECT"].append((time.monotonic() - t) * 1000)
    return c


async def _worker(a: WorkerArgs, window_open: Any = None) -> WorkerResult:
    res = WorkerResult()
    lat: dict[str, list[float]] = collections.defaultdict(list)
    errors: dict[str, int] = collections.defaultdict(int)
    ops_names = [o for o, _ in MIX]
    weights = [w for _, w in MIX]

    def fail(op: str, exc: BaseException) -> None:
        errors[op] += 1
        if not res.first_error:
            res.first_error = f"{op}: {type(exc).__name__}: {exc}"[:200]

    # Warm-up, not timed as throughput: every client logs in before the window opens.
    # Otherwise a short window on two cores measures mostly the queue of argon2 hashes
    # that twenty simultaneous first LOGINs cause (their latencies are still recorded).
    await asyncio.sleep(max(0.0, a.start_at - time.time()))
    first: list[ImapClient | None] = []
    for outcome in await asyncio.gather(
        *(_session(a, lat) for _ in range(a.clients)), return_exceptions=True
    ):
        if isinstance(outcome, ImapClient):
            first.append(outcome)
        else:
            fail("LOGIN", outcome)
            first.append(None)
    res.warmup = len(lat["LOGIN"]) + len(lat["SELECT"])
    if window_open is not None:
        window_open.set()
    t_start = time.monotonic()
    end = t_start + a.seconds
    probe_mailbox = f"bench-idle-{a.rng_seed}"

    async def timed(op: str, coro: Any) -> Any:
        t = time.monotonic()
        out = await asyncio.wait_for(coro, max(1.0, end - t + 5))
        lat[op].append((time.monotonic() - t) * 1000)
        return out

    async def client(i: int) -> None:
        rnd = random.Random(a.rng_seed * 1000 + i)
        done = 0
        c = first[i]
        while time.monotonic() < end and done < a.max_ops_per_client:
            try:
                if c is None:
                    c = await asyncio.wait_for(_session(a, lat), max(1.0, end - time.monotonic()))
                for _ in range(OPS_PER_SESSION):
                    if time.monotonic() >= end or done >= a.max_ops_per_client:
                        break
                    op = rnd.choices(ops_names, weights)[0]
                    try:
                        await timed(op, _op(c, op, rnd, a))
                    except ImapError as exc:  # a NO/BAD: the session goes on
                        fail(op, exc)
                    done += 1
            except (TimeoutError, OSError, ImapError, asyncio.IncompleteReadError) as exc:
                # A re-login cut short by the window's end is the deadline, not an error.
                if time.monotonic() < end:
                    fail("SESSION", exc)
                    await asyncio.sleep(0.1)
            finally:
                if c is not None:
                    await c.logout()
                c = None

    async def idle_probe() -> None:
        """IDLE wake-up latency, measured exactly: one connection IDLEs on a mailbox that only
        the probe's other connection APPENDs to, one message at a time."""
        watcher = notifier = None
        try:
            notifier = await ImapClient.connect("127.0.0.1", a.port)
            await notifier.login(a.user, a.password)
            try:
                await notifier.command(f'CREATE "{probe_mailbox}"')
            except ImapError:
                pass  # already there from an earlier round
            watcher = await ImapClient.connect("127.0.0.1", a.port)
            await watcher.login(a.user, a.password)
            await watcher.select(probe_mailbox)
            tag = await watcher.idle_start()
            while time.monotonic() < end - 1:
                before = watcher.exists
                sent = time.monotonic()
                append = asyncio.create_task(notifier.append(a.appends[0], mailbox=probe_mailbox))
                woke = False
                while time.monotonic() < sent + 10:
                    try:
                        await asyncio.wait_for(watcher.idle_wait(), sent + 10 - time.monotonic())
                    except TimeoutError:
                        break
                    if watcher.exists > before:
                        lat["IDLE wake-up"].append((time.monotonic() - sent) * 1000)
                        woke = True
                        break
                await append
                if not woke:
                    fail("IDLE wake-up", TimeoutError("no EXISTS within 10 s of an APPEND"))
                await asyncio.sleep(0.2)  # a steady trickle, not part of the load
            await asyncio.wait_for(watcher.idle_done(tag), 10)
        except (TimeoutError, OSError, ImapError, asyncio.IncompleteReadError) as exc:
            fail("IDLE wake-up", exc)
        finally:
            for conn in (watcher, notifier):
                if conn is not None:
                    await conn.logout()

    cpu0 = time.process_time()
    await asyncio.gather(idle_probe(), *(client(i) for i in range(a.clients)))
    res.cpu = time.process_time() - cpu0
    res.wall = time.monotonic() - t_start
    res.ops = sum(len(v) for k, v in lat.items() if k not in ("IDLE wake-up",)) - res.warmup
    res.latencies = dict(lat)
    res.errors = dict(errors)
    return res


def _run_worker(a: WorkerArgs, window_open: Any, results: Any) -> None:
    results.put(asyncio.run(_worker(a, window_open)))


@dataclass
class ImapRound:
    ops_per_s: float
    per_command: dict[str, dict[str, float]]  # op -> count, p50, p90, p99 (ms)
    generator_cpu: list[float]  # fraction of one core, per load process
    server_cpu_ms_per_op: float
    errors: dict[str, int]
    first_error: str

    @property
    def saturated(self) -> bool:
        return any(u > SATURATED for u in self.generator_cpu)


def run_round(
    port: int,
    users: list[str],
    password: str,
    clients: int,
    seconds: float,
    seed_count: int,
    appends: list[bytes],
    server_cpu: Any,
    round_no: int,
) -> ImapRound:
    """One measured window. `users` has one account per load process; `server_cpu` returns
    the server tree's CPU seconds so far."""
    start_at = time.time() + 1.0  # time for every process to fork and import
    args = [
        WorkerArgs(
            port,
            u,
            password,
            clients,
            start_at,
            seconds,
            seed_count,
            appends,
            rng_seed=round_no * 100 + i,
        )
        for i, u in enumerate(users)
    ]
    # fork: the parent has no event loop running here, and forking skips re-imports.
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    opened = [ctx.Event() for _ in args]
    workers = [
        ctx.Process(target=_run_worker, args=(a, ev, queue), daemon=True)
        for a, ev in zip(args, opened, strict=True)
    ]
    for w in workers:
        w.start()
    # Server CPU is sampled from the moment every window is open (warm-up logins excluded).
    for ev in opened:
        ev.wait(timeout=60)
    cpu0 = server_cpu()
    results: list[WorkerResult] = []
    try:
        for _ in workers:
            results.append(queue.get(timeout=seconds + 90))
    finally:
        server_cpu_s = server_cpu() - cpu0
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.kill()
    merged: dict[str, list[float]] = collections.defaultdict(list)
    errors: dict[str, int] = collections.defaultdict(int)
    for r in results:
        for op, vals in r.latencies.items():
            merged[op].extend(vals)
        for op, n in r.errors.items():
            errors[op] += n
    mixed_ops = sum(r.ops for r in results)
    per_command = {}
    for op, vals in sorted(merged.items()):
        vals.sort()
        per_command[op] = {
            "count": len(vals),
            "p50": percentile(vals, 50),
            "p90": percentile(vals, 90),
            "p99": percentile(vals, 99),
        }
    return ImapRound(
        # Each process timed its own window (they open when its clients have logged in).
        ops_per_s=sum(r.ops / r.wall for r in results if r.wall),
        per_command=per_command,
        generator_cpu=[r.cpu / r.wall if r.wall else 0.0 for r in results],
        server_cpu_ms_per_op=server_cpu_s * 1000 / mixed_ops if mixed_ops else float("nan"),
        errors=dict(errors),
        first_error=next((r.first_error for r in results if r.first_error), ""),
    )
