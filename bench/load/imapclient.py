"""A small asyncio IMAP client for load generation: raw commands, literals, IDLE.

imaplib is synchronous and has no IDLE on 3.11; for thousands of concurrent clients we need
asyncio. The client does only what the load needs: it does not parse responses beyond
finding tagged completions, literals and EXISTS/EXPUNGE counts.
"""

from __future__ import annotations

import asyncio
import base64
import re

import scramp

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
_EXISTS = re.compile(rb"^\* (\d+) EXISTS")
_EXPUNGE = re.compile(rb"^\* (\d+) EXPUNGE")


class ImapError(RuntimeError):
    pass


class ImapClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._tag = 0
        self.exists = 0
        self.caps = b""

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 10.0) -> ImapClient:
        # A 64 MiB line limit: SEARCH on 100,000 messages answers in one line of ~600 KB.
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, limit=64 * 1024 * 1024), timeout
        )
        client = cls(reader, writer)
        greeting = await asyncio.wait_for(reader.readline(), timeout)
        if not greeting.startswith(b"* OK") and not greeting.startswith(b"* PREAUTH"):
            writer.close()
            raise ImapError(f"bad greeting: {greeting[:100]!r}")
        return client

    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"A%d" % self._tag

    async def _read_response_line(self) -> bytes:
        """One response line with any literals it carries folded in."""
        line = await self.reader.readline()
        if not line:
            raise ImapError("connection closed by server")
        while True:
            m = _LITERAL.search(line)
            if not m:
                return line
            line += await self.reader.readexactly(int(m.group(1)))
            more = await self.reader.readline()
            if not more:
                raise ImapError("connection closed inside a literal")
            line += more

    def _track(self, line: bytes) -> None:
        m = _EXISTS.match(line)
        if m:
            self.exists = int(m.group(1))
        elif _EXPUNGE.match(line):
            self.exists -= 1

    async def _await_tagged(self, tag: bytes) -> tuple[list[bytes], bytes]:
        untagged: list[bytes] = []
        while True:
            line = await self._read_response_line()
            if line.startswith(tag + b" "):
                status = line[len(tag) + 1 :].split(b" ", 1)[0]
                if status != b"OK":
                    raise ImapError(f"{line.decode(errors='replace').strip()[:200]}")
                return untagged, line
            self._track(line)
            untagged.append(line)

    async def command(self, text: str) -> list[bytes]:
        """Send one command (no literals) and return its untagged lines; NO/BAD raise."""
        tag = self._next_tag()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        untagged, _ = await self._await_tagged(tag)
        return untagged

    async def count_lines(self, text: str) -> int:
        """Like command() but only counts untagged lines: FETCH 1:* on a big mailbox would
        otherwise keep 100,000 lines alive just to be thrown away."""
        tag = self._next_tag()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        n = 0
        while True:
            line = await self._read_response_line()
            if line.startswith(tag + b" "):
                if line[len(tag) + 1 :].split(b" ", 1)[0] != b"OK":
                    raise ImapError(line.decode(errors="replace").strip()[:200])
                return n
            n += 1

    async def login(self, user: str, password: str) -> None:
        await self.command(f'LOGIN "{user}" "{password}"')

    async def capabilities(self) -> bytes:
        lines = await self.command("CAPABILITY")
        self.caps = b" ".join(line for line in lines if line.startswith(b"* CAPABILITY"))
        return self.caps

    async def authenticate_scram(self, user: str, password: str) -> None:
        """AUTHENTICATE SCRAM-SHA-256 (RFC 7677): with stored SCRAM keys the server does no
        key stretching per login, which is what makes 10,000 logins possible in the time box."""
        client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
        tag = self._next_tag()
        self.writer.write(tag + b" AUTHENTICATE SCRAM-SHA-256\r\n")

        async def challenge() -> str:
            line = await self._read_response_line()
            if not line.startswith(b"+"):
                raise ImapError(f"AUTHENTICATE: {line.decode(errors='replace').strip()[:200]}")
            return base64.b64decode(line[1:].strip()).decode()

        def answer(text: str) -> None:
            self.writer.write(base64.b64encode(text.encode()) + b"\r\n")

        await challenge()  # the empty initial challenge
        answer(client.get_client_first())
        client.set_server_first(await challenge())
        answer(client.get_client_final())
        final = await self._read_response_line()
        if final.startswith(b"+"):
            client.set_server_final(base64.b64decode(final[1:].strip()).decode())
            self.writer.write(b"\r\n")
            await self._await_tagged(tag)
        elif not final.startswith(tag + b" OK"):
            raise ImapError(f"AUTHENTICATE: {final.decode(errors='replace').strip()[:200]}")

    async def select(self, mailbox: str = "INBOX") -> int:
        await self.command(f'SELECT "{mailbox}"')
        return self.exists

    async def append(self, message: bytes, flags: str = "", mailbox: str = "INBOX") -> None:
        # A synchronising literal: every server takes it, LITERAL+ is an extension.
        tag = self._next_tag()
        flag_part = f" ({flags})" if flags else ""
        self.writer.write(tag + f' APPEND "{mailbox}"{flag_part} {{{len(message)}}}\r\n'.encode())
        while True:
            line = await self._read_response_line()
            if line.startswith(b"+"):
                break
            if line.startswith(tag + b" "):
                raise ImapError(line.decode(errors="replace").strip()[:200])
            self._track(line)
        self.writer.write(message + b"\r\n")
        await self._await_tagged(tag)

    async def idle_start(self) -> bytes:
        tag = self._next_tag()
        self.writer.write(tag + b" IDLE\r\n")
        while True:
            line = await self._read_response_line()
            if line.startswith(b"+"):
                return tag
            if line.startswith(tag + b" "):
                raise ImapError(line.decode(errors="replace").strip()[:200])
            self._track(line)

    async def idle_wait(self) -> bytes:
        """The next untagged line during IDLE (EXISTS, EXPUNGE, FETCH or a keepalive)."""
        line = await self._read_response_line()
        self._track(line)
        return line

    async def idle_done(self, tag: bytes) -> None:
        self.writer.write(b"DONE\r\n")
        await self._await_tagged(tag)

    async def logout(self) -> None:
        try:
            await asyncio.wait_for(self.command("LOGOUT"), 5)
        except (TimeoutError, ImapError, OSError):
            pass
        self.close()

    def close(self) -> None:
        try:
            self.writer.close()
        except OSError:
            pass
