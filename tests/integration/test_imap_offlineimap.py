"""offlineimap syncing two folders both ways against the running server: new messages and
flag changes on either side reach the other."""

from __future__ import annotations

import imaplib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("offlineimap") is None, reason="offlineimap not installed"),
]

ALICE = f"alice@{DOMAIN}"


def _msg(subject: str) -> bytes:
    return (
        f"From: Bob <bob@remote.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@remote.test>\r\n"
        f"Date: Wed, 9 Feb 2022 08:00:00 +0000\r\n\r\nbody of {subject}\r\n"
    ).encode()


def _sync(config: Path) -> None:
    result = subprocess.run(
        ["offlineimap", "-c", str(config), "-o", "-u", "basic"],
        capture_output=True,
        timeout=90,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERROR" not in output, output


def _local(folder: Path) -> dict[str, str]:
    """Subject -> maildir flags of every message in a local folder."""
    out: dict[str, str] = {}
    for sub in ("cur", "new"):
        for path in (folder / sub).glob("*"):
            subject = next(
                line.split(":", 1)[1].strip()
                for line in path.read_text().splitlines()
                if line.startswith("Subject:")
            )
            out[subject] = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
    return out


def _remote(imap: imaplib.IMAP4, mailbox: str) -> dict[str, bytes]:
    imap.select(mailbox)
    _typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out: dict[str, bytes] = {}
    for item in data:
        if isinstance(item, tuple):
            out[item[1].decode().split(":", 1)[1].strip()] = item[0]
    return out


def test_offlineimap_two_folders_both_ways(postar: PostarServer, tmp_path: Path) -> None:
    mail = tmp_path / "Mail"
    config = tmp_path / "offlineimaprc"
    config.write_text(
        f"""[general]
accounts = postar
metadata = {tmp_path}/meta
ui = basic

[Account postar]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {mail}

[Repository remote]
type = IMAP
remotehost = 127.0.0.1
remoteport = {postar.ports["imap"]}
remoteuser = {ALICE}
remotepass = {PASSWORD}
ssl = no
starttls = no
folderfilter = lambda name: name in ("INBOX", "Work")
"""
    )
    imap = imaplib.IMAP4("127.0.0.1", postar.ports["imap"], timeout=10)
    try:
        imap.login(ALICE, PASSWORD)
        assert imap.create("Work")[0] == "OK"
        assert imap.create("Other")[0] == "OK"  # filtered out: never synced
        for mailbox, subject in (("INBOX", "in1"), ("INBOX", "in2"), ("Work", "w1")):
            assert imap.append(mailbox, None, None, _msg(subject))[0] == "OK"
        imap.append("Other", None, None, _msg("o1"))

        _sync(config)
        assert set(_local(mail / "INBOX")) == {"in1", "in2"}
        assert set(_local(mail / "Work")) == {"w1"}
        assert not (mail / "Other").exists()

        # Local side: a new message in Work, in1 flagged and seen.
        (mail / "Work" / "new" / "1700000000.local1.host").write_bytes(_msg("w-local"))
        for path in [*(mail / "INBOX").glob("cur/*"), *(mail / "INBOX").glob("new/*")]:
            if "Subject: in1" in path.read_text():
                base = path.name.split(":2,", 1)[0]
                path.rename(mail / "INBOX" / "cur" / (base + ":2,FS"))
        # Server side: a new message in INBOX, w1 answered.
        assert imap.append("INBOX", None, None, _msg("in3"))[0] == "OK"
        imap.select("Work")
        assert imap.store("1", "+FLAGS", "(\\Answered)")[0] == "OK"
        imap.close()

        _sync(config)
        remote_work = _remote(imap, "Work")
        assert set(remote_work) == {"w1", "w-local"}
        remote_inbox = _remote(imap, "INBOX")
        assert b"\\Flagged" in remote_inbox["in1"] and b"\\Seen" in remote_inbox["in1"]
        assert b"\\Flagged" not in remote_inbox["in2"]
        local_inbox = _local(mail / "INBOX")
        assert set(local_inbox) == {"in1", "in2", "in3"}
        assert "R" in _local(mail / "Work")["w1"]
        # A third run finds nothing to do and changes nothing.
        _sync(config)
        assert _remote(imap, "INBOX").keys() == remote_inbox.keys()
    finally:
        imap.logout()
