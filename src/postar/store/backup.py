"""Restore a backup made by Store.backup() into a data directory.

A backup is dest/postar.sqlite3 (with the bodies stored in the database) plus
dest/blobs/ab/cd/<sha256> for the bodies kept as files. Everything is verified before anything
is written: every body the database references must be present with its recorded size and
sha256, so a restore never produces a store that acknowledges messages it cannot read.
The server must not be running on data_dir while restoring.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from postar.store.interface import StoreError
from postar.store.sqlite.base import BLOB_DIR, DB_NAME, LOCK_NAME
from postar.store.sqlite.blobs import BlobFiles
from postar.store.sqlite.schema import SCHEMA_VERSION, user_version

_READ_CHUNK = 1 << 20


class RestoreError(StoreError):
    """The backup is incomplete or damaged, or the target is not empty."""


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify(src: Path) -> list[str]:
    """The ids of the body files the backup's database references, after checking each
    body's size and sha256 (files and rows). Raises RestoreError naming the first problem."""
    db = src / DB_NAME
    if not db.is_file():
        raise RestoreError(f"{db} is missing")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise RestoreError(f"{db} fails SQLite's integrity check")
        if user_version(conn) > SCHEMA_VERSION:
            raise RestoreError(f"{db} was written by a newer Postar")
        in_db = bool(
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'blob_bodies'"
            ).fetchone()
        )
        if in_db:  # schema v4 on: small bodies are rows, checked here like the files below
            for blob_id, size, body in conn.execute(
                "SELECT b.id, b.size, d.body FROM blobs b JOIN blob_bodies d USING (num)"
            ):
                if not isinstance(body, bytes):
                    raise RestoreError(f"blob {blob_id} is damaged (not a BLOB)")
                digest = hashlib.sha256(body).hexdigest()
                if digest != blob_id or len(body) != size:
                    raise RestoreError(
                        f"blob {blob_id} is damaged (sha256 {digest}, {len(body)} bytes)"
                    )
        files_only = " WHERE num NOT IN (SELECT num FROM blob_bodies)" if in_db else ""
        blobs = conn.execute(f"SELECT id, size FROM blobs{files_only}").fetchall()
    finally:
        conn.close()
    files = BlobFiles(src / BLOB_DIR, fsync=False)
    for blob_id, size in blobs:
        path = files.path(blob_id)
        if not path.is_file():
            raise RestoreError(f"blob {blob_id} is missing from the backup")
        digest, actual = _sha256_file(path)
        if digest != blob_id or actual != size:
            raise RestoreError(f"blob {blob_id} is damaged (sha256 {digest}, {actual} bytes)")
    return [blob_id for blob_id, _ in blobs]


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Hold the store's lock on data_dir, so a running server is never restored over."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RestoreError(f"{data_dir} is in use by a running store") from None
        yield
    finally:
        os.close(fd)


def restore(src: Path, data_dir: Path, *, force: bool = False) -> None:
    """Copy a verified backup into data_dir. A non-empty data_dir is refused unless force,
    in which case its database and blobs are replaced (other files are left alone)."""
    src, data_dir = Path(src), Path(data_dir)
    blob_ids = verify(src)
    if data_dir.exists() and any(p.name != LOCK_NAME for p in data_dir.iterdir()) and not force:
        raise RestoreError(f"{data_dir} is not empty (use force to overwrite)")
    with _locked(data_dir):
        _copy_in(src, data_dir, blob_ids)


def _copy_in(src: Path, data_dir: Path, blob_ids: list[str]) -> None:
    if (data_dir / DB_NAME).exists() or (data_dir / BLOB_DIR).exists():
        for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
            (data_dir / name).unlink(missing_ok=True)
        shutil.rmtree(data_dir / BLOB_DIR, ignore_errors=True)
    source_files = BlobFiles(src / BLOB_DIR, fsync=False)
    target_files = BlobFiles(data_dir / BLOB_DIR, fsync=True)
    for blob_id in blob_ids:
        # ensure() writes to a temporary name, fsyncs and renames: an interrupted restore leaves
        # no half-written blob under a final name.
        target_files.ensure(blob_id, source_files.read(blob_id))
    # The database last, through SQLite's backup API (consistent even if src has a WAL), and
    # fsynced: once it exists, every blob it names is already durable.
    tmp = data_dir / f".{DB_NAME}.restore"
    tmp.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{src / DB_NAME}?mode=ro", uri=True)
    target = sqlite3.connect(tmp)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, data_dir / DB_NAME)
    dir_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
