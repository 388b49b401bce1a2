"""Import existing mail into an account: an mbox file, a Maildir, or a folder of .eml files.

What a user moving from Dovecot or another client brings along. The stdlib `mailbox` module
reads both formats (well kept, and only used to find where each message starts and which
flags it carries); every message is then parsed once by our own parser and stored by
store.append(), exactly like an IMAP APPEND, so it is durable when the command ends.

Appends run IMPORT_CONCURRENCY at a time: the store's writer commits whatever arrives
together in one transaction (group commit), so a large import costs one fsync per batch,
not per message. Line endings are normalised to CRLF, the form every stored message has.
"""

from __future__ import annotations

import asyncio
import email.utils
import mailbox
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from postar.mime.parser import parse_message
from postar.store.interface import NotFound, Store

IMPORT_CONCURRENCY = 64

# Maildir info flags (the letters after ":2,") and what IMAP calls them.
_MAILDIR_FLAGS = {
    "S": "\\Seen",
    "R": "\\Answered",
    "F": "\\Flagged",
    "T": "\\Deleted",
    "D": "\\Draft",
}
# mbox Status / X-Status header letters, as mutt and Dovecot's mbox driver write them.
_MBOX_STATUS = {"R": "\\Seen"}
_MBOX_XSTATUS = {"A": "\\Answered", "F": "\\Flagged", "D": "\\Deleted", "T": "\\Draft"}


@dataclass(frozen=True)
class ImportItem:
    raw: bytes
    flags: frozenset[str]
    internal_date: float | None


@dataclass(frozen=True)
class ImportResult:
    imported: int
    seconds: float


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _date_header(raw: bytes) -> float | None:
    end = raw.find(b"\r\n\r\n")
    for line in raw[: end if end >= 0 else len(raw)].split(b"\r\n"):
        if line[:5].lower() == b"date:":
            try:
                return email.utils.parsedate_to_datetime(line[5:].decode("latin-1")).timestamp()
            except (TypeError, ValueError, IndexError):
                return None
    return None


def _maildir_items(path: Path) -> Iterator[ImportItem]:
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in box.iterkeys():
        msg = box.get_message(key)
        raw = _crlf(box.get_bytes(key))
        flags = frozenset(_MAILDIR_FLAGS[c] for c in msg.get_flags() if c in _MAILDIR_FLAGS)
        # Maildir's delivery time is the file's; the Date header is the sender's clock.
        yield ImportItem(raw, flags, msg.get_date() or _date_header(raw))


def _mbox_items(path: Path) -> Iterator[ImportItem]:
    box = mailbox.mbox(path, factory=None, create=False)
    for key in box.iterkeys():
        msg = box.get_message(key)
        raw = _crlf(box.get_bytes(key))
        flags = {_MBOX_STATUS[c] for c in str(msg.get("Status", "")) if c in _MBOX_STATUS}
        flags |= {_MBOX_XSTATUS[c] for c in str(msg.get("X-Status", "")) if c in _MBOX_XSTATUS}
        when: float | None = None
        from_line = msg.get_from()  # "sender Thu Aug 22 18:26:25 2002"
        parts = from_line.split(None, 1)
        if len(parts) == 2:
            try:
                when = time.mktime(time.strptime(parts[1].strip()[:24], "%a %b %d %H:%M:%S %Y"))
            except ValueError:
                when = None
        yield ImportItem(raw, frozenset(flags), when or _date_header(raw))


def _eml_items(path: Path) -> Iterator[ImportItem]:
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        raw = _crlf(file.read_bytes())
        yield ImportItem(raw, frozenset(), _date_header(raw) or file.stat().st_mtime)


def read_source(path: Path) -> Iterator[ImportItem]:
    """The messages at path, whatever its format: Maildir, mbox or a folder of files."""
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            return _maildir_items(path)
        return _eml_items(path)
    if path.is_file():
        return _mbox_items(path)
    raise FileNotFoundError(f"{path}: no such mbox file, Maildir or folder")


async def import_messages(
    store: Store, address: str, source: Path, folder: str = "INBOX"
) -> ImportResult:
    """Append every message of source to the account's folder (created if missing)."""
    started = time.monotonic()
    account = await store.get_account(address.lower())
    if account is None:
        raise NotFound(f"no account {address}")
    mailbox_row = await store.get_mailbox(account.id, folder)
    if mailbox_row is None:
        mailbox_row = await store.create_mailbox(account.id, folder)
    slots = asyncio.Semaphore(IMPORT_CONCURRENCY)
    count = 0

    async def one(item: ImportItem) -> None:
        nonlocal count
        try:
            parsed = parse_message(item.raw)
            await store.append(
                account.id, mailbox_row.id, item.raw, parsed, item.flags, item.internal_date
            )
            count += 1
        finally:
            slots.release()

    async with asyncio.TaskGroup() as group:
        for item in read_source(source):
            await slots.acquire()
            group.create_task(one(item))
    return ImportResult(count, time.monotonic() - started)
