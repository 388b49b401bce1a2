"""SIGKILL mid-burst: every message the server acknowledged survives, exactly once, intact.

The store's contract (src/postar/smtp/server.py): 250 after DATA only once the message is
durable. A SIGKILL leaves no chance to flush or clean up, so after a restart on the same data
directory each acknowledged message must be in the mailbox once with its full body. Messages
that never got their 250 may or may not be there, but never twice and never truncated, and a
message for two local recipients is in both mailboxes or in neither (one delivery, one commit).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.server import PostarServer
from tests.support.wire import (
    ALICE,
    BOB,
    Closed,
    SMTPWire,
    fetch_all,
    other_session_works,
    running_server,
)

pytestmark = pytest.mark.integration

SESSIONS = 10
KILL_AFTER = (0.0, 0.3, 0.7, 1.0, 1.5)  # seconds after a burst's first 250; a round each
ID_HEADER = re.compile(rb"^X-Crash-Id: (\S+)\r$", re.MULTILINE)


def message_for(msg_id: str) -> tuple[list[str], bytes]:
    """Recipients and content of a message, derived from its id alone, so a retrieved copy
    can be checked byte for byte without remembering what was sent."""
    digest = hashlib.sha256(msg_id.encode()).digest()
    size = 512 + int.from_bytes(digest[:4], "big") % (96 * 1024)
    line = digest.hex().encode() + b"\r\n"  # 66 bytes, never starts with "."
    body = (line * (size // len(line) + 1))[:size].rsplit(b"\r\n", 1)[0] + b"\r\n"
    rcpts = [ALICE, BOB] if digest[4] % 2 else [ALICE]
    header = f"From: load@remote.test\r\nSubject: crash test\r\nX-Crash-Id: {msg_id}\r\n\r\n"
    return rcpts, header.encode() + body + f"end of {msg_id}\r\n".encode()


@dataclass
class Burst:
    round_no: int
    acked: list[str] = field(default_factory=list)  # ids that got 250 after DATA
    in_flight: list[str] = field(default_factory=list)  # ids cut off before their reply
    errors: list[str] = field(default_factory=list)  # a refusal before the kill is a bug
    lock: threading.Lock = field(default_factory=threading.Lock)


def _session(port: int, burst: Burst, worker: int) -> None:
    """Deliver messages one after another until the server dies under us."""
    n = 0
    current = None
    try:
        client = SMTPWire.open(port)
        client.sock.settimeout(20)
        while True:
            current = f"r{burst.round_no}-s{worker}-m{n}"
            rcpts, content = message_for(current)
            assert client.cmd("MAIL FROM:<load@remote.test>").code == 250
            for rcpt in rcpts:
                assert client.cmd(f"RCPT TO:<{rcpt}>").code == 250
            assert client.cmd("DATA").code == 354
            client.send(content + b".\r\n")
            reply = client.reply()
            assert reply.code == 250, reply
            with burst.lock:
                burst.acked.append(current)
            current = None
            n += 1
    except (Closed, OSError):
        if current is not None:
            with burst.lock:
                burst.in_flight.append(current)
    except AssertionError as exc:
        with burst.lock:
            burst.errors.append(f"{current}: {exc}")


def _run_burst(server: PostarServer, round_no: int, kill_after: float) -> Burst:
    burst = Burst(round_no)
    threads = [
        threading.Thread(target=_session, args=(server.ports["smtp"], burst, i), daemon=True)
        for i in range(SESSIONS)
    ]
    for thread in threads:
        thread.start()
    # Offsets count from the first 250, not from the start: on a loaded machine the first
    # delivery can take longer than the shortest offset, and a kill before any 250 tests nothing.
    first_ack_deadline = time.monotonic() + 30
    while not burst.acked and not burst.errors and time.monotonic() < first_ack_deadline:
        time.sleep(0.01)
    time.sleep(kill_after)
    server.kill()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a session did not notice the server's death"
    return burst


def _stored_ids(messages: list[bytes]) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for message in messages:
        ids = ID_HEADER.findall(message)
        assert len(ids) == 1, f"a stored message with {len(ids)} ids: {message[:300]!r}"
        found.setdefault(ids[0].decode(), []).append(message)
    return found


def test_sigkill_mid_burst_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    acked: list[str] = []
    in_flight: list[str] = []
    report = []
    with running_server(tmp_path) as server:
        for round_no, kill_after in enumerate(KILL_AFTER):
            burst = _run_burst(server, round_no, kill_after)
            assert not burst.errors, burst.errors
            assert burst.acked, f"round {round_no}: no message acknowledged before the kill"
            acked += burst.acked
            server.start()  # the same data directory, after a crash
            alice = _stored_ids(fetch_all(server, ALICE))
            bob = _stored_ids(fetch_all(server, BOB))
            for mailbox, name in ((alice, "alice"), (bob, "bob")):
                for msg_id, copies in mailbox.items():
                    assert len(copies) == 1, f"{msg_id} stored {len(copies)} times for {name}"
                    rcpts, content = message_for(msg_id)
                    assert copies[0].endswith(content), f"{msg_id} truncated or altered"
                    assert f"{name}@" in " ".join(rcpts), f"{msg_id} delivered to {name}"
            for msg_id in acked:
                rcpts, _content = message_for(msg_id)
                assert msg_id in alice, f"acknowledged {msg_id} lost for alice"
                assert (msg_id in bob) == (BOB in rcpts), f"acknowledged {msg_id}: bob"
            # One delivery for both recipients: never a copy for one and not the other.
            for msg_id in set(alice) | set(bob):
                if BOB in message_for(msg_id)[0]:
                    assert msg_id in alice and msg_id in bob, f"{msg_id} half delivered"
            # Anything stored without a 250 was some session's last message, cut off by the kill.
            in_flight += burst.in_flight
            assert set(alice) - set(acked) <= set(in_flight)
            report.append(
                f"kill at {kill_after}s: {len(burst.acked)} acked, {len(burst.in_flight)} "
                f"in flight, {len([i for i in burst.in_flight if i in alice])} of those stored"
            )
        other_session_works(server)
    print("crash safety:", "; ".join(report), f"({time.monotonic() - started:.1f} s)")
