"""Real clients against the running server's IMAP roles: imaplib (every command we serve),
two imaplib sessions seeing each other's changes, an SMTP delivery waking an IDLE session, and
curl over imap:// (STARTTLS) and imaps://."""

from __future__ import annotations

import imaplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer

pytestmark = pytest.mark.integration

ALICE = f"alice@{DOMAIN}"
MESSAGE = (
    b"From: Bob <bob@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: integration\r\n"
    b"Date: Wed, 9 Feb 2022 08:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="x"\r\n'
    b"\r\n"
    b"--x\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"plain body words\r\n"
    b"--x\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>html body</p>\r\n"
    b"--x--\r\n"
)


def _login(postar: PostarServer) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", postar.ports["imap"], timeout=10)
    imap.login(ALICE, PASSWORD)
    return imap


@pytest.fixture
def imap(postar: PostarServer) -> Iterator[imaplib.IMAP4]:
    client = _login(postar)
    try:
        yield client
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_imaplib_every_command(postar: PostarServer, imap: imaplib.IMAP4) -> None:
    caps = imap.capability()[1][0].split()
    assert b"IDLE" in caps and b"UIDPLUS" in caps and b"MOVE" in caps
    typ, data = imap.list()
    assert typ == "OK" and any(b"\\Sent" in line for line in data)
    assert imap.create("Work/Reports")[0] == "OK"
    assert imap.subscribe("Work/Reports")[0] == "OK"
    typ, data = imap.lsub()
    assert any(b"Work/Reports" in line for line in data)
    typ, data = imap.append("INBOX", "(\\Flagged)", None, MESSAGE)
    assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = imap.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
    assert b"MESSAGES 1" in data[0]
    typ, data = imap.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = imap.fetch("1", "(ENVELOPE BODYSTRUCTURE FLAGS)")
    text = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b'"integration"' in text and b'"ALTERNATIVE"' in text and b"\\Flagged" in text
    typ, data = imap.fetch("1", "(BODY.PEEK[1] BODY.PEEK[2]<0.8>)")
    pieces = [p for p in data if isinstance(p, tuple)]
    assert pieces[0][1] == b"plain body words" and pieces[1][1] == b"<p>html "
    typ, data = imap.uid("FETCH", "1", "(UID RFC822.SIZE)")
    assert b"RFC822.SIZE %d" % len(MESSAGE) in data[0]
    assert imap.store("1", "+FLAGS", "(\\Seen)")[0] == "OK"
    assert imap.search(None, "SEEN", "FROM", "bob")[1] == [b"1"]
    assert imap.search(None, "TEXT", "words")[1] == [b"1"]
    assert imap.search(None, "UNSEEN")[1] == [b""]
    typ, data = imap.copy("1", "Work/Reports")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = imap._simple_command("MOVE", "1", "Archive")  # imaplib has no move()
    assert typ == "OK"
    assert imap.select("INBOX")[1] == [b"0"]
    imap.select("Work/Reports")
    imap.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = imap.expunge()
    assert data == [b"1"]
    assert imap.close()[0] == "OK"
    assert imap.rename("Work", "Done")[0] == "OK"
    assert imap.delete("Done/Reports")[0] == "OK"
    assert imap.namespace()[0] == "OK"
    assert imap.noop()[0] == "OK"


def test_login_refused_over_plain_tcp_only_with_wrong_password(postar: PostarServer) -> None:
    imap = imaplib.IMAP4("127.0.0.1", postar.ports["imap"], timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login(ALICE, "wrong")
    imap.logout()


def test_starttls_and_imaps(postar: PostarServer) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    imap = imaplib.IMAP4("127.0.0.1", postar.ports["imap"], timeout=10)
    assert "STARTTLS" in imap.capabilities
    imap.starttls(ssl_context=ctx)
    assert "STARTTLS" not in imap.capabilities
    imap.login(ALICE, PASSWORD)
    imap.logout()
    imaps = imaplib.IMAP4_SSL("127.0.0.1", postar.ports["imaps"], ssl_context=ctx, timeout=10)
    imaps.login(ALICE, PASSWORD)
    assert imaps.select("INBOX")[0] == "OK"
    imaps.logout()


def test_two_sessions_see_each_other(postar: PostarServer) -> None:
    one, two = _login(postar), _login(postar)
    try:
        one.append("INBOX", None, None, MESSAGE)
        one.select("INBOX")
        two.select("INBOX")
        two.append("INBOX", None, None, MESSAGE)
        two.store("1", "+FLAGS", "(\\Flagged)")
        one.noop()
        assert one.untagged_responses.get("EXISTS", [])[-1:] == [b"2"]
        fetches = one.untagged_responses.get("FETCH", [])
        assert any(b"\\Flagged" in f for f in fetches)
        two.store("2", "+FLAGS", "(\\Deleted)")
        two.expunge()
        one.noop()
        assert one.untagged_responses.get("EXPUNGE") == [b"2"]
    finally:
        one.logout()
        two.logout()


def _read_until(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_smtp_delivery_wakes_idle(postar: PostarServer) -> None:
    # imaplib has IDLE only from 3.14: speak it by hand.
    with socket.create_connection(("127.0.0.1", postar.ports["imap"]), timeout=10) as sock:
        _read_until(sock, b"\r\n")
        sock.sendall(f'a1 LOGIN {ALICE} "{PASSWORD}"\r\na2 SELECT INBOX\r\n'.encode())
        _read_until(sock, b"a2 OK")
        sock.sendall(b"a3 IDLE\r\n")
        _read_until(sock, b"+ ")
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", postar.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("x@remote.test", [ALICE], MESSAGE)
        data = _read_until(sock, b"EXISTS")
        assert b"* 1 EXISTS" in data
        assert time.monotonic() - started < 2.0
        sock.sendall(b"DONE\r\n")
        assert b"a3 OK" in _read_until(sock, b"a3 ")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_imap_and_imaps(postar: PostarServer, imap: imaplib.IMAP4) -> None:
    imap.append("INBOX", None, None, MESSAGE)
    user = f"{ALICE}:{PASSWORD}"
    listing = subprocess.run(
        ["curl", "-s", "--ssl-reqd", "--insecure", "-u", user,
         f"imap://127.0.0.1:{postar.ports['imap']}/"],
        capture_output=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert b"INBOX" in listing and b"Sent" in listing
    body = subprocess.run(
        ["curl", "-s", "--insecure", "-u", user,
         f"imaps://127.0.0.1:{postar.ports['imaps']}/INBOX;UID=1"],
        capture_output=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert body.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    search = subprocess.run(
        ["curl", "-s", "--insecure", "-u", user, "-X", "SEARCH FROM bob",
         f"imaps://127.0.0.1:{postar.ports['imaps']}/INBOX"],
        capture_output=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert re.search(rb"\* SEARCH 1", search)
