"""Listeners: accept connections for every configured role and run its handler on each.

Per accepted socket, in this order:
1. PROXY roles: the peer must be in proxy_protocol.trusted_networks (else closed at once), and
   its header must arrive within proxy_protocol.timeout. The header is read from the socket
   with MSG_PEEK and exactly its bytes are consumed, so whatever follows (an implicit-TLS
   ClientHello, a pipelined command) stays in the kernel for the transport to read: no
   read-ahead buffer to hand over, which is where cpython#142352 loses bytes.
2. Limits: ConnectionLimiter counts the client (the PROXY source, if any). Over a limit the
   role's `too_busy_message` ("421 ...", "-ERR ...", "* BYE ...") is sent and the socket closed;
   no task outlives that.
3. Transport: loop.connect_accepted_socket(), with the TLS handshake (and its timeout) done
   there for implicit-TLS roles, before the handler runs.
4. The handler runs; its exceptions are logged with the connection id and never shown to the
   peer; the connection is closed and the limiter released whatever happened.

We run our own accept loop over sockets we bind (instead of loop.create_server) because step 1
must happen before any transport exists. Graceful stop: stop accepting, wake idle handlers
with ShuttingDown, wait `grace` seconds for in-flight ones, cancel the rest.

Worker processes (postar.workers): after steps 1 and 2, a role the `handoff` takes is passed
to a worker process, socket and all; the limiter slot stays held here until the worker says
the connection ended. In the worker, adopt() runs steps 3 and 4 on the socket it was given.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from postar.config import (
    ROLE_TLS_MODE,
    Config,
    ConfigError,
    LimitsConfig,
    ListenAddress,
)

from ._log import log_event
from .connection import Connection, ShuttingDown, normalize_ip
from .limits import Admission, ConnectionLimiter
from .proxy import ProxyHeaderError, ProxyHeaderParser, ProxyInfo
from .tls import limit_asyncio_tls_buffer, load_server_context

Handler = Callable[[Connection], Awaitable[None]]

DEFAULT_WRITE_TIMEOUT = 120.0  # seconds a peer may read nothing of our output
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 30.0
_ACCEPT_RETRY_DELAY = 0.5  # after EMFILE and kin: let closing connections free descriptors
_CANCEL_WAIT = 5.0  # how long stop() waits for cancelled handlers to unwind
_PROXY_PEEK_SIZE = 536  # section 2 of the spec: a header fits one minimal TCP segment

_ROLE_IDLE_FIELD = {
    "smtp": "smtp_idle_timeout",
    "submission": "smtp_idle_timeout",
    "submissions": "smtp_idle_timeout",
    "smtp-alt": "smtp_idle_timeout",
    "pop3": "pop3_idle_timeout",
    "pop3s": "pop3_idle_timeout",
    "imap": "imap_idle_timeout",
    "imaps": "imap_idle_timeout",
    "http": "http_idle_timeout",
    "https": "http_idle_timeout",
}


def role_idle_timeout(role: str, limits: LimitsConfig) -> float:
    """The configured idle timeout for a role's protocol."""
    field = _ROLE_IDLE_FIELD.get(role)
    if field is None:
        raise ValueError(f"unknown role {role!r}")
    value: float = getattr(limits, field)
    return value


@dataclass(frozen=True, slots=True)
class RoleHandler:
    """What the application plugs into a role.

    `too_busy_message` is written verbatim to a connection refused by the limits (e.g.
    b"421 4.7.0 Too many connections, try later\\r\\n"); empty means close silently.
    `idle_timeout` overrides the role's value from [limits] (None: use the config).
    """

    handle: Handler
    too_busy_message: bytes = b""
    idle_timeout: float | None = None


class Handoff(Protocol):
    """Where connections of some roles go instead of this process (postar.workers)."""

    roles: frozenset[str]

    def hand(
        self,
        client: socket.socket,
        peer: tuple[str, int],
        proxy: ProxyInfo | None,
        role: str,
        release: Callable[[], None],
    ) -> bool:
        """Take the connection (True: `release` is called once it has ended, and `client`
        is no longer ours) or leave it to this process (False)."""
        ...


@dataclass(frozen=True, slots=True)
class _RoleSpec:
    role: str
    handler: RoleHandler
    tls_mode: str
    proxy: bool
    idle_timeout: float


@dataclass(slots=True)
class _Listener:
    spec: _RoleSpec
    address: ListenAddress
    sock: socket.socket
    task: asyncio.Task[None] | None = None


async def _bind(
    loop: asyncio.AbstractEventLoop, address: ListenAddress, backlog: int
) -> list[socket.socket]:
    # "*" or "" means every interface of both families (one socket each).
    host = None if address.host in ("", "*") else address.host
    infos = await loop.getaddrinfo(
        host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    socks: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, type_, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio does: "::" then does not also take IPv4.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


async def _wait_readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    waiter: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not waiter.done():
            waiter.set_result(None)

    fd = sock.fileno()
    loop.add_reader(fd, ready)
    try:
        await waiter
    finally:
        loop.remove_reader(fd)


async def read_proxy_header(sock: socket.socket) -> ProxyInfo:
    """Read exactly one PROXY header from a non-blocking socket, leaving what follows.

    Peeks, lets the parser say how many of the peeked bytes are header, and consumes only
    those. Raises ProxyHeaderError on an invalid header or EOF; the caller bounds the time.
    """
    loop = asyncio.get_running_loop()
    parser = ProxyHeaderParser()
    while True:
        try:
            data = sock.recv(_PROXY_PEEK_SIZE, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            await _wait_readable(loop, sock)
            continue
        if not data:
            raise ProxyHeaderError("connection closed inside the PROXY header")
        used = parser.feed(data)
        remaining = used
        while remaining:
            # Peeked bytes are already in the kernel buffer: these reads do not block.
            chunk = sock.recv(remaining)
            if not chunk:
                raise ProxyHeaderError("connection closed inside the PROXY header")
            remaining -= len(chunk)
        if parser.result is not None:
            return parser.result


class Server:
    """Every listener of the process, started and stopped together.

    `handlers` maps a role ("smtp", "imaps", ...) to a RoleHandler (or a bare handler
    function). Addresses come from `config.listen` unless `listen` is given (tests pass port
    0 and read the real port from ``addresses(role)``). Roles configured without a handler
    are logged and skipped.
    """

    def __init__(
        self,
        config: Config,
        handlers: Mapping[str, RoleHandler | Handler],
        *,
        listen: Mapping[str, ListenAddress | Sequence[ListenAddress]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limiter: ConnectionLimiter | None = None,
        tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        write_timeout: float | None = DEFAULT_WRITE_TIMEOUT,
        backlog: int = 511,
        handoff: Handoff | None = None,
    ) -> None:
        self._config = config
        self._handoff = handoff
        self._handlers = {
            role: h if isinstance(h, RoleHandler) else RoleHandler(h)
            for role, h in handlers.items()
        }
        for role in self._handlers:
            if role not in ROLE_TLS_MODE:
                raise ValueError(f"unknown role {role!r}")
        raw_listen = config.listen if listen is None else listen
        self._listen: dict[str, list[ListenAddress]] = {
            role: [addrs] if isinstance(addrs, ListenAddress) else list(addrs)
            for role, addrs in raw_listen.items()
        }
        self._ssl_context = ssl_context
        self.limiter = limiter or ConnectionLimiter(
            config.limits.connections_total, config.limits.connections_per_ip
        )
        self._tls_handshake_timeout = tls_handshake_timeout
        self._write_timeout = write_timeout
        self._backlog = backlog
        proxy_cfg = config.proxy_protocol
        self._proxy_roles = frozenset(proxy_cfg.roles)
        self._proxy_timeout = proxy_cfg.timeout
        try:
            self._proxy_trusted = tuple(
                ipaddress.ip_network(n, strict=False) for n in proxy_cfg.trusted_networks
            )
        except ValueError as exc:
            raise ConfigError(f"proxy_protocol.trusted_networks: {exc}") from exc
        self._listeners: list[_Listener] = []
        # Every connection task; the value is its Connection once the transport exists.
        self._tasks: dict[asyncio.Task[None], Connection | None] = {}
        self._started = False
        self._stopping = False
        self._stopped = asyncio.Event()

    # ----------------------------------------------------------------- public

    @property
    def connection_count(self) -> int:
        """Connection tasks alive (including those still in PROXY or TLS setup)."""
        return len(self._tasks)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context

    def addresses(self, role: str) -> list[tuple[str, int]]:
        """The bound (host, port) pairs of a role, after start()."""
        return [
            (str(lst.sock.getsockname()[0]), int(lst.sock.getsockname()[1]))
            for lst in self._listeners
            if lst.spec.role == role
        ]

    async def start(self) -> None:
        """Bind every listener (all or none), then start accepting."""
        if self._started:
            raise RuntimeError("server already started")
        self._started = True
        loop = asyncio.get_running_loop()
        specs: list[tuple[_RoleSpec, ListenAddress]] = []
        for role, addresses in self._listen.items():
            spec = self._spec(role)
            if spec is None:
                log_event(logging.WARNING, "listener.no_handler", role=role)
                continue
            specs.extend((spec, address) for address in addresses)
        if any(s.tls_mode != "plain" for s, _ in specs):
            if self._ssl_context is None:
                self._ssl_context = load_server_context(self._config)
            limit_asyncio_tls_buffer()
        try:
            for spec, address in specs:
                try:
                    socks = await _bind(loop, address, self._backlog)
                except OSError as exc:
                    # Name what could not be bound: "Address already in use" alone does not
                    # say which of eight listeners collided.
                    raise OSError(
                        exc.errno,
                        f"cannot listen for {spec.role} on {address}: {exc.strerror or exc}",
                    ) from exc
                self._listeners.extend(_Listener(spec, address, sock) for sock in socks)
        except OSError:
            for lst in self._listeners:
                lst.sock.close()
            self._listeners.clear()
            raise
        for lst in self._listeners:
            lst.task = loop.create_task(self._accept_loop(lst))
            host, port = lst.sock.getsockname()[:2]
            log_event(
                logging.INFO,
                "listener.start",
                role=lst.spec.role,
                address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                tls=lst.spec.tls_mode,
                proxy=lst.spec.proxy,
            )

    def _spec(self, role: str) -> _RoleSpec | None:
        handler = self._handlers.get(role)
        if handler is None:
            return None
        idle = handler.idle_timeout
        if idle is None:
            idle = role_idle_timeout(role, self._config.limits)
        return _RoleSpec(
            role=role,
            handler=handler,
            tls_mode=ROLE_TLS_MODE[role],
            proxy=role in self._proxy_roles,
            idle_timeout=idle,
        )

    def adopt(
        self,
        client: socket.socket,
        peer: tuple[str, int],
        proxy: ProxyInfo | None,
        role: str,
        done: Callable[[], None],
    ) -> None:
        """Serve a connection another process accepted, admitted and (for a PROXY role) read
        the header of; `done` is called when it has ended. Needs no start()."""
        spec = self._spec(role)
        if spec is None or self._stopping:
            _close_quietly(client)
            done()
            return
        client.setblocking(False)
        self.limiter.acquire(peer[0])  # released by _serve; the owner enforces the limits
        task = asyncio.get_running_loop().create_task(self._serve(client, peer, proxy, spec))
        self._tasks[task] = None

        def ended(task: asyncio.Task[None]) -> None:
            self._task_done(task)
            done()

        task.add_done_callback(ended)

    def _hand_off(
        self,
        client: socket.socket,
        peer: tuple[str, int],
        proxy: ProxyInfo | None,
        spec: _RoleSpec,
    ) -> bool:
        handoff = self._handoff
        if handoff is None or spec.role not in handoff.roles or self._stopping:
            return False
        ip = peer[0]
        return handoff.hand(client, peer, proxy, spec.role, lambda: self.limiter.release(ip))

    async def serve_forever(self) -> None:
        """Wait until stop() has finished."""
        await self._stopped.wait()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let handlers finish for up to `grace` seconds, cancel the rest."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        accept_tasks = [lst.task for lst in self._listeners if lst.task is not None]
        for task in accept_tasks:
            task.cancel()
        await asyncio.gather(*accept_tasks, return_exceptions=True)
        for lst in self._listeners:
            lst.sock.close()
        log_event(logging.INFO, "server.stopping", connections=len(self._tasks), grace=grace)
        for task, conn in list(self._tasks.items()):
            if conn is None:
                task.cancel()  # still in PROXY/TLS setup: no session to wind down
            else:
                conn.request_shutdown()
        pending: set[asyncio.Task[None]] = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_CANCEL_WAIT)
        log_event(logging.INFO, "server.stopped", cancelled=len(pending))
        self._stopped.set()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- accepting

    async def _accept_loop(self, lst: _Listener) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, addr = await loop.sock_accept(lst.sock)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log_event(logging.ERROR, "accept.resources_exhausted", error=exc.strerror)
                    await asyncio.sleep(_ACCEPT_RETRY_DELAY)
                else:
                    # ECONNABORTED and kin: the client left while queued; nothing to do.
                    log_event(logging.DEBUG, "accept.error", error=exc.strerror)
                continue
            self._accepted(client, addr, lst.spec)

    def _accepted(self, client: socket.socket, addr: tuple[object, ...], spec: _RoleSpec) -> None:
        client.setblocking(False)
        ip = normalize_ip(str(addr[0]))
        port = int(str(addr[1]))
        loop = asyncio.get_running_loop()
        if spec.proxy:
            if not self._is_trusted_proxy(ip):
                # Spec section 2: only trusted proxies may speak for others, and the receiver
                # must not guess whether a header is present.
                log_event(logging.WARNING, "proxy.untrusted_peer", role=spec.role, peer=ip)
                _close_quietly(client)
                return
            coro = self._serve_proxied(client, ip, port, spec)
        else:
            admission = self.limiter.acquire(ip)
            if admission is not Admission.ACCEPTED:
                self._refuse(client, ip, spec, admission)
                return
            if self._hand_off(client, (ip, port), None, spec):
                return
            coro = self._serve(client, (ip, port), None, spec)
        task = loop.create_task(coro)
        self._tasks[task] = None
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    def _is_trusted_proxy(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._proxy_trusted)

    def _refuse(
        self, client: socket.socket, ip: str, spec: _RoleSpec, admission: Admission
    ) -> None:
        log_event(logging.WARNING, "conn.refused", role=spec.role, peer=ip, reason=admission.value)
        if spec.handler.too_busy_message:
            try:
                # A fresh socket's send buffer takes a one-line reply without blocking.
                client.send(spec.handler.too_busy_message)
            except OSError:
                pass
        _close_quietly(client)

    # ----------------------------------------------------------------- one connection

    async def _serve_proxied(
        self, client: socket.socket, ip: str, port: int, spec: _RoleSpec
    ) -> None:
        try:
            info = await asyncio.wait_for(read_proxy_header(client), self._proxy_timeout)
        except (ProxyHeaderError, TimeoutError, OSError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else str(exc)
            log_event(logging.WARNING, "proxy.bad_header", role=spec.role, peer=ip, reason=reason)
            _close_quietly(client)
            return
        except BaseException:
            _close_quietly(client)
            raise
        peer = info.source if info.source is not None else (ip, port)
        admission = self.limiter.acquire(peer[0])
        if admission is not Admission.ACCEPTED:
            self._refuse(client, peer[0], spec, admission)
            return
        if self._hand_off(client, peer, info, spec):
            return
        await self._serve(client, peer, info, spec)

    async def _serve(
        self,
        client: socket.socket,
        peer: tuple[str, int],
        proxy: ProxyInfo | None,
        spec: _RoleSpec,
    ) -> None:
        """Run one connection; the limiter slot for `peer` is held on entry, freed on exit."""
        loop = asyncio.get_running_loop()
        implicit = spec.tls_mode == "implicit"
        conn = Connection(
            spec.role,
            idle_timeout=spec.idle_timeout,
            write_timeout=self._write_timeout,
            ssl_context=self._ssl_context if spec.tls_mode == "starttls" else None,
            handshake_timeout=self._tls_handshake_timeout,
            peer=peer,
            proxy=proxy,
        )
        started = loop.time()
        made = False
        try:
            try:
                await loop.connect_accepted_socket(
                    lambda: conn,
                    client,
                    ssl=self._ssl_context if implicit else None,
                    ssl_handshake_timeout=self._tls_handshake_timeout if implicit else None,
                )
            except OSError as exc:  # ssl.SSLError and the handshake timeout are OSErrors
                log_event(
                    logging.INFO,
                    "tls.handshake_failed" if implicit else "conn.setup_failed",
                    conn.conn_id,
                    role=spec.role,
                    peer=peer[0],
                    reason=repr(exc),
                )
                _close_quietly(client)
                return
            made = True
            await conn.wait_made()
            task = asyncio.current_task()
            if task is not None and task in self._tasks:
                self._tasks[task] = conn
            if self._stopping:
                conn.request_shutdown()
            log_event(
                logging.INFO,
                "conn.open",
                conn.conn_id,
                role=spec.role,
                peer=f"{conn.peer_ip}:{conn.peer_port}",
                tls=conn.tls_version or "-",
                proxied=proxy is not None,
            )
            await self._run_handler(conn, spec)
        finally:
            try:
                if made:
                    await self._finish(conn)
            finally:
                self.limiter.release(peer[0])
                if made:
                    log_event(
                        logging.INFO,
                        "conn.close",
                        conn.conn_id,
                        duration=f"{loop.time() - started:.3f}",
                    )

    async def _run_handler(self, conn: Connection, spec: _RoleSpec) -> None:
        try:
            await spec.handler.handle(conn)
        except (TimeoutError, ConnectionError) as exc:
            # Idle and write timeouts, resets, failed STARTTLS handshakes: the peer's doing.
            log_event(logging.INFO, "conn.ended", conn.conn_id, reason=type(exc).__name__)
        except ShuttingDown:
            log_event(logging.INFO, "conn.ended", conn.conn_id, reason="shutdown")
        except asyncio.CancelledError:
            log_event(logging.INFO, "conn.cancelled", conn.conn_id)
            raise
        except Exception:
            # A bug in the handler. Logged in full here; the peer only sees the close.
            log_event(logging.ERROR, "handler.error", conn.conn_id, exc_info=True)

    async def _finish(self, conn: Connection) -> None:
        if not conn.closed:
            conn.close()
        try:
            # close() aborts by itself after write_timeout; this bound covers write_timeout=None.
            await asyncio.wait_for(conn.wait_closed(), (self._write_timeout or 30.0) + 5.0)
        except TimeoutError:
            conn.abort()
        except asyncio.CancelledError:
            conn.abort()
            raise


ListenerGroup = Server


def handlers_for(roles: Iterable[str], handler: RoleHandler | Handler) -> dict[str, RoleHandler]:
    """The same handler for several roles (e.g. smtp, submission, submissions)."""
    rh = handler if isinstance(handler, RoleHandler) else RoleHandler(handler)
    return {role: rh for role in roles}
