"""An SMTP worker process: `python -m postar.workers.worker FD INDEX OWNER`, started by pool.py.

FD is its end of the channel to the serving process, INDEX its number in log lines, OWNER the
serving process's pid (the worker dies with it). The first
message carries the configuration, so the worker needs no file of its own and serves exactly
what the owner was started with. Everything here runs on one event loop: the channel, the
sessions handed over, and the store's callbacks.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
from typing import Any

from postar.app import Services, build_handlers, open_services
from postar.config import Config
from postar.log import setup_logging
from postar.net.limits import Admission, ConnectionLimiter
from postar.net.listener import Server
from postar.net.tls import limit_asyncio_tls_buffer, load_server_context
from postar.workers.channel import Channel

log = logging.getLogger("postar.workers")


class _CountedByOwner(ConnectionLimiter):
    """The owner counts connections against the configured limits before handing them over:
    nothing to count here (and no address to parse twice per connection)."""

    def __init__(self) -> None:
        super().__init__(sys.maxsize, sys.maxsize)

    def acquire(self, ip: str) -> Admission:
        return Admission.ACCEPTED

    def release(self, ip: str) -> None:
        pass


class _WorkerProcess:
    def __init__(self, sock: socket.socket, index: int) -> None:
        self.index = index
        self.started: asyncio.Future[tuple[Config, list[str]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.stop_grace: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.server: Server | None = None
        self.services: Services | None = None
        self.early: list[tuple[tuple[Any, ...], list[socket.socket]]] = []
        self.channel = Channel(sock, self.received, self.lost)

    def received(self, message: tuple[Any, ...], socks: list[socket.socket]) -> None:
        kind = message[0]
        if kind == "start":
            if not self.started.done():
                self.started.set_result((message[1], list(message[2])))
        elif kind == "stop":
            if not self.stop_grace.done():
                self.stop_grace.set_result(float(message[1]))
        elif self.server is None:
            self.early.append((message, socks))  # before the store is open: keep for later
        elif kind == "conn":
            self.adopt(message, socks)
        elif kind == "auth" and self.services is not None:
            _, what, ip, account = message
            self.services.authenticator.throttle.apply(what, ip, account)
        elif kind == "throttle" and self.services is not None:
            self.services.authenticator.throttle.merge(message[1])
        else:
            for s in socks:
                s.close()

    def adopt(self, message: tuple[Any, ...], socks: list[socket.socket]) -> None:
        _, ticket, role, peer, proxy = message
        assert self.server is not None
        try:
            # The kernel drops a descriptor we had no room for (EMFILE): none arrived then.
            if len(socks) != 1:
                raise OSError(f"connection handed over with {len(socks)} descriptors")
            self.server.adopt(socks[0], tuple(peer), proxy, role, lambda: self.closed(ticket))
        except Exception as exc:
            log.error("smtp worker could not take a connection", extra={"error": repr(exc)})
            for s in socks:
                s.close()
            self.closed(ticket)  # the owner frees its slot

    def closed(self, ticket: int) -> None:
        self.channel.send(("closed", ticket))

    def lost(self) -> None:
        # The owner is gone (or stopping): end the sessions as at a stop.
        if not self.started.done():
            self.started.cancel()
        if not self.stop_grace.done():
            self.stop_grace.set_result(10.0)

    async def run(self) -> int:
        try:
            config, roles = await self.started
        except asyncio.CancelledError:
            return 1
        setup_logging(config.log_level)
        services = await open_services(config, guest_only=True)
        store = services.store
        try:
            throttle = services.authenticator.throttle
            throttle.on_record = lambda what, ip, account: self.channel.send(
                ("auth", what, ip, account)
            )
            store.forward_commits(
                lambda changes: self.channel.send_chunked("changes", changes),
                lambda: self.channel.send(("queue",)),
                lambda ids: self.channel.send_chunked("unreferenced", ids),
            )
            limit_asyncio_tls_buffer()
            handlers = {role: h for role, h in build_handlers(services).items() if role in roles}
            self.services = services
            self.server = Server(
                config,
                handlers,
                listen={},
                ssl_context=load_server_context(config),
                limiter=_CountedByOwner(),
            )
            log.info("smtp worker ready", extra={"worker": self.index})
            self.channel.send(("ready",))
            for message, socks in self.early:
                self.received(message, socks)
            self.early.clear()
            grace = await self.stop_grace
            await self.server.stop(grace=grace)
        finally:
            await store.close()
        self.channel.close()
        return 0


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_owner(owner: int) -> None:
    """Be killed by the kernel the moment the serving process dies.

    The worker is part of one server: a crash of the serving process (SIGKILL, the OOM
    killer) must end its sessions as a crash of a single process would, not leave them
    answering with nobody to hand out connections, count limits or restart anything.
    Anything a worker acknowledged is already durable; what it had not is the client's to
    send again.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != owner:  # it died before the prctl took effect
        os._exit(1)


async def _main(fd: int, index: int) -> int:
    loop = asyncio.get_running_loop()
    # Signals meant for the server (a terminal's Ctrl-C reaches the whole process group) are
    # the owner's to act on: it tells the workers to stop over the channel.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: None)
    worker = _WorkerProcess(socket.socket(fileno=fd), index)
    return await worker.run()


def main(argv: list[str]) -> int:
    fd, index, owner = int(argv[1]), int(argv[2]), int(argv[3])
    _die_with_owner(owner)
    return asyncio.run(_main(fd, index))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
