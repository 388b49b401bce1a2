"""An SMTP client for relaying: EHLO, STARTTLS, AUTH, PIPELINING, SIZE, 8BITMIME, SMTPUTF8, DSN.

Own client rather than aiosmtplib: MX delivery wants PIPELINING (RFC 2920, one round trip for
MAIL, every RCPT and DATA), a reply per recipient, a bounded reply reader and the buffer-owning
STARTTLS of transport.py; aiosmtplib has no PIPELINING.

Results are values, not exceptions, once a connection is up: `send()` returns a reply per
recipient and one for the message. Connection-level failures (timeouts per RFC 5321 4.5.3.2,
a peer breaking the protocol, a closed socket) raise SMTPConnectionError, which the worker treats
as "try the next host, or later" (RFC 5321 4.5.4.1).
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from postar.config import QueueConfig
from postar.queue.transport import ClientTransport, PeerProtocolError
from postar.smtp.params import xtext_encode

MAX_REPLY_LINES = 100  # a multi-line reply longer than this is garbage, not an answer
DATA_CHUNK = 64 * 1024


class SMTPConnectionError(Exception):
    """The connection failed or the peer broke the protocol; nothing more on this connection."""


class SMTPUncertainError(SMTPConnectionError):
    """The connection failed after the end of the message (the final dot) was sent: the peer
    may have taken responsibility for it (RFC 1047, RFC 5321 6.1). Sending it again at once,
    on another connection or to another host, would deliver it twice."""


@dataclass(frozen=True)
class SMTPReply:
    code: int
    text: str  # all lines joined by "\n", without the codes

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def enhanced(self) -> str | None:
        # RFC 3463: class.subject.detail at the start of the text
        first = self.text.split(" ", 1)[0]
        parts = first.split(".")
        if len(parts) == 3 and all(p.isdigit() for p in parts) and first[0] in "245":
            return first
        return None

    def __str__(self) -> str:
        return f"{self.code} {self.text}".replace("\n", " ")


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: Sequence[str]
    notify: Sequence[tuple[str, ...]] = ()  # per recipient, DSN NOTIFY values (RFC 3461 4.1)
    orcpt: Sequence[str | None] = ()  # per recipient, "type;address" (RFC 3461 4.2)
    ret: str | None = None
    envid: str | None = None


@dataclass
class TransactionResult:
    """A reply per recipient (same order as the envelope) and the reply to the message."""

    recipients: list[SMTPReply]
    data: SMTPReply | None  # None when no recipient was accepted (DATA not sent or refused)
    dsn_passed: bool = False  # the peer took our NOTIFY/ORCPT (it supports DSN)


@dataclass
class Capabilities:
    esmtp: bool = False
    keywords: dict[str, str] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.keywords

    @property
    def size_limit(self) -> int | None:
        value = self.keywords.get("SIZE", "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    @property
    def auth_mechanisms(self) -> set[str]:
        return set(self.keywords.get("AUTH", "").upper().split())


def dot_stuff(raw: bytes) -> bytes:
    """RFC 5321 4.5.2: a leading "." on any line is doubled; the content ends with CRLF."""
    body = raw.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


def unverified_tls_context() -> ssl.SSLContext:
    # RFC 7435 opportunistic security: encrypt when offered, without authenticating the
    # peer (most MX certificates would not verify against the MX name anyway). A policy
    # (MTA-STS, DANE, the smarthost's require_tls) switches to a verifying context.
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SMTPClient:
    def __init__(self, transport: ClientTransport, config: QueueConfig, host: str) -> None:
        self.transport = transport
        self.config = config
        self.host = host  # the name we connected to, for logs and TLS SNI
        self.caps = Capabilities()
        self.greeting: SMTPReply | None = None
        self.transactions = 0

    @classmethod
    async def connect(cls, address: str, port: int, config: QueueConfig, host: str) -> SMTPClient:
        try:
            transport = await ClientTransport.connect(
                address, port, timeout=config.connect_timeout, max_line=config.line_length
            )
        except (OSError, TimeoutError) as exc:
            raise SMTPConnectionError(f"connect to {host}[{address}]:{port}: {exc!r}") from exc
        client = cls(transport, config, host)
        try:
            client.greeting = await client.read_reply(config.command_timeout)
        except BaseException:
            transport.abort()
            raise
        return client

    # ---- replies ---------------------------------------------------------------------------
    async def read_reply(self, timeout: float) -> SMTPReply:
        lines: list[str] = []
        code = 0
        try:
            while True:
                raw = await self.transport.readline(timeout)
                line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                    raise PeerProtocolError(f"garbage reply line {line[:80]!r}")
                this = int(line[:3])
                if code and this != code:
                    raise PeerProtocolError("reply code changed within a multi-line reply")
                code = this
                lines.append(line[4:])
                if line[3:4] != "-":
                    break
                if len(lines) >= MAX_REPLY_LINES:
                    raise PeerProtocolError(f"reply longer than {MAX_REPLY_LINES} lines")
        except TimeoutError as exc:
            self.transport.abort()
            raise SMTPConnectionError(f"{self.host}: timeout after {timeout:g}s") from exc
        except PeerProtocolError as exc:
            self.transport.abort()
            raise SMTPConnectionError(f"{self.host}: {exc}") from exc
        except ConnectionError as exc:
            raise SMTPConnectionError(f"{self.host}: {exc!r}") from exc
        if not 200 <= code < 600:
            self.transport.abort()
            raise SMTPConnectionError(f"{self.host}: reply code {code} out of range")
        return SMTPReply(code, "\n".join(lines))

    async def _send(self, data: bytes) -> None:
        try:
            self.transport.write(data)
            await self.transport.drain(self.config.command_timeout)
        except TimeoutError as exc:
            self.transport.abort()
            raise SMTPConnectionError(f"{self.host}: write timeout") from exc
        except ConnectionError as exc:
            raise SMTPConnectionError(f"{self.host}: {exc!r}") from exc

    async def command(self, line: str, timeout: float | None = None) -> SMTPReply:
        await self._send(line.encode("utf-8") + b"\r\n")
        return await self.read_reply(timeout or self.config.command_timeout)

    # ---- session -----------------------------------------------------------------------------
    async def ehlo(self, name: str) -> SMTPReply:
        reply = await self.command(f"EHLO {name}")
        if reply.code == 250:
            keywords: dict[str, str] = {}
            for line in reply.text.split("\n")[1:]:
                word, _, rest = line.strip().partition(" ")
                if word:
                    keywords[word.upper()] = rest.strip()
            self.caps = Capabilities(True, keywords)
            return reply
        # RFC 5321 3.2: a server that does not know EHLO is spoken to with HELO.
        reply = await self.command(f"HELO {name}")
        self.caps = Capabilities(False, {})
        return reply

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> SMTPReply:
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            return reply
        try:
            await self.transport.start_tls(
                context, server_hostname, timeout=self.config.command_timeout
            )
        except (OSError, ssl.SSLError, TimeoutError, EOFError) as exc:
            raise SMTPConnectionError(f"{self.host}: TLS handshake failed: {exc!r}") from exc
        # RFC 3207 section 4.2: forget everything learned before TLS.
        self.caps = Capabilities()
        return reply

    async def auth(self, username: str, password: str) -> SMTPReply:
        """AUTH PLAIN (RFC 4616) or LOGIN, whichever the server offers."""
        mechanisms = self.caps.auth_mechanisms
        if "PLAIN" in mechanisms or not mechanisms:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            return await self.command(f"AUTH PLAIN {token}")
        if "LOGIN" in mechanisms:
            reply = await self.command("AUTH LOGIN")
            if reply.code != 334:
                return reply
            reply = await self.command(base64.b64encode(username.encode()).decode())
            if reply.code != 334:
                return reply
            return await self.command(base64.b64encode(password.encode()).decode())
        return SMTPReply(504, "5.7.4 no common AUTH mechanism (PLAIN, LOGIN)")

    async def rset(self) -> SMTPReply:
        return await self.command("RSET")

    async def quit(self) -> None:
        try:
            await self.command("QUIT", timeout=min(self.config.command_timeout, 10.0))
        except SMTPConnectionError:
            pass
        finally:
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    # ---- one mail transaction ----------------------------------------------------------------
    def _mail_command(self, env: Envelope, size: int, eightbit: bool, utf8: bool) -> str:
        params = []
        if self.caps.size_limit is not None or self.caps.has("SIZE"):
            params.append(f"SIZE={size}")  # RFC 1870 section 6
        if eightbit and self.caps.has("8BITMIME"):
            params.append("BODY=8BITMIME")  # RFC 6152 section 2
        if utf8:
            params.append("SMTPUTF8")  # RFC 6531 3.4
        if self.caps.has("DSN"):
            # RFC 3461 section 4: a relay passes RET and ENVID on to a DSN-capable server.
            if env.ret:
                params.append(f"RET={env.ret}")
            if env.envid:
                params.append(f"ENVID={xtext_encode(env.envid)}")
        tail = (" " + " ".join(params)) if params else ""
        return f"MAIL FROM:<{env.sender}>{tail}"

    def _rcpt_command(self, env: Envelope, i: int) -> str:
        params = []
        if self.caps.has("DSN"):
            notify = env.notify[i] if i < len(env.notify) else ()
            if notify:
                params.append("NOTIFY=" + ",".join(notify))
            orcpt = env.orcpt[i] if i < len(env.orcpt) else None
            if orcpt and ";" in orcpt:
                kind, _, addr = orcpt.partition(";")
                params.append(f"ORCPT={kind};{xtext_encode(addr)}")
        tail = (" " + " ".join(params)) if params else ""
        return f"RCPT TO:<{env.recipients[i]}>{tail}"

    async def send(self, env: Envelope, raw: bytes) -> TransactionResult:
        """MAIL, RCPT..., DATA for one message; pipelined when the server allows (RFC 2920)."""
        n = len(env.recipients)
        utf8 = not env.sender.isascii() or not all(r.isascii() for r in env.recipients)
        if utf8 and not self.caps.has("SMTPUTF8"):
            # RFC 6531 3.2: a UTF-8 envelope cannot be downgraded; bounce it.
            reply = SMTPReply(553, "5.6.7 the destination does not support SMTPUTF8 addresses")
            return TransactionResult([reply] * n, None)
        limit = self.caps.size_limit
        if limit is not None and len(raw) > limit:
            reply = SMTPReply(552, f"5.3.4 message size exceeds the destination's limit {limit}")
            return TransactionResult([reply] * n, None)
        eightbit = not raw.isascii()
        self.transactions += 1
        mail = self._mail_command(env, len(raw), eightbit, utf8)
        rcpts = [self._rcpt_command(env, i) for i in range(n)]
        if self.caps.has("PIPELINING"):
            # RFC 2920 3.1: MAIL, RCPTs and DATA in one group; DATA is the last command of it.
            await self._send(("\r\n".join([mail, *rcpts, "DATA"]) + "\r\n").encode("utf-8"))
            timeout = self.config.command_timeout
            mail_reply = await self.read_reply(timeout)
            rcpt_replies = [await self.read_reply(timeout) for _ in range(n)]
            data_reply = await self.read_reply(timeout)
        else:
            mail_reply = await self.command(mail)
            if not mail_reply.positive:
                return TransactionResult([mail_reply] * n, None)
            rcpt_replies = [await self.command(r) for r in rcpts]
            if not any(r.positive for r in rcpt_replies):
                await self.rset()
                return TransactionResult(rcpt_replies, None)
            data_reply = await self.command("DATA")
        dsn = self.caps.has("DSN")
        if not mail_reply.positive:
            if data_reply.code == 354:
                await self._finish_data(b"")  # no recipients: send an empty message's end
            await self.rset()
            return TransactionResult([mail_reply] * n, None, dsn)
        accepted = any(r.positive for r in rcpt_replies)
        if data_reply.code != 354:
            if accepted:
                rcpt_replies = [data_reply if r.positive else r for r in rcpt_replies]
            await self.rset()
            return TransactionResult(rcpt_replies, None, dsn)
        if not accepted:
            # RFC 2920 3.1: the server should have refused DATA; end the empty content.
            await self._finish_data(b"")
            await self.rset()
            return TransactionResult(rcpt_replies, None, dsn)
        final = await self._finish_data(raw)
        return TransactionResult(rcpt_replies, final, dsn)

    async def _finish_data(self, raw: bytes) -> SMTPReply:
        body = dot_stuff(raw) if raw else b""
        # RFC 5321 4.5.3.2.5: each data block within 3 minutes (command_timeout bounds it).
        # The last block carries the final dot: one write (one send system call) fewer. A
        # failure while it is written counts as after the dot (the peer may have it all).
        last = (len(body) - 1) // DATA_CHUNK * DATA_CHUNK if body else 0
        for start in range(0, last, DATA_CHUNK):
            await self._send(body[start : start + DATA_CHUNK])
        try:
            await self._send(body[last:] + b".\r\n")
            # RFC 5321 4.5.3.2.6: 10 minutes for the reply to the final dot.
            return await self.read_reply(self.config.data_timeout)
        except SMTPConnectionError as exc:
            if not raw:
                raise  # an empty content ends a transaction with no accepted recipient
            raise SMTPUncertainError(f"{exc} (after the end of the message)") from exc
