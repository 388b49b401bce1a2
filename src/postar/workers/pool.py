"""The serving process's side of its SMTP worker processes.

Why workers: an SMTP transaction costs a few milliseconds of Python CPU (parsing, hashing,
the store's jobs), and one process runs Python on one core at a time. Postfix spreads the
same work over every core in many processes; `[smtp] workers = N` does the same for Postar.

Theory of operation:
- The serving process (the owner) keeps everything that must be one per server: the
  listening sockets, the connection limits, the PROXY header check, the store's lock and
  orphan sweep, the outbound queue worker, IMAP and POP3. It accepts, admits, and hands each
  SMTP connection to the worker with the fewest connections, as a descriptor over the
  worker's channel (channel.py). The limiter slot is held here until the worker reports
  ("closed", ticket), so limits stay global.
- A worker opens the store as a guest (base.py explains why that is safe beside the owner)
  and runs the SMTP sessions with its own group commit. After each commit it sends the
  mailbox changes and queue wake-ups here, which the owner publishes to its IDLE sessions and
  outbound worker: an IMAP client hears of mail a worker delivered as it would of its own.
- Failed and successful logins are passed both ways ("auth", ...), so every process counts
  the same failures (auth/throttle.py).
- A worker takes connections once it has said ("ready",): its store is open. A worker that
  dies is started again after a pause; its connections are dropped (no client got a 250 for
  anything not committed) and their slots freed. With no worker ready, the owner serves the
  connection itself, so mail is never refused for want of a worker.
- Stop: the owner stops accepting, sends ("stop", grace) and waits for the workers to end
  their sessions. A worker whose owner dies is killed by the kernel (PR_SET_PDEATHSIG): a
  crash of the server is a crash of all of it, as the crash-safety test expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from postar.auth.throttle import LoginThrottle
from postar.config import Config
from postar.net.proxy import ProxyInfo
from postar.store.interface import Store
from postar.workers.channel import Channel, pair

log = logging.getLogger("postar.workers")

RESTART_DELAY = 1.0  # seconds before a dead worker is started again
STOP_EXTRA = 5.0  # seconds past the grace before a worker that does not stop is killed


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.channel: Channel | None = None
        self.tickets: dict[int, Callable[[], None]] = {}  # open connections: their release
        self.ready = False  # its store is open and its handlers built: it may take connections

    @property
    def alive(self) -> bool:
        return self.channel is not None and not self.channel.closed

    @property
    def serving(self) -> bool:
        return self.ready and self.alive


class WorkerPool:
    """Start `count` worker processes for `roles` and hand them connections (net.Handoff)."""

    def __init__(
        self,
        config: Config,
        count: int,
        roles: frozenset[str],
        store: Store,
        throttle: LoginThrottle,
    ) -> None:
        self.config = config
        self.roles = roles
        self.store = store
        self.throttle = throttle
        self._workers = [_Worker(i + 1) for i in range(count)]
        self._tickets = itertools.count(1)
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        throttle.on_record = self._throttle_recorded

    async def start(self) -> None:
        log.info("smtp workers starting", extra={"count": len(self._workers)})
        for worker in self._workers:
            await self._spawn(worker)

    async def _spawn(self, worker: _Worker) -> None:
        ours, theirs = pair()
        worker.ready = False
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "postar.workers.worker",
                str(theirs.fileno()),
                str(worker.index),
                str(os.getpid()),
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker.channel = Channel(
            ours,
            lambda message, socks: self._received(worker, message, socks),
            lambda: self._lost(worker),
        )
        worker.channel.send(("start", self.config, sorted(self.roles)))
        # A worker started later (after a crash) must know the failures counted so far.
        worker.channel.send_chunked("throttle", self.throttle.export())
        task = asyncio.get_running_loop().create_task(self._watch(worker, worker.process))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("smtp worker started", extra={"worker": worker.index, "pid": worker.process.pid})

    # ---- handing connections over (net.listener.Handoff) -----------------------------------
    def hand(
        self,
        client: socket.socket,
        peer: tuple[str, int],
        proxy: ProxyInfo | None,
        role: str,
        release: Callable[[], None],
    ) -> bool:
        # Until a worker is ready (at start, or after a crash) the owner serves SMTP itself:
        # a connection handed to a worker that then fails to start would be lost.
        live = [w for w in self._workers if w.serving]
        if self._stopping or not live:
            return False
        worker = min(live, key=lambda w: len(w.tickets))
        assert worker.channel is not None
        ticket = next(self._tickets)
        worker.tickets[ticket] = release  # before the send: a channel closing in it releases
        try:
            worker.channel.send(("conn", ticket, role, peer, proxy), [client])
        except ValueError:  # a PROXY header with TLVs too large for one message
            del worker.tickets[ticket]
            return False
        return True

    @property
    def connections(self) -> int:
        return sum(len(w.tickets) for w in self._workers)

    # ---- messages from a worker -------------------------------------------------------------
    def _received(
        self, worker: _Worker, message: tuple[Any, ...], socks: list[socket.socket]
    ) -> None:
        for s in socks:  # workers send no descriptors
            s.close()
        kind = message[0]
        if kind == "ready":
            worker.ready = True
        elif kind == "closed":
            release = worker.tickets.pop(message[1], None)
            if release is not None:
                release()
        elif kind == "changes":
            self.store.publish_changes(message[1])
        elif kind == "unreferenced":
            task = asyncio.get_running_loop().create_task(
                self.store.free_if_unreferenced(message[1])
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "queue":
            self.store.queue_changed_elsewhere()
        elif kind == "auth":
            _, what, ip, account = message
            self.throttle.apply(what, ip, account)
            self._tell_others(worker, message)
        else:
            log.error("unknown worker message", extra={"worker": worker.index, "kind": kind})

    def _throttle_recorded(self, what: str, ip: str | None, account: str | None) -> None:
        self._tell_others(None, ("auth", what, ip, account))

    def _tell_others(self, source: _Worker | None, message: tuple[Any, ...]) -> None:
        for other in self._workers:
            if other is not source and other.alive:
                assert other.channel is not None
                other.channel.send(message)

    # ---- a worker ending --------------------------------------------------------------------
    def _lost(self, worker: _Worker) -> None:
        """Its channel closed: every connection it had is gone with it."""
        releases = list(worker.tickets.values())
        worker.tickets.clear()
        for release in releases:
            release()

    async def _watch(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if worker.channel is not None:
            # What it sent before it ended (changes of its last commits) still counts.
            worker.channel.drain()
            worker.channel.close()
        if self._stopping:
            return
        log.error("smtp worker exited", extra={"worker": worker.index, "code": code})
        while True:
            await asyncio.sleep(RESTART_DELAY)
            if self._stopping:
                return
            try:
                await self._spawn(worker)
                return
            except Exception as exc:  # tried again after the delay, for as long as we serve
                log.error("smtp worker not restarted", extra={"error": repr(exc)})

    async def stop(self, grace: float) -> None:
        """Let every worker finish its sessions (up to `grace` seconds), then end it."""
        self._stopping = True
        for worker in self._workers:
            if worker.alive:
                assert worker.channel is not None
                worker.channel.send(("stop", grace))
        processes = [w.process for w in self._workers if w.process is not None]
        waits = [asyncio.ensure_future(p.wait()) for p in processes]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace + STOP_EXTRA)
            for process in processes:
                if process.returncode is None:
                    log.error("smtp worker killed at stop", extra={"pid": process.pid})
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if pending:
                await asyncio.wait(pending)
        for task in list(self._tasks):
            task.cancel()
        for worker in self._workers:
            if worker.channel is not None:
                worker.channel.close()


def worker_count(config: Config) -> int:
    """[smtp] workers: a number, or -1 for one per CPU core when there are several."""
    wanted = config.smtp.workers
    if wanted >= 0:
        return wanted
    cores = len(os.sched_getaffinity(0))
    return cores if cores > 1 else 0
