"""Wiring: open the store, build the shared services, start every listener in one process.

Order of shutdown on SIGTERM/SIGINT: stop accepting, let sessions finish in-flight work (an
SMTP DATA being committed, a POP3 QUIT deleting) for a grace period, then close the store,
which completes any pending group commit. Exit code 0 after a clean stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from postar.auth.authenticator import Authenticator
from postar.auth.directory import Directory
from postar.config import Config
from postar.filter.hooks import FilterPipeline
from postar.net.listener import Handoff, RoleHandler, Server
from postar.net.tls import load_server_context
from postar.store.interface import Store, open_store_backend

log = logging.getLogger("postar.app")

SMTP_ROLES = ("smtp", "submission", "submissions", "smtp-alt")
POP3_ROLES = ("pop3", "pop3s")
IMAP_ROLES = ("imap", "imaps")
# Roles this version serves; a configured role outside this list is reported and left off.
SERVED_ROLES = SMTP_ROLES + POP3_ROLES + IMAP_ROLES
SHUTDOWN_GRACE = 10.0


@dataclass
class Services:
    """What every protocol server shares, built once per process."""

    config: Config
    store: Store
    directory: Directory
    authenticator: Authenticator
    filters: FilterPipeline


def build_handlers(services: Services) -> dict[str, RoleHandler]:
    from postar.imap.server import IMAPServer
    from postar.pop3.server import POP3Server
    from postar.smtp.server import SMTPServer

    smtp = SMTPServer(services)
    pop3 = POP3Server(services)
    imap = IMAPServer(services)
    handlers: dict[str, RoleHandler] = {}
    for role in SMTP_ROLES:
        handlers[role] = RoleHandler(
            smtp.handle, too_busy_message=b"421 4.7.0 Too many connections, try again later\r\n"
        )
    for role in POP3_ROLES:
        handlers[role] = RoleHandler(
            pop3.handle, too_busy_message=b"-ERR [SYS/TEMP] Too many connections\r\n"
        )
    for role in IMAP_ROLES:
        handlers[role] = RoleHandler(
            imap.handle, too_busy_message=b"* BYE Too many connections\r\n"
        )
    return handlers


async def open_services(
    config: Config, filters: FilterPipeline | None = None, *, guest_only: bool = False
) -> Services:
    """guest_only: a worker process's services, beside the serving process's (store guest)."""
    store = open_store_backend(config, guest_only=guest_only, serving=not guest_only)
    await store.open()
    return Services(
        config=config,
        store=store,
        directory=Directory(store),
        authenticator=Authenticator(store, config.auth),
        filters=filters or FilterPipeline(),
    )


async def start_server(services: Services, handoff: Handoff | None = None) -> Server:
    config = services.config
    for role in config.listen:
        if role not in SERVED_ROLES:
            log.warning("role not served by this version", extra={"role": role})
    listen = {role: addr for role, addr in config.listen.items() if role in SERVED_ROLES}
    ssl_context = load_server_context(config)
    server = Server(
        config, build_handlers(services), listen=listen, ssl_context=ssl_context, handoff=handoff
    )
    await server.start()
    for role in listen:
        for host, port in server.addresses(role):
            log.info("listening", extra={"role": role, "address": f"{host}:{port}"})
    return server


async def serve_forever(config: Config) -> int:
    from postar.workers.pool import WorkerPool, worker_count

    services = await open_services(config)
    pool: WorkerPool | None = None
    try:
        smtp_roles = frozenset(role for role in config.listen if role in SMTP_ROLES)
        count = worker_count(config)
        if smtp_roles and count:
            pool = WorkerPool(
                config, count, smtp_roles, services.store, services.authenticator.throttle
            )
            await pool.start()
        server = await start_server(services, handoff=pool)
    except BaseException:
        if pool is not None:
            await pool.stop(grace=0)
        await services.store.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The outbound worker reads the store's queue (mail accepted before a crash included);
    # it is stopped before the store closes so its last results are committed.
    from postar.queue.worker import OutboundWorker

    outbound = OutboundWorker(services.store, config)
    outbound.start()
    log.info("postar started", extra={"hostname": config.hostname, "data_dir": config.data_dir})
    try:
        await stop.wait()
        log.info("stopping")
        stopping = [server.stop(grace=SHUTDOWN_GRACE)]
        if pool is not None:
            stopping.append(pool.stop(grace=SHUTDOWN_GRACE))
        await asyncio.gather(*stopping)
    finally:
        await outbound.stop(grace=SHUTDOWN_GRACE)
        await services.store.close()
    log.info("stopped")
    return 0
