"""Outbound: messages per second from a server's queue to smtp-sink over up to 20 connections.

One round for one target:

1. **Park**: smtp-sink on the route's port answers every MAIL with 4xx (`-r MAIL`), so the
   server accepts the messages (smtp-source, 20 sessions) and defers each at its first try,
   as it would for a destination that is temporarily refusing mail. A 4xx reply is not a
   dead host for either server (Postfix's dead-site throttling and Postar's dead-hop cache
   are for connections that fail), so nothing else is held against the destination.
2. **Wait** until all N are queued and tried (Postfix: every queue file in deferred/;
   Postar: `postar queue list`, no entry with attempts=0).
3. **Release**: the parking sink stops, a counting smtp-sink (`-c`: a running "mesg=N" line on
   its stdout at every final dot) takes the same port, and the admin flushes the queue
   (`postqueue -f`; `postar queue flush`).
4. **Count** at the sink until it has all N or the deadline passes. The rate runs from the
   first message at the sink to the last: the flush commands differ in their own start-up
   (a C program; a Python one that opens the store), and a server can be delivering before
   its command has even exited, so neither the command's start nor its exit is a fair
   "go". The time from starting the command to the first message is reported beside it.

Both servers are measured the same way, over one route to one host:port, without DKIM (the
sender's domain is not one Postar signs for) and without TLS (smtp-sink offers none).
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.targets.base import TargetError, wait_port

DOMAIN = "sink.test"  # the remote domain both servers route to 127.0.0.1:port
SENDER = "sender@client.test"
RCPT = f"user@{DOMAIN}"
_COUNT = re.compile(rb"mesg=(\d+)")


class QueueTarget(Protocol):
    name: str
    ports: dict[str, int]

    def queue_state(self) -> tuple[int, int]: ...

    def flush_queue(self) -> None: ...

    def cpu_seconds(self) -> float: ...


class Sink:
    """smtp-sink on 127.0.0.1:port: `park` answers MAIL with 4xx; `count` takes every message
    and writes a running counter (its stdout, a file here, read from the end)."""

    def __init__(self, port: int, workdir: Path, mode: str) -> None:
        self.port = port
        self.mode = mode
        self.out = workdir / f"smtp-sink-{mode}-{port}.out"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        flags = ["-c"] if self.mode == "count" else ["-r", "MAIL"]
        self.proc = subprocess.Popen(
            # -u: drop root after binding; 1000: listen backlog
            ["smtp-sink", *flags, "-u", "nobody", f"127.0.0.1:{self.port}", "1000"],
            stdout=open(self.out, "wb"),  # noqa: SIM115 - lives as long as the sink
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_port(self.port, time.monotonic() + 10, self.proc, f"smtp-sink ({self.mode})")

    def count(self) -> int:
        # "sess=… quit=… mesg=N\r" per event: only the last one matters, so read the tail.
        try:
            with open(self.out, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 256))
                found = _COUNT.findall(f.read())
        except FileNotFoundError:
            return 0
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None


POLL = 0.005  # seconds between looks at the sink's counter (a 256-byte read)


@dataclass
class OutboundResult:
    per_s: float | None  # messages per second at the sink, first message to last
    delivered: int
    seconds: float  # first message at the sink -> last (or the deadline)
    first_seconds: float | None  # flush command started -> first message at the sink
    fill_seconds: float  # smtp-source start -> every message queued and tried once
    cpu_ms_per_message: float | None = None  # the server's whole process tree, flush to empty
    note: str = ""


def _wait_parked(target: QueueTarget, n: int, deadline: float) -> tuple[int, int]:
    queued, untried = target.queue_state()
    while (queued < n or untried) and time.monotonic() < deadline:
        time.sleep(0.25)
        queued, untried = target.queue_state()
    return queued, untried


def run_round(
    target: QueueTarget, port: int, n: int, message_file: Path, deadline_s: float, workdir: Path
) -> OutboundResult:
    """One park, fill, release and count for `target`, whose route for DOMAIN is `port`."""
    park = Sink(port, workdir, "park")
    park.start()
    t0 = time.monotonic()
    try:
        cmd = [
            "smtp-source",
            "-s", "20",
            "-m", str(n),
            "-F", str(message_file),
            "-f", SENDER,
            "-t", RCPT,
            "-M", "client.test",
            f"127.0.0.1:{target.ports['smtp']}",
        ]  # fmt: skip
        try:
            res = subprocess.run(cmd, capture_output=True, timeout=deadline_s)
        except subprocess.TimeoutExpired:
            raise TargetError(
                f"{target.name}: queueing {n} messages took over {deadline_s:.0f} s"
            ) from None
        if res.returncode != 0:
            raise TargetError(f"smtp-source: {res.stderr.decode(errors='replace').strip()[:200]}")
        queued, untried = _wait_parked(target, n, t0 + deadline_s)
    finally:
        park.stop()
    fill = time.monotonic() - t0
    if queued < n or untried:
        raise TargetError(
            f"{target.name}: {queued}/{n} queued, {untried} not yet tried after {fill:.0f} s"
        )
    sink = Sink(port, workdir, "count")
    sink.start()
    try:
        cpu0 = target.cpu_seconds()
        release = time.monotonic()
        target.flush_queue()
        deadline = time.monotonic() + deadline_s
        got = sink.count()
        first_at, first_count = (time.monotonic(), got) if got else (None, 0)
        while got < n and time.monotonic() < deadline:
            time.sleep(POLL)
            got = sink.count()
            if got and first_at is None:
                first_at, first_count = time.monotonic(), got
        end = time.monotonic()
        # The next round starts from an empty queue: the last removals may lag the sink's 250s.
        settle = time.monotonic() + 10
        while target.queue_state()[0] and time.monotonic() < settle:
            time.sleep(0.1)
        cpu = (target.cpu_seconds() - cpu0) * 1000 / got if got else None
    finally:
        sink.stop()
    note = "" if got >= n else f"{got}/{n} at the sink by the {deadline_s:.0f} s deadline"
    if got > n:
        note = f"{got} messages at the sink for {n} queued"  # a duplicate is a bug: say so
    if first_at is None:
        return OutboundResult(None, 0, 0.0, None, fill, None, note or "nothing reached the sink")
    seconds = end - first_at
    # Messages counted at the first look had arrived before it: they start the clock.
    per_s = (got - first_count) / seconds if seconds > 0 and got > first_count else None
    if per_s is None:
        note = note or f"all {got} arrived within one {POLL * 1000:.0f} ms look: no rate"
    return OutboundResult(per_s, got, seconds, first_at - release, fill, cpu, note)
