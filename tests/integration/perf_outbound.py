"""Outbound delivery rate, Postar against Postfix, side by side: a script, not a test.

    python -m tests.integration.perf_outbound [--messages 2000] [--connections 20]

Both MTAs start with N one-recipient messages already in their queue and deliver them over
at most C connections to the same smtp-sink (Postfix's accept-and-discard SMTP server) on
loopback; the clock runs from "go" until the queue is empty, so the figure is queue ->
network -> queue removal, the whole outbound path.

- Postar: the OutboundWorker in this process over a real SQLite store (fsync on, as in
  production), `[relay.routes]` pointing the domain at the sink, max_connections and
  max_per_destination = C. Filled with store.enqueue, then the worker starts.
- Postfix: a private instance (tests/support/postfix.py) with relayhost = the sink and
  destination concurrency C from the start (no slow start). Filled by SMTP while
  `defer_transports` holds delivery, then the hold is lifted, Postfix reloaded and the queue
  flushed (postqueue -f).

Both are single-host, no DNS, no DKIM, no TLS: the cost measured is the queue and the SMTP
client. The machine may be shared; run it twice and read the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import smtplib
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from postar.config import Config, QueueConfig, RelayConfig
from postar.queue.worker import OutboundWorker
from postar.store.interface import open_store_backend
from postar.store.model import QueuedRecipient
from tests.support.postfix import PostfixInstance
from tests.support.server import free_port, wait_for_port

DOMAIN = "sink.test"


def message(i: int) -> bytes:
    body = "".join(f"line {n} of a plain text message of ordinary size\r\n" for n in range(30))
    return (
        f"From: alice@example.org\r\nTo: user{i}@{DOMAIN}\r\nSubject: perf {i}\r\n"
        f"Message-ID: <perf{i}@example.org>\r\nDate: Fri, 27 Nov 2026 00:00:00 +0000\r\n\r\n"
        f"{body}"
    ).encode()


class Sink:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            # -u: drop root after binding; -c: count; 1024: listen backlog
            ["smtp-sink", "-u", "nobody", f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


async def postar_rate(n: int, conns: int, sink_port: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="postar-perf-") as tmp:
        config = Config(
            hostname="mail.example.org",
            data_dir=Path(tmp),
            queue=QueueConfig(max_connections=conns, max_per_destination=conns),
            relay=RelayConfig(routes={DOMAIN: f"127.0.0.1:{sink_port}"}, mta_sts=False),
        )
        store = open_store_backend(config)
        await store.open()
        try:
            t0 = time.monotonic()
            for i in range(n):
                await store.enqueue(
                    "alice@example.org", [QueuedRecipient(f"user{i}@{DOMAIN}")], message(i)
                )
            fill = time.monotonic() - t0
            worker = OutboundWorker(store, config)
            start = time.monotonic()
            worker.start()
            while await store.next_queue_attempt() is not None:
                worker.wake()
                await asyncio.sleep(0.02)
            elapsed = time.monotonic() - start
            await worker.stop(grace=5)
        finally:
            await store.close()
    return {"seconds": elapsed, "per_second": n / elapsed, "fill_seconds": fill}


def _queued_files(pf: PostfixInstance) -> int:
    total = 0
    for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
        for _root, _dirs, files in os.walk(pf.root / "spool" / sub):
            total += len(files)
    return total


def postfix_rate(n: int, conns: int, sink_port: int) -> dict[str, float]:
    limits = (
        f"default_destination_concurrency_limit = {conns}\n"
        f"smtp_destination_concurrency_limit = {conns}\n"
        f"initial_destination_concurrency = {conns}\n"
        f"default_process_limit = {max(100, conns * 2)}\n"
        "smtp_destination_recipient_limit = 1\n"
    )
    pf = PostfixInstance(
        relayhost=f"[127.0.0.1]:{sink_port}",
        extra=limits + "defer_transports = smtp relay\n",
    )
    pf.start()
    try:
        t0 = time.monotonic()

        def inject(chunk: range) -> None:
            with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as smtp:
                for i in chunk:
                    smtp.sendmail("alice@example.org", [f"user{i}@{DOMAIN}"], message(i))

        step = (n + 9) // 10
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(inject, [range(a, min(a + step, n)) for a in range(0, n, step)]))
        # Wait until every message is in the deferred queue (held by defer_transports).
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            deferred = sum(len(f) for _, _, f in os.walk(pf.root / "spool" / "deferred"))
            if deferred >= n:
                break
            time.sleep(0.1)
        fill = time.monotonic() - t0
        main_cf = pf.etc / "main.cf"
        main_cf.write_text(main_cf.read_text().replace("defer_transports = smtp relay\n", ""))
        # The clock starts before the reload: the reloaded qmgr may scan the deferred queue on
        # its own (queue_run_delay) before the flush below asks it to.
        start = time.monotonic()
        subprocess.run(["postfix", "-c", str(pf.etc), "reload"], check=True, capture_output=True)
        subprocess.run(["postqueue", "-c", str(pf.etc), "-f"], check=True, capture_output=True)
        deadline = start + 600
        while _queued_files(pf) and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        left = _queued_files(pf)
        sent = pf.log().count("status=sent")
    finally:
        pf.stop()
    if left:
        raise RuntimeError(f"postfix left {left} messages queued")
    if sent != n:
        raise RuntimeError(f"postfix logged {sent} deliveries for {n} messages")
    return {"seconds": elapsed, "per_second": n / elapsed, "fill_seconds": fill}


async def dead_backlog(n: int, live: int = 10) -> dict[str, float]:
    """n messages to a host that never answers and `live` to smtp-sink: when do the live ones
    arrive, and how much memory does the worker take (tracemalloc peak, RSS growth)?"""
    import tracemalloc

    from tests.support.smtppeer import RawPeer, SMTPPeer

    with (
        tempfile.TemporaryDirectory(prefix="postar-perf-") as tmp,
        RawPeer(b"") as dead,
        SMTPPeer("127.0.0.1") as sink,
    ):
        config = Config(
            hostname="mail.example.org",
            data_dir=Path(tmp),
            queue=QueueConfig(connect_timeout=5, command_timeout=5, retry_first_seconds=600),
            relay=RelayConfig(
                routes={"dead.test": f"127.0.0.1:{dead.port}", DOMAIN: f"127.0.0.1:{sink.port}"},
                mta_sts=False,
            ),
        )
        store = open_store_backend(config)
        await store.open()
        try:
            for a in range(0, n, 500):
                await asyncio.gather(
                    *(
                        store.enqueue("a@example.org", [QueuedRecipient(f"u{i}@dead.test")], b"x")
                        for i in range(a, min(a + 500, n))
                    )
                )
            for i in range(live):
                await store.enqueue("a@example.org", [QueuedRecipient(f"u{i}@{DOMAIN}")], b"x")
            rss0 = _rss_kb()
            tracemalloc.start()
            worker = OutboundWorker(store, config)
            start = time.monotonic()
            worker.start()
            live_at = settled_at = None
            while time.monotonic() - start < 120:
                if live_at is None:
                    if len(sink.received) >= live:
                        live_at = time.monotonic() - start
                    await asyncio.sleep(0.02)
                    continue
                # Settled: nothing due any more, the whole backlog was deferred.
                if not await store.due_queue_entries(time.time(), 1):
                    settled_at = time.monotonic() - start
                    break
                await asyncio.sleep(0.1)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            await worker.stop(grace=1)
            rss1 = _rss_kb()
        finally:
            await store.close()
    return {
        "backlog": n,
        "live_seconds": live_at if live_at is not None else float("nan"),
        "backlog_deferred_seconds": settled_at if settled_at is not None else float("nan"),
        "dead_connections": dead.connections,
        "tracemalloc_peak_mb": peak / 1e6,
        "rss_growth_mb": (rss1 - rss0) / 1024,
    }


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--dead-backlog", type=int, default=0, help="instead: N messages to a silent host"
    )
    args = parser.parse_args()
    if args.dead_backlog:
        print(json.dumps(asyncio.run(dead_backlog(args.dead_backlog))))
        return
    sink = Sink()
    results: dict[str, list[dict[str, float]]] = {"postar": [], "postfix": []}
    try:
        for _ in range(args.rounds):
            results["postar"].append(
                asyncio.run(postar_rate(args.messages, args.connections, sink.port))
            )
            results["postfix"].append(postfix_rate(args.messages, args.connections, sink.port))
    finally:
        sink.stop()
    best = {k: max(r["per_second"] for r in v) for k, v in results.items()}
    print(json.dumps({"messages": args.messages, "connections": args.connections, **results}))
    print(
        f"queue -> smtp-sink, {args.messages} messages, {args.connections} connections: "
        f"postar {best['postar']:.0f}/s, postfix {best['postfix']:.0f}/s, "
        f"ratio postar/postfix {best['postar'] / best['postfix']:.2f} "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)"
    )


if __name__ == "__main__":
    main()
