"""The POP3 glue (pop3/server.py) over a real SQLite store and a stand-in connection.

The stand-in records every write() and lets a test decide whether the peer reads: drain()
either returns or blocks, as net.Connection's does above its write high-water mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from postar.auth import Authenticator
from postar.auth.passwords import hash_password
from postar.config import Config
from postar.mime.parser import parse_message
from postar.pop3.server import (
    READ_AHEAD_BYTES,
    READ_AHEAD_COUNT,
    RETR_CHUNK,
    WRITE_THRESHOLD,
    POP3Server,
)
from postar.store.interface import Store
from postar.store.sqlite.backend import SQLiteStore

HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
USER = "alice@example.org"
PASSWORD = "wonderland"


def message(n: int, body_lines: int) -> bytes:
    head = f"From: bob@example.net\r\nTo: {USER}\r\nSubject: message {n}\r\n\r\n".encode()
    # Lines that need stuffing (RFC 1939 section 3), at the start and inside the body.
    lines = [b".starts with a dot", b"..two dots", b"plain line %d" % n] * body_lines
    return head + b"\r\n".join(lines) + b"\r\n"


def retr_answer(raw: bytes) -> bytes:
    stuffed = raw.replace(b"\n.", b"\n..")
    return b"+OK %d octets\r\n" % len(raw) + stuffed + b".\r\n"


@dataclass
class StandInConnection:
    """What POP3Session uses of net.Connection. `reads_up_to`: the peer stops reading after
    that many bytes, so a drain() once more has been written blocks until the test ends."""

    inbound: list[bytes]
    reads_up_to: int | None = None
    writes: list[bytes] = field(default_factory=list)
    undrained: int = 0  # bytes written since the last drain() returned
    most_undrained: int = 0
    blocked: asyncio.Event = field(default_factory=asyncio.Event)
    waiting_for_input: asyncio.Event = field(default_factory=asyncio.Event)
    conn_id = "test"
    peer_ip = "127.0.0.1"
    tls_active = False
    can_start_tls = False

    @property
    def output(self) -> bytes:
        return b"".join(self.writes)

    async def recv(self, max_bytes: int = 65536) -> bytes:
        if self.inbound:
            return self.inbound.pop(0)
        self.waiting_for_input.set()
        await asyncio.Event().wait()  # a client that has nothing more to say
        return b""

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.undrained += len(data)
        self.most_undrained = max(self.most_undrained, self.undrained)

    async def drain(self) -> None:
        if self.reads_up_to is not None and len(self.output) > self.reads_up_to:
            self.blocked.set()
            await asyncio.Event().wait()
        self.undrained = 0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = SQLiteStore(tmp_path / "data", fsync=False, group_commit_window=0.0, default_quota=0)
    await s.open()
    try:
        await s.add_domain("example.org")
        await s.add_account(USER, hash_password(PASSWORD, HASHER), None)
        yield s
    finally:
        await s.close()


async def fill_inbox(store: Store, messages: list[bytes]) -> None:
    account = await store.get_account(USER)
    assert account is not None
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    for raw in messages:
        await store.append(account.id, inbox.id, raw, parse_message(raw))


def pop3_server(store: Store) -> POP3Server:
    config = Config()
    services = type("Services", (), {})()
    services.config = config
    services.store = store
    services.authenticator = Authenticator(store, config.auth, hasher=HASHER)
    return POP3Server(services)  # type: ignore[arg-type]


LOGIN = f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode()


async def test_pipelined_retrs_are_answered_in_order_and_in_batches(store: Store) -> None:
    messages = [message(n, body_lines=20) for n in range(200)]
    await fill_inbox(store, messages)
    retrs = b"".join(b"RETR %d\r\n" % n for n in range(1, len(messages) + 1))
    conn = StandInConnection([LOGIN + retrs + b"QUIT\r\n"])
    await asyncio.wait_for(pop3_server(store).handle(conn), 10)  # type: ignore[arg-type]

    out = conn.output
    assert out.startswith(b"+OK ")
    answers = out.split(b"\r\n", 3)[3]  # after the greeting and the USER and PASS replies
    quit_reply = b"+OK Postar POP3 server signing off (200 messages left)\r\n"
    assert answers == b"".join(retr_answer(m) for m in messages) + quit_reply
    # Pipelined answers leave in batches of about WRITE_THRESHOLD, not one write each.
    assert len(conn.writes) <= len(out) // WRITE_THRESHOLD + 4


async def test_a_lone_retr_is_answered_before_the_session_waits(store: Store) -> None:
    await fill_inbox(store, [message(1, body_lines=2)])
    conn = StandInConnection([LOGIN, b"RETR 1\r\n"])
    task = asyncio.create_task(pop3_server(store).handle(conn))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(conn.waiting_for_input.wait(), 10)
        assert conn.output.endswith(retr_answer(message(1, body_lines=2)))
    finally:
        task.cancel()


async def test_a_client_that_stops_reading_gets_at_most_one_batch(store: Store) -> None:
    # Small and large (several chunks) messages; the whole maildrop is ~2 MB.
    messages = [message(n, body_lines=20 if n % 10 else 8000) for n in range(100)]
    await fill_inbox(store, messages)
    retrs = b"".join(b"RETR %d\r\n" % n for n in range(1, len(messages) + 1))
    # The peer reads the greeting and the login replies, then nothing more.
    conn = StandInConnection([LOGIN + retrs], reads_up_to=200)
    server = pop3_server(store)
    task = asyncio.create_task(server.handle(conn))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(conn.blocked.wait(), 10)
        for _ in range(20):  # the session gets every chance to write more than it should
            await asyncio.sleep(0)
        # A RETR chunk may double in size by stuffing; a status line comes with it.
        assert conn.most_undrained <= WRITE_THRESHOLD + 2 * RETR_CHUNK + 100
        assert len(conn.output) < sum(len(m) for m in messages) // 4
    finally:
        task.cancel()


async def test_answers_gathered_before_quit_leave_before_the_expunge(store: Store) -> None:
    messages = [message(n, body_lines=2) for n in range(3)]
    await fill_inbox(store, messages)
    conn = StandInConnection([LOGIN + b"RETR 1\r\nRETR 2\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n"])
    written_at_expunge: list[bytes] = []
    expunge = store.expunge

    async def watched_expunge(mailbox_id: int, uids: list[int]) -> object:
        written_at_expunge.append(conn.output)
        return await expunge(mailbox_id, uids)

    store.expunge = watched_expunge  # type: ignore[method-assign]
    await asyncio.wait_for(pop3_server(store).handle(conn), 10)  # type: ignore[arg-type]

    [before] = written_at_expunge
    assert before.endswith(
        retr_answer(messages[0])
        + retr_answer(messages[1])
        + b"+OK Message 1 deleted\r\n+OK Message 2 deleted\r\n"
    )
    assert conn.output.endswith(b"+OK Postar POP3 server signing off (1 messages left)\r\n")


class CountingStore:
    """Counts the glue's body reads, passing them on to the real store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.whole_calls: list[int] = []  # how many ids each read_whole_blobs call asked for
        self.found: list[int] = []  # how many bodies each returned
        self.blob_reads = 0
        read_whole, read_blob = store.read_whole_blobs, store.read_blob

        async def counting_whole(blob_ids: list[str]) -> dict[str, bytes]:
            bodies = await read_whole(blob_ids)
            self.whole_calls.append(len(blob_ids))
            self.found.append(len(bodies))
            return bodies

        async def counting_read(
            blob_id: str, start: int = 0, length: int | None = None, *, size: int | None = None
        ) -> bytes:
            self.blob_reads += 1
            return await read_blob(blob_id, start, length, size=size)

        store.read_whole_blobs = counting_whole  # type: ignore[method-assign]
        store.read_blob = counting_read  # type: ignore[method-assign]


async def download(store: Store, commands: bytes) -> bytes:
    conn = StandInConnection([LOGIN + commands + b"QUIT\r\n"])
    await asyncio.wait_for(pop3_server(store).handle(conn), 10)  # type: ignore[arg-type]
    return conn.output.split(b"\r\n", 3)[3]  # after the greeting and the login replies


def retrs(numbers: range | list[int]) -> bytes:
    return b"".join(b"RETR %d\r\n" % n for n in numbers)


async def test_a_download_in_order_reads_ahead(store: Store) -> None:
    messages = [message(n, body_lines=20) for n in range(100)]  # about 1.3 KB each
    await fill_inbox(store, messages)
    counts = CountingStore(store)
    answers = await download(store, retrs(range(1, 101)))
    assert answers.startswith(b"".join(retr_answer(m) for m in messages))
    # One store call per READ_AHEAD_COUNT messages, none for a message on its own.
    assert counts.whole_calls == [READ_AHEAD_COUNT] * 3 + [100 - 3 * READ_AHEAD_COUNT]
    assert counts.blob_reads == 0


async def test_read_ahead_holds_at_most_read_ahead_bytes(store: Store) -> None:
    messages = [message(n, body_lines=300) for n in range(40)]  # about 20 KB each
    await fill_inbox(store, messages)
    counts = CountingStore(store)
    answers = await download(store, retrs(range(1, 41)))
    assert answers.startswith(b"".join(retr_answer(m) for m in messages))
    per_call = READ_AHEAD_BYTES // len(messages[0])
    assert counts.whole_calls[0] == per_call
    assert sum(counts.whole_calls) == 40 and counts.blob_reads == 0


async def test_top_then_retr_of_each_message_is_read_once(store: Store) -> None:
    messages = [message(n, body_lines=20) for n in range(40)]
    await fill_inbox(store, messages)
    counts = CountingStore(store)
    commands = b"".join(b"TOP %d 0\r\nRETR %d\r\n" % (n, n) for n in range(1, 41))
    answers = await download(store, commands)
    assert retr_answer(messages[39]) in answers
    assert counts.whole_calls == [READ_AHEAD_COUNT, 40 - READ_AHEAD_COUNT]
    assert counts.blob_reads == 0


async def test_a_client_that_jumps_around_reads_each_message_on_its_own(store: Store) -> None:
    messages = [message(n, body_lines=20) for n in range(20)]
    await fill_inbox(store, messages)
    counts = CountingStore(store)
    order = [5, 3, 9, 17, 1]
    answers = await download(store, retrs(order))
    assert answers.startswith(b"".join(retr_answer(messages[n - 1]) for n in order))
    assert counts.whole_calls == [] and counts.blob_reads == len(order)


async def test_bodies_in_files_are_asked_for_once_per_read_ahead(tmp_path: Path) -> None:
    # inline_body_max = 0: every body is a file, so read-ahead finds none of them. Each is
    # then read on its own, without asking the store again for every message.
    s = SQLiteStore(
        tmp_path / "data", fsync=False, group_commit_window=0.0, default_quota=0, inline_body_max=0
    )
    await s.open()
    try:
        await s.add_domain("example.org")
        await s.add_account(USER, hash_password(PASSWORD, HASHER), None)
        messages = [message(n, body_lines=20) for n in range(70)]
        await fill_inbox(s, messages)
        counts = CountingStore(s)
        answers = await download(s, retrs(range(1, 71)))
        assert answers.startswith(b"".join(retr_answer(m) for m in messages))
        assert counts.whole_calls == [READ_AHEAD_COUNT] * 2 + [70 - 2 * READ_AHEAD_COUNT]
        assert counts.found == [0, 0, 0] and counts.blob_reads == 70
    finally:
        await s.close()


async def test_pipelined_listings_to_a_peer_that_stops_reading_stay_bounded(
    store: Store,
) -> None:
    messages = [message(n, body_lines=1) for n in range(3000)]
    await fill_inbox(store, messages)
    # About 30 KB of answer per LIST; 2,000 of them would be 60 MB from 12 KB of input.
    conn = StandInConnection([LOGIN + b"LIST\r\n" * 2000], reads_up_to=200)
    task = asyncio.create_task(pop3_server(store).handle(conn))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(conn.blocked.wait(), 30)
        for _ in range(20):  # every chance to write more than it should
            await asyncio.sleep(0)
        one_answer = 40 * 1024  # "+OK", 3,000 lines of "n size", "."
        assert conn.most_undrained <= WRITE_THRESHOLD + one_answer
    finally:
        task.cancel()


async def test_read_ahead_starts_again_when_the_client_goes_back(store: Store) -> None:
    # A sweep of TOP n 0, then a sweep of RETR: both read ahead, 32 messages a call. The
    # first RETR, a jump back, is read on its own; the second finds the order again.
    messages = [message(n, body_lines=20) for n in range(64)]
    await fill_inbox(store, messages)
    counts = CountingStore(store)
    tops = b"".join(b"TOP %d 0\r\n" % n for n in range(1, 65))
    answers = await download(store, tops + retrs(range(1, 65)))
    assert answers.endswith(
        b"".join(retr_answer(m) for m in messages)
        + b"+OK Postar POP3 server signing off (64 messages left)\r\n"
    )
    assert counts.whole_calls == [READ_AHEAD_COUNT] * 3 + [READ_AHEAD_COUNT - 1]
    assert counts.blob_reads == 1


async def test_bodies_whose_dot_lines_are_not_known_are_still_stuffed(store: Store) -> None:
    # Bodies stored before schema v6 carry no dot_lines answer; the core scans them.
    messages = [message(n, body_lines=5) for n in range(10)]
    await fill_inbox(store, messages)
    assert isinstance(store, SQLiteStore)
    with contextlib.closing(sqlite3.connect(store.db_path)) as db, db:
        db.execute("UPDATE blob_bodies SET dot_lines = NULL")
    answers = await download(store, retrs(range(1, 11)))
    assert answers.startswith(b"".join(retr_answer(m) for m in messages))
