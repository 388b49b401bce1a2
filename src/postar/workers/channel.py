"""The channel between the serving process and one of its worker processes.

One AF_UNIX SOCK_SEQPACKET socket pair per worker: every send is one message, so there is no
framing to get wrong, and a message may carry file descriptors (an accepted client socket)
in SCM_RIGHTS ancillary data.

Messages are pickled tuples, ("kind", ...). Pickle is safe here because both ends are our own
processes, made by socketpair() and inherited by exec: nobody else can write to the socket.

Sending never blocks the event loop: a message the kernel cannot take now (the peer is busy
and its receive buffer is full) waits in `_outgoing` and goes out when the socket is
writable, in order. A descriptor being handed over stays open until its message is sent,
then this side closes its copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("postar.workers")

MAX_MESSAGE = 1 << 16  # bytes; a batch of mailbox changes is a few KB (the default
# socket buffer, about 200 KB, bounds a SEQPACKET message anyway)
MAX_FDS = 4  # descriptors per message; we send one
# Messages waiting for a peer that does not read. Past this the peer is taken for stuck and
# the channel closed (the owner then restarts the worker): memory must not grow without end.
MAX_BACKLOG = 10_000
CHUNK = 256  # items per send_chunked() message: far below MAX_MESSAGE once pickled

OnMessage = Callable[[tuple[Any, ...], list[socket.socket]], None]


def pair() -> tuple[socket.socket, socket.socket]:
    """(ours, theirs): theirs is made inheritable for the worker process."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.set_inheritable(True)
    return ours, theirs


class Channel:
    """Messages both ways over one SEQPACKET socket, driven by the running event loop."""

    def __init__(self, sock: socket.socket, on_message: OnMessage, on_close: Callable[[], None]):
        sock.setblocking(False)
        self._sock = sock
        self._on_message = on_message
        self._on_close = on_close
        self._outgoing: deque[tuple[bytes, list[socket.socket]]] = deque()
        self._loop = asyncio.get_running_loop()
        self._writing = False
        self.closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    def send(self, message: tuple[Any, ...], handover: Sequence[socket.socket] = ()) -> None:
        """Queue a message (and sockets whose descriptors go with it; ours are closed once
        sent). On a closed channel the sockets are closed and the message dropped."""
        if self.closed:
            for s in handover:
                s.close()
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_MESSAGE:
            raise ValueError(f"channel message of {len(data)} bytes")
        self._outgoing.append((data, list(handover)))
        if len(self._outgoing) > MAX_BACKLOG:
            log.error("worker channel: peer not reading, closed", extra={"queued": MAX_BACKLOG})
            self.close()
            return
        if not self._writing:
            self._flush()

    def send_chunked(self, kind: str, items: Sequence[Any]) -> None:
        """(kind, items) as messages of at most CHUNK items: a batch's changes (up to 512
        jobs, each with changes) or a table of login failures can exceed one message."""
        for start in range(0, len(items), CHUNK):
            self.send((kind, list(items[start : start + CHUNK])))

    def _flush(self) -> None:
        while self._outgoing:
            data, socks = self._outgoing[0]
            try:
                if socks:
                    socket.send_fds(self._sock, [data], [s.fileno() for s in socks])
                else:
                    self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                if not self._writing:
                    self._writing = True
                    self._loop.add_writer(self._sock.fileno(), self._flush)
                return
            except OSError:
                self.close()
                return
            self._outgoing.popleft()
            for s in socks:
                s.close()  # the peer has its own descriptor now
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._sock.fileno())

    def _readable(self) -> None:
        while not self.closed:
            try:
                data, fds, _, _ = socket.recv_fds(
                    self._sock, MAX_MESSAGE, MAX_FDS, socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            socks = [socket.socket(fileno=fd) for fd in fds]
            if not data:
                for s in socks:
                    s.close()
                self.close()
                return
            try:
                message = pickle.loads(data)
            except Exception:
                log.error("worker channel: unreadable message", extra={"bytes": len(data)})
                for s in socks:
                    s.close()
                continue
            self._on_message(message, socks)

    def drain(self) -> None:
        """Take every message the peer sent before it went away (then close)."""
        self._readable()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        if self._writing:
            with contextlib.suppress(Exception):
                self._loop.remove_writer(self._sock.fileno())
        for _, socks in self._outgoing:
            for s in socks:
                s.close()
        self._outgoing.clear()
        self._sock.close()
        self._on_close()

    @property
    def backlog(self) -> int:
        """Messages waiting for the peer to read."""
        return len(self._outgoing)
