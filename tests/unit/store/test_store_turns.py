"""Writer turns between processes: exclusive, bounded in time, fair to a waiting writer.

Two WriterTurns on one path conflict as two processes' would: flock belongs to the open file
description, and each instance opens its own.
"""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import pytest

from postar.store.sqlite import turns
from postar.store.sqlite.turns import WriterTurns


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "postar.writer")


def test_one_turn_at_a_time(path: str) -> None:
    first, second = WriterTurns(path), WriterTurns(path)
    try:
        assert first.take()
        taken = threading.Event()
        thread = threading.Thread(target=lambda: second.take() and taken.set())
        thread.start()
        assert not taken.wait(0.05)  # still first's turn
        first.give()
        assert taken.wait(2)
        thread.join()
        second.give()
    finally:
        first.close()
        second.close()


def test_a_stopped_holder_costs_the_timeout_not_a_hang(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(turns, "TURN_TIMEOUT", 0.05)
    holder, waiter = WriterTurns(path), WriterTurns(path)
    try:
        assert holder.take()
        started = time.monotonic()
        assert waiter.take() is False  # the batch goes ahead under SQLite's lock alone
        assert time.monotonic() - started < 2
    finally:
        holder.close()
        waiter.close()


def test_a_waiting_writer_goes_before_the_holders_next_turn(path: str) -> None:
    holder, waiter = WriterTurns(path), WriterTurns(path)
    order: list[str] = []
    try:
        assert holder.take()
        ready = threading.Event()

        def wait_for_turn() -> None:
            ready.set()
            assert waiter.take()
            order.append("waiter")
            time.sleep(0.01)
            waiter.give()

        thread = threading.Thread(target=wait_for_turn)
        thread.start()
        ready.wait()
        time.sleep(0.02)  # the waiter is polling now
        # At once again, with work queued, turn after turn: within MAX_TURNS_AHEAD turns the
        # holder lets the waiter go first.
        for _ in range(turns.MAX_TURNS_AHEAD):
            holder.give()
            assert holder.take()
            order.append("holder")
        holder.give()
        thread.join()
        assert "waiter" in order
        assert order.index("waiter") < turns.MAX_TURNS_AHEAD
    finally:
        holder.close()
        waiter.close()


def test_a_lock_error_lets_the_batch_go_ahead(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = WriterTurns(path)
    try:

        def refuse(fd: int, operation: int) -> None:
            raise OSError(errno.ENOLCK, "No locks available")

        monkeypatch.setattr(turns.fcntl, "flock", refuse)
        assert writer.take() is False
        writer.give()  # logged, not raised
    finally:
        monkeypatch.undo()
        writer.close()
