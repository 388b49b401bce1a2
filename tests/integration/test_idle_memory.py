"""Memory per idle connection on the real server: 2,000 SMTP and 2,000 POP3 clients that read
the greeting and then say nothing, as a fleet of idle mail clients or a slow-loris attack does.

The bar is the issue's: under 50 KB of server RSS per idle connection, the whole session
included (connection, transport, handler task, protocol core). The figures are printed; run
with -s to see them. unit/net/test_net_memory.py measures the bare net layer the same way.
"""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.server import PostarServer
from tests.support.wire import all_closed, other_session_works, running_server, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONNECTIONS = 2000  # per protocol
BAR_KB = 50.0
BATCH = 100  # connect this many, then read their greetings: stays under the listen backlog
# Descriptors: our client sockets, the server's ends (a child inherits our limit), slack.
NEEDED_FDS = 2 * CONNECTIONS + 1000


@pytest.fixture
def enough_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NEEDED_FDS:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {NEEDED_FDS}")
    # Raised before the server starts, so its process inherits the limit too.
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, NEEDED_FDS), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _open_idle(stack: ExitStack, port: int, count: int, greeting: bytes) -> None:
    """Open `count` connections that each read the server's greeting line, then go quiet."""
    opened = 0
    while opened < count:
        batch = [
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
            for _ in range(min(BATCH, count - opened))
        ]
        for sock in batch:
            line = b""
            while not line.endswith(b"\n"):
                chunk = sock.recv(512)
                assert chunk, "server closed an idle connection during the test"
                line += chunk
            assert line.startswith(greeting), line
        opened += len(batch)


def _settled_rss(server: PostarServer) -> int:
    """RSS once it stops moving (the server may still be finishing the last sessions' setup)."""
    last = server.rss_kb()
    for _ in range(20):
        time.sleep(0.1)
        now = server.rss_kb()
        if abs(now - last) < 64:
            return now
        last = now
    return last


def test_idle_connections_cost_under_50_kb_each(tmp_path: Path, enough_descriptors: None) -> None:
    started = time.monotonic()
    config = "[limits]\nconnections_per_ip = 5000\n"
    with running_server(tmp_path, config) as server:
        # Warm-up: the first sessions of each kind import code and fill caches; that one-off
        # cost is not per connection.
        with ExitStack() as warm:
            _open_idle(warm, server.ports["smtp"], 50, b"220 ")
            _open_idle(warm, server.ports["pop3"], 50, b"+OK")
        assert wait_until(lambda: all_closed(server))
        other_session_works(server)

        with ExitStack() as stack:
            base = _settled_rss(server)
            _open_idle(stack, server.ports["smtp"], CONNECTIONS, b"220 ")
            after_smtp = _settled_rss(server)
            _open_idle(stack, server.ports["pop3"], CONNECTIONS, b"+OK")
            after_pop3 = _settled_rss(server)
            # With 4,000 idle sessions open, real work still gets done.
            other_session_works(server)
            smtp_kb = (after_smtp - base) / CONNECTIONS
            pop3_kb = (after_pop3 - after_smtp) / CONNECTIONS
            print(
                f"idle connections: SMTP {smtp_kb:.1f} KB each, POP3 {pop3_kb:.1f} KB each "
                f"(RSS {base} -> {after_smtp} -> {after_pop3} KB, "
                f"{time.monotonic() - started:.1f} s)"
            )
        assert smtp_kb < BAR_KB
        assert pop3_kb < BAR_KB
        # All 4,000 are released once the clients go (the limiter and the sessions).
        assert wait_until(lambda: all_closed(server), timeout=30)
