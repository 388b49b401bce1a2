"""Message bodies as content-addressed files: data_dir/blobs/ab/cd/<sha256 hex>.

Invariants:
- A file at its final name is complete and, with fsync on, durable: it is written to a temporary
  name in the same directory, fsynced, renamed, and the directory fsynced (a rename is only
  durable once its directory is).
- A blob row is committed only after its file is durable, so a crash leaves at worst a file
  without a row (an orphan), which sweep() removes at the next open.
- A file is unlinked only after the COMMIT that dropped its last reference, and never while
  pinned: a writer that found the file present (and so skipped writing it) pins the id until
  its own transaction has committed, which closes the race with a concurrent free.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

TMP_SUFFIX = ".tmp"


def blob_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_HEX = frozenset("0123456789abcdef")


def _is_blob_id(name: str) -> bool:
    # Ids come from our own rows, but a path built from an unchecked one could leave the tree.
    return len(name) == 64 and _HEX.issuperset(name)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobFiles:
    def __init__(self, root: Path, *, fsync: bool) -> None:
        self.root = root
        self._root_str = str(root)  # reads build paths as strings: pathlib costs more per RETR
        self.fsync = fsync
        self._lock = threading.Lock()
        self._pins: Counter[str] = Counter()
        # While > 0 (a backup is linking files) frees are deferred, not dropped.
        self._holds = 0
        self._deferred: set[str] = set()

    def path(self, blob_id: str) -> Path:
        if not _is_blob_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id[:2] / blob_id[2:4] / blob_id

    # ---- writing --------------------------------------------------------------------------
    def pin(self, blob_id: str) -> None:
        with self._lock:
            self._pins[blob_id] += 1

    def unpin(self, blob_ids: Iterable[str]) -> None:
        with self._lock:
            for blob_id in blob_ids:
                self._pins[blob_id] -= 1
                if self._pins[blob_id] <= 0:
                    del self._pins[blob_id]

    def ensure(self, blob_id: str, data: bytes) -> bool:
        """Make the file exist and be durable; the caller has pinned blob_id. Returns whether
        it was written (False: the same content was already stored)."""
        path = self.path(blob_id)
        if path.exists():
            return False
        self._make_dirs(path.parent)
        tmp = path.parent / f".{blob_id}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        # Two writers of the same content may race here; both files are identical, so the
        # last rename winning is harmless.
        os.replace(tmp, path)
        if self.fsync:
            _fsync_dir(path.parent)
        return True

    def _make_dirs(self, directory: Path) -> None:
        if directory.is_dir():
            return
        # Create level by level so each new directory entry can be fsynced in its parent.
        for level in (self.root, directory.parent, directory):
            if not level.is_dir():
                with contextlib.suppress(FileExistsError):
                    level.mkdir()
                if self.fsync:
                    _fsync_dir(level.parent)

    # ---- reading ---------------------------------------------------------------------------
    def read(self, blob_id: str, start: int = 0, length: int | None = None) -> bytes:
        if not _is_blob_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        path = f"{self._root_str}/{blob_id[:2]}/{blob_id[2:4]}/{blob_id}"
        fd = os.open(path, os.O_RDONLY)
        try:
            if length is None:
                length = os.fstat(fd).st_size - start
            return os.pread(fd, max(length, 0), start)
        finally:
            os.close(fd)

    # ---- freeing ---------------------------------------------------------------------------
    def hold(self) -> None:
        with self._lock:
            self._holds += 1

    def release(self) -> set[str]:
        """End a hold; returns the frees deferred meanwhile (to be re-checked and freed)."""
        with self._lock:
            self._holds -= 1
            if self._holds:
                return set()
            deferred, self._deferred = self._deferred, set()
            return deferred

    def free(self, blob_ids: Iterable[str], still_referenced: set[str]) -> list[str]:
        """Unlink files whose rows are gone (after COMMIT). still_referenced: ids that got a row
        back in the meantime. Returns the ids unlinked."""
        freed: list[str] = []
        with self._lock:
            for blob_id in blob_ids:
                if blob_id in still_referenced or self._pins.get(blob_id):
                    continue
                if self._holds:
                    self._deferred.add(blob_id)
                    continue
                if not _is_blob_id(blob_id):
                    raise ValueError(f"not a blob id: {blob_id!r}")
                # A string path, as read() builds: this runs on the writer thread after each
                # commit, once per freed message (an outbound queue entry removed after its
                # delivery), and pathlib's joins cost more than the unlink's GIL-held part.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self._root_str}/{blob_id[:2]}/{blob_id[2:4]}/{blob_id}")
                    freed.append(blob_id)
        return freed

    def ids(self) -> Iterator[str]:
        """Every blob file present (not temporaries)."""
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            if not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                if not second.is_dir():
                    continue
                for entry in second.iterdir():
                    if _is_blob_id(entry.name):
                        yield entry.name

    def sweep(self, referenced: set[str]) -> int:
        """At open, before any writer runs: remove temporaries and files without a row (left by
        a crash between the blob fsync and the COMMIT, or between COMMIT and unlink)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for first in self.root.iterdir():
            if not first.is_dir():
                continue
            for second in first.iterdir():
                if not second.is_dir():
                    continue
                for entry in second.iterdir():
                    name = entry.name
                    if name.endswith(TMP_SUFFIX) or (_is_blob_id(name) and name not in referenced):
                        entry.unlink()
                        removed += 1
        return removed
