"""mbsync (isync) two-way sync of several folders against the running server: new mail,
flags, deletions and moves on either side."""

from __future__ import annotations

import imaplib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync not installed"),
]

ALICE = f"alice@{DOMAIN}"


def _msg(subject: str) -> bytes:
    return (
        f"From: Bob <bob@remote.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@remote.test>\r\n\r\nbody of {subject}\r\n"
    ).encode()


def _mbsync(config: Path) -> None:
    result = subprocess.run(
        ["mbsync", "-c", str(config), "-a"], capture_output=True, timeout=60, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") for p in (folder / sub).glob("*") if p.is_file())


def _subjects(imap: imaplib.IMAP4, mailbox: str) -> dict[str, bytes]:
    """Subject -> FLAGS of every message of a server mailbox."""
    imap.select(mailbox)
    _typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out: dict[str, bytes] = {}
    if data == [None]:
        return out
    for item in data:
        if isinstance(item, tuple):
            subject = item[1].decode().split(":", 1)[1].strip()
            out[subject] = item[0]
    return out


def test_mbsync_two_way(postar: PostarServer, tmp_path: Path) -> None:
    local = tmp_path / "Mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"""IMAPAccount postar
Host 127.0.0.1
Port {postar.ports["imap"]}
User {ALICE}
Pass "{PASSWORD}"
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account postar

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
Remove None
SyncState *
"""
    )
    imap = imaplib.IMAP4("127.0.0.1", postar.ports["imap"], timeout=10)
    imap.login(ALICE, PASSWORD)
    try:
        for s in ("one", "two", "three"):
            imap.append("INBOX", None, None, _msg(s))
        imap.append("Archive", "(\\Seen)", None, _msg("archived"))
        imap.create("Projects/Alpha")
        imap.append("Projects/Alpha", None, None, _msg("alpha"))

        _mbsync(config)
        assert len(_files(local / "INBOX")) == 3
        assert len(_files(local / "Archive")) == 1
        assert len(_files(local / "Projects" / "Alpha")) == 1

        # Local side: flag one, delete one, add one to Archive.
        inbox_files = _files(local / "INBOX")
        contents = {p: p.read_bytes() for p in inbox_files}
        flag_me = next(p for p, b in contents.items() if b"Subject: one" in b)
        delete_me = next(p for p, b in contents.items() if b"Subject: two" in b)
        base = flag_me.name.split(":2,")[0]
        flag_me.rename(local / "INBOX" / "cur" / f"{base}:2,FS")
        delete_me.unlink()
        (local / "Archive" / "new" / "1700000000.local.host").write_bytes(_msg("local-new"))
        # Server side: a new message, and a move from INBOX to Projects/Alpha.
        imap.append("INBOX", None, None, _msg("server-new"))
        imap.select("INBOX")
        _typ, data = imap.search(None, "SUBJECT", "three")
        imap._simple_command("MOVE", data[0].decode(), "Projects/Alpha")  # imaplib has no move()
        imap.close()

        _mbsync(config)
        inbox = _subjects(imap, "INBOX")
        assert set(inbox) == {"one", "server-new"}
        assert b"\\Flagged" in inbox["one"] and b"\\Seen" in inbox["one"]
        assert set(_subjects(imap, "Archive")) == {"archived", "local-new"}
        assert set(_subjects(imap, "Projects/Alpha")) == {"alpha", "three"}
        local_inbox = [p.read_bytes() for p in _files(local / "INBOX")]
        assert any(b"server-new" in b for b in local_inbox)
        assert not any(b"Subject: three" in b for b in local_inbox)
        assert any(
            b"Subject: three" in p.read_bytes() for p in _files(local / "Projects" / "Alpha")
        )
    finally:
        imap.logout()
