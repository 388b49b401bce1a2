"""A receiving SMTP server for outbound tests (aiosmtpd in its own thread), plus bad peers.

`SMTPPeer` records every message and answers RCPT/DATA from a script, so a test can make a
destination answer 4xx, then 250, or 5xx. `SilentPeer` accepts connections and never says a
word (RFC 5321 4.5.3.2 timeouts); `GarbagePeer` answers with bytes that are no SMTP reply.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.server import free_port


@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes
    mail_options: list[str]
    rcpt_options: list[list[str]]
    tls: bool = False  # the session ran STARTTLS
    auth_data: Any = None  # what the authenticator returned for the session's AUTH


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    # Replies to hand out, in order, before answering 250: for RCPT by recipient, for DATA.
    rcpt_script: dict[str, list[str]] = field(default_factory=dict)
    data_script: list[str] = field(default_factory=list)
    # Seconds to sit on the next message after recording it, before answering 250 (once):
    # the window in which a test kills the sender.
    data_delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            script = self.rcpt_script.get(address.lower())
            reply = (script.pop(0) if len(script) > 1 else script[0]) if script else "250"
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.data_script:
                return self.data_script.pop(0)
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or envelope.content),
                    list(envelope.mail_options),
                    [list(o) for o in envelope.rcpt_options],
                    tls=session.ssl is not None,
                    auth_data=session.auth_data,
                )
            )
            delay, self.data_delay = self.data_delay, 0.0
        if delay:
            await asyncio.sleep(delay)
        return "250 2.0.0 accepted"


class SMTPPeer:
    """`with SMTPPeer(host="127.0.0.3", port=p) as peer:` ... `peer.received`."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, **kwargs: Any) -> None:
        self.host = host
        self.port = port or free_port()
        self.handler = _Handler()
        self.controller = Controller(
            self.handler,
            hostname=host,
            port=self.port,
            server_hostname="peer.test",
            decode_data=False,
            **kwargs,
        )

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def __enter__(self) -> SMTPPeer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class RawPeer:
    """A listening socket whose every connection gets `greeting` bytes (maybe none), then
    silence until the client hangs up: the peer that never answers, or answers garbage."""

    def __init__(self, greeting: bytes, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.greeting = greeting
        self.sock = socket.create_server((host, port or free_port()))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._conns.append(conn)
            conn.settimeout(2.0)  # a client that stops reading must not wedge this thread
            try:
                conn.sendall(self.greeting)
            except OSError:
                pass

    def __enter__(self) -> RawPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for c in self._conns:
            c.close()
        self.sock.close()
