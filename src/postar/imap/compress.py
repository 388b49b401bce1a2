"""COMPRESS=DEFLATE (RFC 4978): a transport that deflates what the session writes and
inflates what it reads, wrapped around the connection after the tagged OK.

- Raw deflate (RFC 1951, zlib wbits=-15) both ways, as RFC 4978 section 3 requires.
- Every write ends with Z_SYNC_FLUSH, so the client can inflate each response at once
  (section 4: a flush per response, or IDLE news would sit in the compressor). The session
  buffers its output and writes it in large pieces, so the flush costs little.
- Inflating is bounded: one recv() yields at most `max_bytes` of inflated data, the rest of
  the input staying in zlib's unconsumed tail, so a small burst that inflates to gigabytes
  (a decompression bomb) never exists in memory at once; the receiver's own limits then
  apply to what it is fed.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postar.imap.session import Transport

DEFAULT_RECV = 64 * 1024


class DeflateTransport:
    def __init__(self, inner: Transport, level: int = 6) -> None:
        self.inner = inner
        self.conn_id = inner.conn_id
        self.peer_ip = inner.peer_ip
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        self._more_output = False  # the last inflate stopped at its limit: output may remain

    @property
    def tls_active(self) -> bool:
        return self.inner.tls_active

    @property
    def can_start_tls(self) -> bool:
        return False  # RFC 4978 section 4: no TLS negotiated inside the compressed stream

    async def start_tls(self) -> None:
        raise ConnectionError("STARTTLS is not possible once COMPRESS is active")

    def write(self, data: bytes) -> None:
        if data:
            out = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
            self.inner.write(out)

    async def drain(self) -> None:
        await self.inner.drain()

    async def recv(self, max_bytes: int = DEFAULT_RECV) -> bytes:
        """Up to `max_bytes` inflated bytes; b"" when the peer closed or ended the stream."""
        while True:
            if self._more_output or self._inflate.unconsumed_tail:
                data = self._inflate.unconsumed_tail
            else:
                if self._inflate.eof:
                    return b""  # the client ended its deflate stream: nothing more can follow
                data = await self.inner.recv()
                if not data:
                    return b""
            try:
                out = self._inflate.decompress(data, max_bytes)
            except zlib.error as exc:
                # Not a deflate stream: nothing after this point can be understood.
                raise ConnectionResetError(f"bad deflate data: {exc}") from None
            self._more_output = len(out) == max_bytes
            if out:
                return out
