"""Edge paths of the hand-over, on both sides, over a real channel: a connection the owner
cannot hand over stays its own, and a connection a worker cannot take frees its slot."""

from __future__ import annotations

import socket
from typing import Any, cast

from postar.auth.throttle import LoginThrottle
from postar.config import AuthConfig, Config
from postar.store.interface import Store
from postar.workers.channel import MAX_MESSAGE, pair
from postar.workers.pool import WorkerPool
from postar.workers.worker import _WorkerProcess
from tests.unit.net.net_helpers import wait_until
from tests.unit.workers.test_channel import End


def _pool_with_one_ready_worker(end: End) -> tuple[WorkerPool, socket.socket]:
    throttle = LoginThrottle(AuthConfig(), clock=lambda: 0.0)
    pool = WorkerPool(cast(Config, None), 1, frozenset({"smtp"}), cast(Store, None), throttle)
    ours, theirs = pair()
    worker = pool._workers[0]
    worker.channel = end.open(ours)
    worker.ready = True
    return pool, theirs


async def test_a_connection_too_large_to_hand_over_stays_with_the_owner() -> None:
    pool, theirs = _pool_with_one_ready_worker(End())
    peer_end = End()
    peer = peer_end.open(theirs)
    released: list[int] = []
    client, other = socket.socketpair()
    try:
        # A PROXY v2 header may carry up to 64 KB of TLVs: more than one channel message.
        huge = {"tlvs": b"x" * MAX_MESSAGE}
        assert not pool.hand(client, ("192.0.2.1", 25), cast(Any, huge), "smtp", lambda: None)
        assert pool.connections == 0
        assert client.fileno() != -1  # still the owner's to serve
        assert pool.hand(client, ("192.0.2.1", 25), None, "smtp", lambda: released.append(1))
        assert pool.connections == 1
        await wait_until(lambda: len(peer_end.messages) == 1)
        [(kind, ticket, role, address, proxy)] = peer_end.messages
        assert (kind, role, address, proxy) == ("conn", "smtp", ("192.0.2.1", 25), None)
        for s in peer_end.socks[0]:
            s.close()
        # The worker's report frees the slot, once.
        pool._received(pool._workers[0], ("closed", ticket), [])
        pool._received(pool._workers[0], ("closed", ticket), [])
        assert released == [1] and pool.connections == 0
    finally:
        other.close()
        client.close()
        peer.close()
        channel = pool._workers[0].channel
        assert channel is not None
        channel.close()


async def test_a_connection_a_worker_cannot_take_frees_its_slot() -> None:
    ours, theirs = pair()
    owner = End()
    owner_channel = owner.open(ours)
    worker = _WorkerProcess(theirs, 1)
    try:

        class Refusing:
            def adopt(self, *args: object) -> None:
                raise RuntimeError("no room")

        worker.server = cast(Any, Refusing())
        # No descriptor arrived (the kernel drops one the receiver has no room for).
        worker.adopt(("conn", 7, "smtp", ("192.0.2.1", 25), None), [])
        # The server could not take it.
        a, b = socket.socketpair()
        worker.adopt(("conn", 8, "smtp", ("192.0.2.1", 25), None), [a])
        await wait_until(lambda: len(owner.messages) == 2)
        assert owner.messages == [("closed", 7), ("closed", 8)]
        assert a.fileno() == -1  # closed, not leaked
        b.close()
    finally:
        worker.channel.close()
        owner_channel.close()
