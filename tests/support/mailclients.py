"""Helpers for driving real mail clients (swaks, curl, fetchmail, getmail, poplib) at a test server.

Every external program runs with a timeout and a private HOME, so a client that hangs fails
the test instead of the run, and no client reads the developer's own ~/.fetchmailrc or state.
"""

from __future__ import annotations

import os
import poplib
import re
import shutil
import smtplib
import sqlite3
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer

CLIENT_TIMEOUT = 60.0  # seconds for one run of an external client
SOCKET_TIMEOUT = 15.0  # seconds for one reply to smtplib/poplib

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"

# Dovecot-like strictness: no plaintext password over an unencrypted connection, even from
# loopback. Tests with this config prove that TLS is really what unlocks PLAIN/LOGIN/USER.
STRICT_AUTH_CONFIG = "[auth]\nallow_plaintext_from_loopback = false\n"


def require_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install {name})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def run(
    cmd: Sequence[str],
    *,
    home: Path | None = None,
    timeout: float = CLIENT_TIMEOUT,
    input_bytes: bytes | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client; never raises on a non-zero exit (tests assert on returncode and output)."""
    env = dict(os.environ)
    if home is not None:
        env["HOME"] = str(home)
    # LC_ALL=C keeps client messages in English, which some assertions read.
    env["LC_ALL"] = "C"
    result = subprocess.run(
        list(cmd),
        input=input_bytes,
        capture_output=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )


def swaks(server: PostarServer, role: str, *args: str) -> subprocess.CompletedProcess[str]:
    """swaks against one of the server's SMTP listeners; the transcript is in stdout."""
    require_program("swaks")
    return run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.ports[role]),
         "--timeout", "15", "--helo", "client.remote.test", *args]
    )  # fmt: skip


def server_replies(transcript: str) -> list[str]:
    """The server's lines in a swaks transcript: "<-", "<~" inside TLS, "<**" or "<~*" for
    error replies."""
    out = []
    for line in transcript.splitlines():
        m = re.match(r"^\s*<[-~*]{1,2}\s+(.*)$", line)
        if m:
            out.append(m.group(1))
    return out


def client_lines(transcript: str) -> list[str]:
    """The client's lines in a swaks transcript: "->", "~>" inside TLS."""
    out = []
    for line in transcript.splitlines():
        m = re.match(r"^\s*[-~*]{1,2}>\s(.*)$", line)
        if m:
            out.append(m.group(1))
    return out


# ---- POP3 through poplib ------------------------------------------------------------------------
@contextmanager
def pop3_session(
    server: PostarServer, user: str = ALICE, password: str = PASSWORD, *, stls: bool = False
) -> Iterator[poplib.POP3]:
    """A logged-in poplib session; stls=True upgrades first (for a strict-auth server)."""
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=SOCKET_TIMEOUT)
    try:
        if stls:
            pop.stls(context=client_tls_context(server))
        pop.user(user)
        pop.pass_(password)
        yield pop
    finally:
        try:
            pop.quit()
        except (poplib.error_proto, OSError):
            pop.close()


def raw_of(lines: list[bytes]) -> bytes:
    """poplib's RETR lines (dot-unstuffed, CRLF removed) back to the message bytes."""
    return b"".join(line + b"\r\n" for line in lines)


def pop3_messages(
    server: PostarServer, user: str = ALICE, password: str = PASSWORD, *, stls: bool = False
) -> list[bytes]:
    """Every message in the user's maildrop, oldest first, left on the server."""
    with pop3_session(server, user, password, stls=stls) as pop:
        count, _size = pop.stat()
        return [raw_of(pop.retr(i)[1]) for i in range(1, count + 1)]


def pop3_count(
    server: PostarServer, user: str = ALICE, password: str = PASSWORD, *, stls: bool = False
) -> int:
    with pop3_session(server, user, password, stls=stls) as pop:
        return int(pop.stat()[0])


def _field_end(raw: bytes, pos: int) -> int:
    """End of the header field starting at pos, folded continuation lines included."""
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            return len(raw)
        pos = end + 2
        if raw[pos : pos + 1] not in (b" ", b"\t"):
            return pos


def strip_trace(raw: bytes) -> tuple[list[bytes], bytes]:
    """Split off the trace fields our server prepends at delivery: a Return-Path (RFC 5321
    4.4) and then our one Received field. Fields of the same names further down belong to
    the message as it was sent and stay in it."""
    fields: list[bytes] = []
    pos = 0
    for name in (b"return-path:", b"received:"):
        if raw[pos : pos + len(name)].lower() != name:
            break
        end = _field_end(raw, pos)
        fields.append(raw[pos:end])
        pos = end
    return fields, raw[pos:]


def crlf(data: bytes) -> bytes:
    """LF or mixed line ends to CRLF, as an MTA puts a Unix file on the wire."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def stored_bodies(data_dir: Path) -> int:
    """Message bodies stored: files under data_dir/blobs (temporaries excluded) plus the small
    bodies kept in the database's blob_bodies table."""
    root = data_dir / "blobs"
    files = (
        sum(1 for p in root.rglob("*") if p.is_file() and len(p.name) == 64) if root.is_dir() else 0
    )
    conn = sqlite3.connect(f"file:{data_dir / 'postar.sqlite3'}?mode=ro", uri=True)
    try:
        rows = int(conn.execute("SELECT count(*) FROM blob_bodies").fetchone()[0])
    finally:
        conn.close()
    return files + rows


def self_signed_cert(server: PostarServer) -> Path:
    path = server.data_dir / "tls" / "selfsigned.crt"
    assert path.is_file(), f"no self-signed certificate at {path}"
    return path


def client_tls_context(server: PostarServer) -> ssl.SSLContext:
    """Verifies the server's self-signed certificate (its SAN names 127.0.0.1), so a test
    also proves that the server presents the certificate it wrote."""
    return ssl.create_default_context(cafile=str(self_signed_cert(server)))


@contextmanager
def running_server(root: Path, extra_config: str = "") -> Iterator[PostarServer]:
    """Like the `postar` fixture (example.test, alice and bob), with extra configuration."""
    root.mkdir(parents=True, exist_ok=True)
    server = PostarServer(root, extra_config=extra_config)
    server.add_domain(DOMAIN)
    server.add_user(ALICE)
    server.add_user(BOB)
    server.start()
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"server exited with {code}:\n{server.log()[-3000:]}"


def deliver(
    server: PostarServer,
    message: bytes,
    recipients: Sequence[str] = (ALICE,),
    sender: str = "sender@remote.test",
) -> None:
    """Hand a message (CRLF line ends) to the server's port smtp with smtplib."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=SOCKET_TIMEOUT) as smtp:
        refused = smtp.sendmail(sender, list(recipients), message)
        assert not refused, refused


def numbered_message(n: int, subject: str = "message") -> bytes:
    return (
        f"From: sender@remote.test\r\nTo: {ALICE}\r\nSubject: {subject} {n}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}-{n}@remote.test>\r\n\r\n"
        f"body of {subject} {n}\r\n"
    ).encode()
