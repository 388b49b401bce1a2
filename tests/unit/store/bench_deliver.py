"""Deliveries per second: 20 concurrent tasks delivering 4 KB messages, fsync on.

Not a test (timing on shared machines is noise); run by hand:
    python tests/unit/store/bench_deliver.py [--seconds 5] [--tasks 20] [--window 0.002]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from store_helpers import make_message

from postar.store.model import DeliveryTarget
from postar.store.sqlite.backend import SQLiteStore


async def run(seconds: float, tasks: int, window: float, fsync: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp), fsync=fsync, group_commit_window=window)
        await store.open()
        await store.add_domain("example.org")
        account = await store.add_account("bench@example.org", "x", None)
        # Built beforehand: the figure is the store's, not the message builder's.
        messages = [make_message(f"bench {i}", pad_to=4096) for i in range(200_000 // tasks)]
        done = 0
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.perf_counter() < deadline:
                raw, parsed = messages[i % len(messages)]
                # Unique bytes per delivery so every message writes and fsyncs its own blob.
                raw = raw + f"\r\n{offset}-{i}".encode()
                parsed.size = len(raw)
                parsed.root.end = len(raw)
                started = time.perf_counter()
                await store.deliver(raw, parsed, [DeliveryTarget(account.id)])
                latencies.append(time.perf_counter() - started)
                done += 1
                i += tasks

        commits_before = store.commit_count
        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(tasks)))
        elapsed = time.perf_counter() - started
        commits = store.commit_count - commits_before
        await store.close()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"{done} deliveries in {elapsed:.2f}s = {done / elapsed:.0f}/s "
        f"({tasks} tasks, 4 KB, fsync={'on' if fsync else 'off'}, window={window * 1000:g} ms); "
        f"{commits} commits ({done / max(commits, 1):.1f} per commit); "
        f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--window", type=float, default=0.002)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.tasks, args.window, not args.no_fsync))


if __name__ == "__main__":
    main()
