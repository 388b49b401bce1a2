"""`[imap] literal = "minus"`: the server offers LITERAL- instead of LITERAL+ (RFC 7888, never
both), takes non-synchronising literals up to 4096 octets, refuses larger ones with a tagged
BAD [TOOBIG] and goes on; clients that wait for "+" (imaplib) append any size."""

from __future__ import annotations

import imaplib
import socket
from pathlib import Path

import pytest

from postar.config import ConfigError, config_from_dict
from tests.support.server import DOMAIN, PASSWORD, PostarServer
from tests.support.wire import assert_no_traceback

pytestmark = pytest.mark.integration

USER = f"lit@{DOMAIN}"
TIMEOUT = 10.0


def _reply(sock: socket.socket, tag: bytes) -> list[bytes]:
    """Lines up to and including the tagged one."""
    reader = sock.makefile("rb")
    lines: list[bytes] = []
    while True:
        line = reader.readline()
        assert line, f"connection closed; so far {lines}"
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


def test_literal_minus(tmp_path: Path) -> None:
    server = PostarServer(tmp_path, roles=("imap",), extra_config='[imap]\nliteral = "minus"\n')
    server.add_domain(DOMAIN)
    server.add_user(USER)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.ports["imap"]), TIMEOUT) as sock:
            greeting = _reply(sock, b"*")[0]
            assert b"LITERAL-" in greeting and b"LITERAL+" not in greeting
            sock.sendall(f'a LOGIN {USER} "{PASSWORD}"\r\n'.encode())
            assert _reply(sock, b"a")[-1].startswith(b"a OK")
            small = b"Subject: small\r\n\r\n" + b"x" * 1000 + b"\r\n"
            sock.sendall(b"b APPEND INBOX {%d+}\r\n" % len(small) + small + b"\r\n")
            assert _reply(sock, b"b")[-1].startswith(b"b OK [APPENDUID ")
            big = b"Subject: big\r\n\r\n" + b"y" * 5000 + b"\r\n"
            sock.sendall(b"c APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
            assert _reply(sock, b"c")[-1].startswith(b"c BAD [TOOBIG]")
            # The refused literal's octets were read and dropped, not taken as commands.
            sock.sendall(b"d NOOP\r\n")
            assert _reply(sock, b"d") == [b"d OK NOOP completed\r\n"]
        # imaplib waits for the continuation: the same large message goes in.
        client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=TIMEOUT)
        client.login(USER, PASSWORD)
        assert client.append("INBOX", None, None, big)[0] == "OK"
        client.select("INBOX", readonly=True)
        status, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK"
        subjects = [part[1].strip() for part in data if isinstance(part, tuple)]
        assert subjects == [b"Subject: small", b"Subject: big"]
        client.logout()
    finally:
        assert server.stop() == 0
    assert_no_traceback(server)


def test_literal_setting_is_checked(tmp_path: Path) -> None:
    assert config_from_dict({}, tmp_path).imap.literal == "plus"
    assert config_from_dict({"imap": {"literal": "minus"}}, tmp_path).imap.literal == "minus"
    with pytest.raises(ConfigError, match=r"imap\.literal"):
        config_from_dict({"imap": {"literal": "both"}}, tmp_path)
