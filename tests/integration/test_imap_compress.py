"""COMPRESS=DEFLATE (RFC 4978) against the running server with imaplib: after the OK, both
directions of the real socket carry raw deflate; the client side is imaplib with its socket
reads and writes wrapped in zlib (imaplib has no COMPRESS of its own)."""

from __future__ import annotations

import imaplib
import zlib

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer

pytestmark = pytest.mark.integration

BODY = b"compressible line of text\r\n" * 4000
# imaplib refuses commands it does not know; COMPRESS is valid once authenticated.
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))

MESSAGE = b"From: a@b.test\r\nSubject: squeeze\r\n\r\n" + BODY


class DeflateIMAP(imaplib.IMAP4):
    """imaplib with a COMPRESS DEFLATE switch; counts the octets that cross the wire."""

    compressing = False
    wire_in = 0

    def compress(self) -> str:
        typ, _ = self._simple_command("COMPRESS", "DEFLATE")
        if typ == "OK":
            self.compressing = True
            self._out = zlib.compressobj(6, zlib.DEFLATED, -15)
            self._in = zlib.decompressobj(-15)
            self._plain = bytearray()
        return typ

    def send(self, data: bytes) -> None:
        if self.compressing:
            data = self._out.compress(data) + self._out.flush(zlib.Z_SYNC_FLUSH)
        super().send(data)

    def _fill(self) -> None:
        raw = self.sock.recv(65536)
        if not raw:
            raise imaplib.IMAP4.abort("socket closed")
        self.wire_in += len(raw)
        self._plain += self._in.decompress(raw)

    def readline(self) -> bytes:
        if not self.compressing:
            return super().readline()
        while b"\n" not in self._plain:
            self._fill()
        end = self._plain.index(b"\n") + 1
        line = bytes(self._plain[:end])
        del self._plain[:end]
        return line

    def read(self, size: int) -> bytes:
        if not self.compressing:
            return super().read(size)
        while len(self._plain) < size:
            self._fill()
        out = bytes(self._plain[:size])
        del self._plain[:size]
        return out


def test_imaplib_over_compress_deflate(postar: PostarServer) -> None:
    imap = DeflateIMAP("127.0.0.1", postar.ports["imap"], timeout=10)
    try:
        imap.login(f"alice@{DOMAIN}", PASSWORD)
        assert b"COMPRESS=DEFLATE" in imap.capability()[1][0].split()
        assert imap.compress() == "OK"
        assert imap.append("INBOX", None, None, MESSAGE)[0] == "OK"
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        before = imap.wire_in
        typ, data = imap.fetch("1", "(BODY[TEXT])")
        assert typ == "OK" and data[0][1] == BODY
        # The body went out deflated: far fewer octets on the wire than in the literal.
        assert imap.wire_in - before < len(BODY) // 10
        typ, data = imap.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
        assert typ == "OK" and data == [b"1"]
        # A second COMPRESS is refused (RFC 4978 section 3).
        typ, data = imap._simple_command("COMPRESS", "DEFLATE")
        assert typ == "NO"
    finally:
        imap.logout()
