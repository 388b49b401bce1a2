"""The body thread: hashes message bodies and makes their files durable, in groups.

Theory of operation:
- Callers submit a body's bytes from the event loop and await a future of its blob id.
- The thread takes every body waiting, hashes each (sha256 releases the GIL, so this runs beside
  the event loop on another core), pins its id, and hands the group to BlobFiles.write_group():
  one round of fsyncs for all the data, one for all the directory entries. The fsyncs of a round
  are issued together from a small pool of threads, since a journalling file system commits
  fsyncs that wait together in one journal commit.
- A body is pinned (blobs.py) from before its file is looked at until the metadata job that
  references it has committed; the caller owns the pin once its future resolves. A caller that
  was cancelled meanwhile never sees its id, so the pin is dropped here.
- While the writer thread commits one batch, this thread makes the next bodies durable: the
  two stages overlap, and a body's metadata is submitted only once its file is durable.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from postar.store.sqlite.blobs import BlobFiles, blob_id_of, fsync_fd

log = logging.getLogger("postar.store")

MAX_GROUP = 256  # bodies per round: bounds the memory and latency one round holds
FSYNC_THREADS = 16  # fsyncs in flight together; beyond this a round's commits grow no further

_STOP = object()


@dataclass(slots=True)
class _Submitted:
    data: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[str]


class BodyWriter:
    def __init__(self, blobs: BlobFiles) -> None:
        self._blobs = blobs
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="postar-store-bodies", daemon=True)
        self._pool: ThreadPoolExecutor | None = None
        self.rounds = 0  # write_group() calls; tests compare it with bodies

    def start(self) -> None:
        if self._blobs.fsync:
            self._pool = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="postar-fsync")
        self._thread.start()

    def stop(self) -> None:
        """Store every body already submitted, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def submit(self, data: bytes) -> asyncio.Future[str]:
        """The future resolves to the body's blob id, pinned, once its file is durable."""
        if not self._thread.is_alive():
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._queue.put(_Submitted(data, loop, future))
        return future

    # ---- the thread -----------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            group, stopping = self._gather()
            if group:
                self._store(group)

    def _gather(self) -> tuple[list[_Submitted], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        group = [first]
        # No waiting window: what queued while the last round's fsyncs ran forms this group.
        while len(group) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return _bodies(group), True
            group.append(item)
        return _bodies(group), False

    def _store(self, group: list[_Submitted]) -> None:
        ids = [blob_id_of(body.data) for body in group]
        for blob_id in ids:
            self._blobs.pin(blob_id)
        try:
            outcomes: list[bool | OSError] | BaseException = self._blobs.write_group(
                list(zip(ids, (body.data for body in group), strict=True)), self._fsync_many
            )
        except BaseException as exc:  # a bug here must fail the callers, not hang them
            log.error("store body group failed", extra={"error": repr(exc)})
            outcomes = exc
        self.rounds += 1
        settled: dict[asyncio.AbstractEventLoop, list[tuple[_Submitted, str, BaseException | None]]]
        settled = {}
        for index, (body, blob_id) in enumerate(zip(group, ids, strict=True)):
            outcome = outcomes if isinstance(outcomes, BaseException) else outcomes[index]
            error = outcome if isinstance(outcome, BaseException) else None
            if error is not None:
                self._blobs.unpin([blob_id])
            settled.setdefault(body.loop, []).append((body, blob_id, error))
        for loop, results in settled.items():
            try:
                loop.call_soon_threadsafe(self._settle, results)
            except RuntimeError:
                # The callers' loop is closed: nobody will take these pins over.
                self._blobs.unpin([blob_id for _, blob_id, error in results if error is None])

    def _settle(self, results: list[tuple[_Submitted, str, BaseException | None]]) -> None:
        for body, blob_id, error in results:
            if body.future.cancelled():
                if error is None:
                    self._blobs.unpin([blob_id])
                continue
            if error is not None:
                body.future.set_exception(error)
            else:
                body.future.set_result(blob_id)

    def _fsync_many(self, fds: Sequence[int]) -> list[OSError | None]:
        if self._pool is None or len(fds) < 2:
            return [fsync_fd(fd) for fd in fds]
        # This thread syncs the first itself instead of waiting idle: one thread fewer to wake
        # per round, and a thread switch costs about as much as the Python around an fsync.
        rest = [self._pool.submit(fsync_fd, fd) for fd in fds[1:]]
        first = fsync_fd(fds[0])
        return [first, *(future.result() for future in rest)]


def _bodies(items: list[object]) -> list[_Submitted]:
    return [item for item in items if isinstance(item, _Submitted)]
