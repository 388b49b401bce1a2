"""The owner <-> worker channel (postar.workers.channel) over a real SEQPACKET socketpair.

Both ends run on one event loop here: what crosses the socket is exactly what crosses it
between two processes (SCM_RIGHTS duplicates descriptors within a process too), and the
test needs no subprocess to say which side read what.
"""

from __future__ import annotations

import socket
from typing import Any

from postar.workers.channel import Channel, pair
from tests.unit.net.net_helpers import wait_until

TIMEOUT = 10.0


class End:
    """What one end of a channel has received, and whether it saw the close."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, ...]] = []
        self.socks: list[list[socket.socket]] = []
        self.closes = 0

    def on_message(self, message: tuple[Any, ...], socks: list[socket.socket]) -> None:
        self.messages.append(message)
        self.socks.append(socks)

    def on_close(self) -> None:
        self.closes += 1

    def open(self, sock: socket.socket) -> Channel:
        return Channel(sock, self.on_message, self.on_close)


async def test_messages_cross_both_ways_in_order() -> None:
    ours, theirs = pair()
    owner, worker = End(), End()
    a, b = owner.open(ours), worker.open(theirs)
    try:
        for i in range(50):
            a.send(("to-worker", i, {"nested": [i] * 3}))
            b.send(("to-owner", i))
        await wait_until(lambda: len(owner.messages) == 50 and len(worker.messages) == 50)
        assert worker.messages == [("to-worker", i, {"nested": [i] * 3}) for i in range(50)]
        assert owner.messages == [("to-owner", i) for i in range(50)]
        # Plain messages carry no descriptors.
        assert all(socks == [] for socks in owner.socks + worker.socks)
    finally:
        a.close()
        b.close()


async def test_pair_makes_only_the_workers_end_inheritable() -> None:
    ours, theirs = pair()
    try:
        # The worker process gets `theirs` through exec; `ours` must not leak into it.
        assert theirs.get_inheritable() and not ours.get_inheritable()
        assert ours.type == socket.SOCK_SEQPACKET
    finally:
        ours.close()
        theirs.close()


async def test_handed_over_socket_works_and_the_senders_copy_is_closed() -> None:
    ours, theirs = pair()
    owner, worker = End(), End()
    a, b = owner.open(ours), worker.open(theirs)
    client, server_side = socket.socketpair()  # the "accepted connection" and its peer
    try:
        a.send(("conn", 7), [server_side])
        await wait_until(lambda: len(worker.messages) == 1)
        # Once sent, the owner's descriptor is closed: only the worker's copy keeps the
        # connection open, so the worker closing it really ends the client's connection.
        assert server_side.fileno() == -1
        [[received]] = worker.socks
        assert worker.messages == [("conn", 7)]
        received.setblocking(True)
        received.settimeout(TIMEOUT)
        client.settimeout(TIMEOUT)
        received.sendall(b"220 from the worker\r\n")
        assert client.recv(100) == b"220 from the worker\r\n"
        client.sendall(b"QUIT\r\n")
        assert received.recv(100) == b"QUIT\r\n"
        received.close()
        assert client.recv(100) == b""  # no copy left open anywhere
    finally:
        client.close()
        a.close()
        b.close()


async def test_closing_one_end_calls_the_others_on_close() -> None:
    ours, theirs = pair()
    owner, worker = End(), End()
    a, b = owner.open(ours), worker.open(theirs)
    a.send(("last",))
    a.close()
    assert a.closed and owner.closes == 1
    await wait_until(lambda: worker.closes == 1)
    assert b.closed
    # What was sent before the close still arrived first.
    assert worker.messages == [("last",)]
    # A closed channel drops what it is given, and closes sockets meant to be handed over.
    x, y = socket.socketpair()
    try:
        b.send(("dropped",), [x])
        assert x.fileno() == -1
        b.close()  # twice is harmless: on_close is not called again
        assert worker.closes == 1
    finally:
        y.close()


async def test_a_backlog_to_a_peer_not_reading_is_delivered_in_order() -> None:
    ours, theirs = pair()
    owner, worker = End(), End()
    a = owner.open(ours)
    payload = b"x" * 10_000
    count = 2_000  # 20 MB: far more than a socket buffer holds
    try:
        # `theirs` has no Channel yet, so nobody reads it: the kernel buffer fills, and
        # send() must queue the rest instead of blocking the loop or dropping messages.
        for i in range(count):
            a.send(("bulk", i, payload))
        assert a.backlog > 0, "the socket buffer never filled: the test proves nothing"
        b = worker.open(theirs)
        try:
            await wait_until(lambda: len(worker.messages) == count, timeout=30.0)
            assert [m[1] for m in worker.messages] == list(range(count))
            assert all(m[2] == payload for m in worker.messages)
            assert a.backlog == 0
        finally:
            b.close()
    finally:
        a.close()
