"""`postar import`: mail from a Maildir (with its flags) and an mbox lands in an account's
folder beside a running server, and imaplib reads it back byte for byte."""

from __future__ import annotations

import imaplib
import mailbox
from pathlib import Path

from tests.support.server import DOMAIN, PASSWORD, PostarServer

ALICE = f"alice@{DOMAIN}"


def _message(n: int) -> bytes:
    return (
        f"From: sender{n}@remote.test\r\nTo: {ALICE}\r\nSubject: import {n}\r\n"
        f"Date: Mon, 2 Mar 2020 10:0{n}:00 +0000\r\n\r\nbody {n}\r\n.dot line\r\n"
    ).encode()


def _fetch_all(server: PostarServer, folder: str) -> list[tuple[bytes, bytes]]:
    imap = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=10)
    imap.login(ALICE, PASSWORD)
    typ, _ = imap.select(f'"{folder}"', readonly=True)
    assert typ == "OK"
    typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[])")
    assert typ == "OK"
    out = [(meta, body) for meta, body in (d for d in data if isinstance(d, tuple))]
    imap.logout()
    return out


def test_import_maildir_with_flags_and_mbox(postar: PostarServer, tmp_path: Path) -> None:
    md = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for n, flags in ((1, "S"), (2, "FR"), (3, "")):
        msg = mailbox.MaildirMessage(_message(n))
        msg.set_subdir("cur")
        msg.set_flags(flags)
        md.add(msg)
    out = postar.cli("import", ALICE, str(tmp_path / "Maildir"), "--folder", "Old/Maildir")
    assert "imported 3 messages" in out

    box = mailbox.mbox(tmp_path / "mail.mbox", create=True)
    for n in (4, 5):
        msg = mailbox.mboxMessage(_message(n))
        msg.set_flags("RO" if n == 4 else "O")
        box.add(msg)
    box.flush()
    out = postar.cli("import", ALICE, str(tmp_path / "mail.mbox"))
    assert "imported 2 messages" in out

    got = _fetch_all(postar, "Old/Maildir")
    by_subject = {body.split(b"Subject: ")[1].split(b"\r\n")[0]: (meta, body) for meta, body in got}
    assert set(by_subject) == {b"import 1", b"import 2", b"import 3"}
    assert b"\\Seen" in by_subject[b"import 1"][0]
    assert (
        b"\\Flagged" in by_subject[b"import 2"][0] and b"\\Answered" in by_subject[b"import 2"][0]
    )
    assert b"\\Seen" not in by_subject[b"import 3"][0]
    assert by_subject[b"import 2"][1] == _message(2)

    inbox = _fetch_all(postar, "INBOX")
    bodies = {body.split(b"Subject: ")[1].split(b"\r\n")[0]: (meta, body) for meta, body in inbox}
    assert b"\\Seen" in bodies[b"import 4"][0] and b"\\Seen" not in bodies[b"import 5"][0]
    # mbox adds its own Status header; the message itself comes back intact after it.
    assert bodies[b"import 5"][1].endswith(b"body 5\r\n.dot line\r\n")
