"""Writer turns: the writer threads of several processes take turns at the database.

Why: the serving process, its SMTP workers and a management command each have a writer thread
on the same SQLite database. A writer that finds the database locked sleeps in SQLite's busy
handler (1, 2, 5, 10 ms ...) whatever the holder's commit takes, and a core idles meanwhile:
SMTP delivery through two worker processes ran about 15% slower that way.

Theory of operation:
- The turn is an flock on data_dir/postar.writer, held from BEGIN IMMEDIATE until the batch's
  after-commit work is done. A writer that finds it taken looks again every 0.1 ms, doubling
  up to TURN_POLL_MAX. Polling, not a blocking flock, so that a stopped holder costs
  TURN_TIMEOUT (then the batch goes ahead and SQLite's busy timeout applies), not a hang.
- Fairness: flock wakes nobody in order, and a holder with more work queued takes the turn
  again microseconds after giving it back, long before a polling waiter looks. So a waiter
  holds a shared flock on postar.writer.waiting while it polls, and a writer that has taken
  the turn MAX_TURNS_AHEAD times in a row while someone waited lets the waiter go first (for
  at most YIELD_MAX). Not at every turn: the waiter's next look is up to TURN_POLL_MAX away,
  and idling that long before every turn cost SMTP intake about 10%; usually the holder has
  nothing queued right after its commit and the waiter gets in by itself.
- A process that dies lets go of both with its descriptors. Any other error of the locks is
  logged and the batch goes ahead without its turn: SQLite's own lock still serialises it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time

log = logging.getLogger("postar.store")

TURN_POLL_FIRST = 0.0001  # seconds before a waiter's first look again
TURN_POLL_MAX = 0.0005
TURN_TIMEOUT = 10.0  # then go ahead without the turn
YIELD_MAX = 0.002  # how long a writer lets waiting ones go first
MAX_TURNS_AHEAD = 3  # turns in a row a writer takes while another waits


class WriterTurns:
    def __init__(self, path: str) -> None:
        self._turn = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._waiting = os.open(f"{path}.waiting", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            os.close(self._turn)
            raise
        self._turns_ahead = 0  # turns taken in a row while another writer waited

    def close(self) -> None:
        os.close(self._waiting)
        os.close(self._turn)

    def take(self) -> bool:
        """Wait for the turn; False if it was not taken (timeout or a lock error)."""
        try:
            if not self._others_waiting():
                self._turns_ahead = 0
            else:
                self._turns_ahead += 1
                if self._turns_ahead >= MAX_TURNS_AHEAD:
                    self._turns_ahead = 0
                    self._let_waiters_first()
            if self._try():
                return True
            fcntl.flock(self._waiting, fcntl.LOCK_SH)  # others probe it for microseconds only
            try:
                return self._poll()
            finally:
                fcntl.flock(self._waiting, fcntl.LOCK_UN)
        except OSError as exc:
            log.warning("store writer turn failed", extra={"error": str(exc)})
            return False

    def give(self) -> None:
        try:
            fcntl.flock(self._turn, fcntl.LOCK_UN)
        except OSError as exc:  # the descriptor is ours and open: a kernel refusal, logged
            log.warning("store writer turn not given back", extra={"error": str(exc)})

    def _try(self) -> bool:
        try:
            fcntl.flock(self._turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _poll(self) -> bool:
        deadline = time.monotonic() + TURN_TIMEOUT
        delay = TURN_POLL_FIRST
        while True:
            time.sleep(delay)
            if self._try():
                return True
            if time.monotonic() > deadline:
                log.warning("store writer turn not taken", extra={"waited": TURN_TIMEOUT})
                return False
            delay = min(delay * 2, TURN_POLL_MAX)

    def _let_waiters_first(self) -> None:
        deadline = time.monotonic() + YIELD_MAX
        while self._others_waiting() and time.monotonic() < deadline:
            time.sleep(TURN_POLL_FIRST)

    def _others_waiting(self) -> bool:
        try:
            fcntl.flock(self._waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self._waiting, fcntl.LOCK_UN)
        return False
