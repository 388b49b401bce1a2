"""Download clients over IMAP: fetchmail and getmail6 fetch, keep or delete, the server's mail."""

from __future__ import annotations

import imaplib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer

pytestmark = pytest.mark.integration

ALICE = f"alice@{DOMAIN}"


def _seed(postar: PostarServer, count: int) -> None:
    imap = imaplib.IMAP4("127.0.0.1", postar.ports["imap"], timeout=10)
    imap.login(ALICE, PASSWORD)
    for i in range(count):
        imap.append(
            "INBOX",
            None,
            None,
            f"From: b@remote.test\r\nSubject: n{i}\r\n\r\nbody {i}\r\n".encode(),
        )
    imap.logout()


def _inbox_count(postar: PostarServer) -> int:
    imap = imaplib.IMAP4("127.0.0.1", postar.ports["imap"], timeout=10)
    imap.login(ALICE, PASSWORD)
    count = int(imap.select("INBOX")[1][0])
    imap.logout()
    return count


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_imap(postar: PostarServer, tmp_path: Path) -> None:
    _seed(postar, 3)
    out = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 protocol IMAP port {postar.ports['imaps']}\n"
        f'  user "{ALICE}" password "{PASSWORD}" ssl no sslcertck\n'
        f'  mda "cat >> {out}" keep\n'
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path))
    run = subprocess.run(
        ["fetchmail", "-f", str(rc), "--nosyslog", "-v"],
        capture_output=True, timeout=60, text=True, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert out.read_bytes().count(b"Subject: n") == 3
    assert _inbox_count(postar) == 3  # kept


@pytest.mark.skipif(shutil.which("getmail") is None, reason="getmail6 not installed")
def test_getmail_imap_deletes(postar: PostarServer, tmp_path: Path) -> None:
    _seed(postar, 2)
    out = tmp_path / "delivered"
    rc = tmp_path / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = 127.0.0.1\n"
        f"port = {postar.ports['imaps']}\nusername = {ALICE}\npassword = {PASSWORD}\n"
        "mailboxes = ('INBOX',)\n\n"
        # The test runs as root, which getmail refuses for its Maildir writer; an external
        # command with allow_root_commands is the documented way around it.
        "[destination]\ntype = MDA_external\npath = /bin/sh\n"
        f"arguments = ('-c', 'cat >> {out}')\nallow_root_commands = true\n\n"
        "[options]\ndelete = true\nread_all = true\n"
    )
    run = subprocess.run(
        ["getmail", "--getmaildir", str(tmp_path), "--rcfile", str(rc)],
        capture_output=True, timeout=60, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert out.read_bytes().count(b"Subject: n") == 2
    assert _inbox_count(postar) == 0  # deleted on the server
