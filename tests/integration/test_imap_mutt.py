"""mutt, driven in tmux against the running server: open INBOX over imap://, read a message,
save it to another folder (`s` then `=Archive`), quit; imaplib then finds it there."""

from __future__ import annotations

import imaplib
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("mutt") is None or shutil.which("tmux") is None,
        reason="mutt or tmux not installed",
    ),
]

ALICE = f"alice@{DOMAIN}"
MESSAGE = (
    f"From: Bob <bob@remote.test>\r\nTo: {ALICE}\r\nSubject: mutt reads this\r\n"
    "Date: Wed, 9 Feb 2022 08:00:00 +0000\r\nMessage-ID: <mutt-1@remote.test>\r\n\r\n"
    "The body mutt should show on screen.\r\n"
).encode()


class Tmux:
    """One private tmux server (its own socket), so nothing else's sessions are touched."""

    def __init__(self) -> None:
        self.socket = f"postar-test-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        return result.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "mutt")

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"mutt never showed {what}; screen:\n{screen}")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "mutt", *keys)

    def kill(self) -> None:
        self.run("kill-server")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    try:
        yield t
    finally:
        t.kill()


def test_mutt_reads_and_saves_to_another_folder(
    postar: PostarServer, tmp_path: Path, tmux: Tmux
) -> None:
    imap = imaplib.IMAP4("127.0.0.1", postar.ports["imap"], timeout=10)
    imap.login(ALICE, PASSWORD)
    try:
        assert imap.append("INBOX", None, None, MESSAGE)[0] == "OK"
        muttrc = tmp_path / "muttrc"
        muttrc.write_text(
            f"""set imap_user = "{ALICE}"
set imap_pass = "{PASSWORD}"
set folder = "imap://127.0.0.1:{postar.ports["imap"]}/"
set spoolfile = "+INBOX"
# Debian's mutt does SCRAM through GNU SASL, which sends authzid = authcid ("n,a=alice,...");
# RFC 5802 section 5.1 allows it and our SCRAM accepts it (tests/integration/test_scram_gsasl.py).
set imap_authenticators = "scram-sha-256"
set ssl_starttls = no
set ssl_force_tls = no
set record = ""
set postponed = "+Drafts"
set header_cache = ""
set message_cachedir = ""
set confirmcreate = no
set confirmappend = no
set move = no
set delete = yes
set quit = yes
set wait_key = no
set mail_check = 300
set timeout = 300
"""
        )
        command = f"env HOME={tmp_path} TERM=screen mutt -n -F {muttrc}"
        tmux.run("new-session", "-d", "-s", "mutt", "-x", "160", "-y", "40", command)
        tmux.wait_for(lambda s: "mutt reads this" in s, "the INBOX index")
        tmux.keys("Enter")
        tmux.wait_for(lambda s: "The body mutt should show" in s, "the message body")
        tmux.keys("s")
        tmux.wait_for(lambda s: "Save to mailbox" in s, "the save prompt")
        # The prompt may offer a default: clear the line before typing the folder.
        tmux.keys("C-u", "=Archive", "Enter")
        tmux.wait_for(lambda s: "saved" in s.lower() or "Archive" not in s, "the save")
        tmux.keys("q")
        tmux.wait_for(lambda s: "The body mutt should show" not in s, "the index again")
        tmux.keys("q")
        deadline = time.monotonic() + 15
        while "mutt" in tmux.run("list-sessions") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "mutt" not in tmux.run("list-sessions"), tmux.screen()

        typ, data = imap.select("Archive")
        assert typ == "OK" and data == [b"1"], data
        _typ, fetched = imap.fetch("1", "(BODY.PEEK[])")
        assert fetched[0][1] == MESSAGE
        # `s` marks the original deleted and quitting purged it (delete = yes).
        typ, data = imap.select("INBOX")
        assert data == [b"0"]
    finally:
        imap.logout()
