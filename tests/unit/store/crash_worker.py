"""Delivers messages in a loop and prints "ACK <message-id>" once each deliver() returned.
Arguments: the data directory and inline_body_max (0: every body a file).

Run by test_store_crash.py, which SIGKILLs it mid-burst: every line printed is a promise the
store made (the caller could have answered 250), and must survive the kill.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from store_helpers import make_message

from postar.store.model import DeliveryTarget
from postar.store.sqlite.backend import SQLiteStore

CONCURRENCY = 8


async def main(data_dir: Path, inline_body_max: int) -> None:
    store = SQLiteStore(
        data_dir, fsync=True, group_commit_window=0.002, inline_body_max=inline_body_max
    )
    await store.open()
    await store.add_domain("example.org")
    alice = await store.add_account("alice@example.org", "x", None)
    bob = await store.add_account("bob@example.org", "x", None)
    print("READY", flush=True)
    counter = 0

    async def deliver_forever(worker: int) -> None:
        nonlocal counter
        while True:
            counter += 1
            message_id = f"<crash-{worker}-{counter}@example.org>"
            raw, parsed = make_message(f"n{counter}", message_id=message_id, pad_to=2048)
            await store.deliver(raw, parsed, [DeliveryTarget(alice.id), DeliveryTarget(bob.id)])
            sys.stdout.write(f"ACK {message_id}\n")
            sys.stdout.flush()

    await asyncio.gather(*(deliver_forever(i) for i in range(CONCURRENCY)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
