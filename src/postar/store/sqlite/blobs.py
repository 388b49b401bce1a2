"""Message bodies as content-addressed files: data_dir/blobs/ab/cd/<sha256 hex>.

Invariants:
- A file at its final name is complete: it is written to a temporary name in the same
  directory, fsynced, renamed, and the directory fsynced (a rename is only durable once its
  directory is) before write_group()/ensure() return. Bodies that arrive together are written as
  one group (one fsync round for their data, one for their directories), see write_group().
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
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

TMP_SUFFIX = ".tmp"


def blob_id_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# A compiled pattern checks the 64 characters in about half the time a set lookup per
# character takes, and the check runs on every read (every POP3 RETR, every IMAP body fetch).
_BLOB_ID = re.compile(r"[0-9a-f]{64}")


def _is_blob_id(name: str) -> bool:
    # Ids come from our own rows, but a path built from an unchecked one could leave the tree.
    return _BLOB_ID.fullmatch(name) is not None


# Makes several descriptors durable; per descriptor None or the OSError its fsync raised.
FsyncMany = Callable[[Sequence[int]], list[OSError | None]]


def directory_of(path: str) -> str:
    return path.rpartition("/")[0]


def fsync_fd(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None


def _fsync_each(fds: Sequence[int]) -> list[OSError | None]:
    """One after another: for a single file, or where no thread pool is at hand."""
    return [fsync_fd(fd) for fd in fds]


@dataclass(slots=True)
class _Pending:
    """A body file of one write_group() call, from its temporary name to its final one."""

    path: str
    tmp: str
    fd: int
    indexes: list[int]  # the items of the group that carry this content
    error: OSError | None = None
    renamed: bool = False
    existing: bool = False  # found at its final name: synced again, not written

    def fail(self, error: OSError) -> None:
        if self.error is None:
            self.error = error


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
        # Leaf directories whose own entry (and their parent's) this process has seen synced:
        # only the leaf itself needs syncing for a new file in it. At most 65,536 names.
        self._settled: set[str] = set()

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
        [outcome] = self.write_group([(blob_id, data)])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def write_group(
        self, items: Sequence[tuple[str, bytes]], fsync_many: FsyncMany = _fsync_each
    ) -> list[bool | OSError]:
        """ensure() for several bodies at once, each already pinned by its caller: per item,
        whether it was written, or the OSError that kept it from being stored.

        Why a group: on a journalling file system every fsync waits for a journal commit, and
        fsyncs issued together share one. Written one by one, a body costs a commit for its
        data, one for its directory entry and one per new directory; written as a group, all
        the bodies cost one commit for their data and one for all their directory entries,
        whatever their number. The order per file stays: data durable under a temporary name,
        then renamed, then its directory and the directories above it durable, before this
        returns; so a file at its final name is complete.

        Several processes write bodies (the SMTP workers, a management command beside the
        server), so a file found at its final name, or a directory found made, may be another
        process's work whose fsyncs are still under way: a found file is synced again with
        the group's files, and every level of directory above a body is synced with the
        group's directories. Syncing what is already durable returns at once.
        """
        outcomes: list[bool | OSError] = [False] * len(items)
        pending: dict[str, _Pending] = {}  # blob id -> its file being written in this group
        dirs: dict[str, list[_Pending]] = {}  # directories whose entries must be made durable
        # Paths as strings: pathlib's objects cost more than the file operations themselves.
        for index, (blob_id, data) in enumerate(items):
            if blob_id in pending:
                pending[blob_id].indexes.append(index)  # same content twice in one group
                continue
            path = self._file(blob_id)
            directory = directory_of(path)
            try:
                found = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                pass
            except OSError as exc:
                outcomes[index] = exc
                continue
            else:
                pending[blob_id] = _Pending(path, "", found, [index], existing=True)
                continue
            made: list[str] = []
            try:
                self._make_dirs(blob_id, made)
                tmp = f"{directory}/.{blob_id}.{secrets.token_hex(4)}{TMP_SUFFIX}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            except OSError as exc:
                outcomes[index] = exc
                # A directory made before the failure is synced all the same: a later body
                # in it would find it present and not sync its entry again.
                for level in made:
                    dirs.setdefault(os.path.dirname(level), [])
                continue
            item = pending[blob_id] = _Pending(path, tmp, fd, [index])
            for level in made:  # a new directory's entry lives in its parent
                dirs.setdefault(os.path.dirname(level), []).append(item)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                item.fail(exc)
        live = [p for p in pending.values() if p.error is None]
        if self.fsync:
            for item, error in zip(live, fsync_many([p.fd for p in live]), strict=True):
                if error is not None:
                    item.fail(error)
        for item in pending.values():
            os.close(item.fd)
            if item.existing:
                if item.error is None:
                    self._add_dirs(dirs, item)
                continue
            if item.error is None:
                try:
                    # Two writers of the same content may race here (a management command
                    # beside the server); both files are identical, so either rename may win.
                    os.replace(item.tmp, item.path)
                except OSError as exc:
                    item.fail(exc)
                else:
                    item.renamed = True
                    self._add_dirs(dirs, item)
                    continue
            with contextlib.suppress(OSError):
                os.unlink(item.tmp)
        if self.fsync and dirs:
            order = list(dirs)
            fds: list[int] = []
            try:
                for directory in order:
                    fds.append(os.open(directory, os.O_RDONLY | os.O_DIRECTORY))
            except OSError as exc:
                for directory in order[len(fds) :]:
                    for item in dirs[directory]:
                        item.fail(exc)
                order = order[: len(fds)]
            synced: set[str] = set()
            try:
                for directory, error in zip(order, fsync_many(fds), strict=True):
                    if error is not None:
                        for item in dirs[directory]:
                            item.fail(error)
                    else:
                        synced.add(directory)
            finally:
                for fd in fds:
                    os.close(fd)
            self._settle(
                (directory_of(p.path) for p in pending.values() if p.error is None), synced
            )
        for item in pending.values():
            # A file renamed whose directory could not be synced stays: another process may
            # already reference it, and whoever finds it next syncs it again (see above).
            for index in item.indexes:
                outcomes[index] = item.error if item.error is not None else not item.existing
        return outcomes

    def _add_dirs(self, dirs: dict[str, list[_Pending]], item: _Pending) -> None:
        """The body's directory, and each one above it up to the blob root unless this
        process has already seen them synced after the body's directory existed."""
        leaf = directory_of(item.path)
        dirs.setdefault(leaf, []).append(item)
        if leaf not in self._settled:
            first = directory_of(leaf)  # root/xx/yy/id: yy, then xx and the root
            dirs.setdefault(first, []).append(item)
            dirs.setdefault(directory_of(first), []).append(item)

    def _settle(self, leaves: Iterable[str], synced: set[str]) -> None:
        """Leaf directories whose parent and root were synced in this round are settled."""
        for leaf in leaves:
            first = directory_of(leaf)
            if first in synced and directory_of(first) in synced:
                self._settled.add(leaf)

    def _make_dirs(self, blob_id: str, made: list[str]) -> None:
        """Create the blob's directory and its missing parents, adding each one created to
        made as soon as it exists (its entry is still to be made durable by the caller)."""
        first = f"{self._root_str}/{blob_id[:2]}"
        directory = f"{first}/{blob_id[2:4]}"
        if os.path.isdir(directory):
            return
        for level in (self._root_str, first, directory):
            if not os.path.isdir(level):
                try:
                    os.mkdir(level)
                except FileExistsError:
                    continue
                made.append(level)

    def present(self, blob_id: str) -> bool:
        """Whether the blob's file is there (a guest's check before it first references it)."""
        return os.path.exists(self._file(blob_id))

    def _file(self, blob_id: str) -> str:
        """path() as a string, the id checked: pathlib's joins cost more than the file
        operations on the hot paths (every read, every freed body, every body written)."""
        if not _is_blob_id(blob_id):  # ids are our own sha256 digests: a bug otherwise
            raise ValueError(f"not a blob id: {blob_id!r}")
        return f"{self._root_str}/{blob_id[:2]}/{blob_id[2:4]}/{blob_id}"

    # ---- reading ---------------------------------------------------------------------------
    def read(self, blob_id: str, start: int = 0, length: int | None = None) -> bytes:
        fd = os.open(self._file(blob_id), os.O_RDONLY)
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
                # A string path: this runs on the writer thread after each commit, once per
                # freed message (an outbound queue entry removed after its delivery).
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file(blob_id))
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
