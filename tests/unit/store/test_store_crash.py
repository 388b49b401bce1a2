"""SIGKILL during a burst of deliveries: every acknowledged message is there exactly once."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postar.store.sqlite.backend import SQLiteStore
from postar.store.sqlite.base import INLINE_BODY_MAX

HERE = Path(__file__).parent
TARGET_ACKS = 300


def _run_and_kill(data_dir: Path, inline_body_max: int) -> list[str]:
    # The script's own directory is on its sys.path, so it imports store_helpers directly.
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "crash_worker.py"), str(data_dir), str(inline_body_max)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout.readline().strip() == "READY"
        while len(acked) < TARGET_ACKS and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-burst: deliveries are in flight
        proc.wait()
    # Acknowledgements already written before the kill count too.
    acked.extend(line.split()[1] for line in proc.stdout.read().splitlines() if line)
    return acked


# The bodies (about 2 KB) stored in the database, then as files.
@pytest.mark.parametrize("inline_body_max", [INLINE_BODY_MAX, 0], ids=["in-database", "files"])
async def test_sigkill_mid_burst_loses_no_acknowledged_message(
    tmp_path: Path, inline_body_max: int
) -> None:
    data_dir = tmp_path / "data"
    acked = _run_and_kill(data_dir, inline_body_max)
    assert len(acked) >= TARGET_ACKS, "the worker died before the burst"

    store = SQLiteStore(data_dir, fsync=True)
    await store.open()
    referenced: set[str] = set()
    try:
        for address in ("alice@example.org", "bob@example.org"):
            account = await store.get_account(address)
            assert account is not None
            inbox = await store.get_mailbox(account.id, "INBOX")
            assert inbox is not None
            records = await store.list_messages(inbox.id)
            referenced.update(r.blob_id for r in records)
            found: collections.Counter[str] = collections.Counter()
            for record in records:
                parsed = await store.get_parsed(record.blob_id)
                body = await store.read_blob(record.blob_id)  # no half-visible message
                assert len(body) == record.size == parsed.size
                assert parsed.envelope.message_id is not None
                found[parsed.envelope.message_id] += 1
            assert all(n == 1 for n in found.values()), "a message stored twice"
            missing = [m for m in acked if found[m] != 1]
            assert missing == []
            assert inbox.messages == len(records) >= len(acked)
            # UIDs were handed out in order without holes: no commit was half applied.
            assert [r.uid for r in records] == list(range(1, len(records) + 1))
        # Every blob file left is referenced (orphans were swept by open()); bodies stored
        # in the database leave no file at all.
        files = {p.name for p in (data_dir / "blobs").rglob("*") if p.is_file()}
        assert files == (referenced if inline_body_max == 0 else set())
    finally:
        await store.close()
