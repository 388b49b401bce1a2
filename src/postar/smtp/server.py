"""SMTP server glue: binds the sans-I/O core to a connection, auth, the filters and the store.

One SMTPServer serves every SMTP role (smtp, submission, submissions, smtp-alt); the role
decides whether AUTH is required before MAIL (submission roles, RFC 6409 section 4.3) and
whether the listener spoke TLS from the first byte.

Invariants:
- 250 after DATA only once store.deliver() / store.enqueue() returned, i.e. the message is
  durable (the store fsyncs the body and commits the metadata before returning).
- Never an open relay: a recipient outside our domains is accepted only from an authenticated
  client or a trusted network (5.7.1 otherwise). Alias targets in other domains are forwarded
  whoever sent the mail, as the domain's owner configured them.
- Message content is held in memory only up to the configured message size (the core stops
  passing data past it and answers 552), so one session's memory is bounded by that limit.
- Replies are flushed when the core has consumed all buffered input (RFC 2920 pipelining).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from postar.auth.directory import AliasLoopError, InvalidAddress, ResolvedRecipient
from postar.auth.sasl import FailureReason
from postar.filter.hooks import Action, SessionInfo, Verdict
from postar.mime.parser import parse_message
from postar.net.connection import Connection, IdleTimeout, ShuttingDown, TLSHandshakeError
from postar.smtp import replies
from postar.smtp.address import Mailbox
from postar.smtp.core import SMTPConnection
from postar.smtp.events import (
    NEED_DATA,
    PAUSED,
    AuthAborted,
    AuthResponse,
    AuthStart,
    DataStart,
    Helo,
    MailFrom,
    MessageAborted,
    MessageComplete,
    MessageData,
    RcptTo,
    Reset,
    StartTLS,
    Terminal,
)
from postar.smtp.params import MailParams, RcptParams
from postar.smtp.replies import Reply
from postar.smtp.settings import SMTPSettings
from postar.smtp.trace import TLSInfo, received_header, return_path_header, with_protocol
from postar.store.interface import QuotaExceeded, StoreError
from postar.store.model import Account, DeliveryTarget, QueuedRecipient

if TYPE_CHECKING:
    from postar.app import Services

log = logging.getLogger("postar.smtp")

SUBMISSION_ROLES = frozenset({"submission", "submissions", "smtp-alt"})
PARSE_IN_THREAD_ABOVE = 1024 * 1024  # parse big messages off the event loop
TRUSTED_CACHE_SIZE = 4096  # client addresses whose trusted-network answer is kept

_AUTH_FAILURE_REPLIES: dict[FailureReason, Reply] = {
    FailureReason.INVALID_CREDENTIALS: replies.AUTH_FAILED,
    FailureReason.MALFORMED: replies.AUTH_BAD_BASE64.with_text("Malformed authentication data"),
    FailureReason.CANCELLED: replies.AUTH_CANCELLED,
    FailureReason.AUTHZ_REFUSED: replies.AUTH_FAILED.with_text("Proxy authorization refused"),
    FailureReason.UNSUPPORTED_MECHANISM: replies.AUTH_MECHANISM_UNKNOWN,
    FailureReason.ENCRYPTION_REQUIRED: replies.AUTH_ENCRYPTION_REQUIRED,
    FailureReason.DISABLED: replies.AUTH_FAILED.with_text("Account disabled"),
    FailureReason.LOCKED_OUT: Reply(454, "4.7.0", "Too many failed logins, try later"),
    FailureReason.TEMPORARY: replies.AUTH_TEMPORARY_FAILURE,
}

RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
ROUTING_LOOP = Reply(550, "5.4.6", "Routing loop detected")
TOO_MANY_HOPS = Reply(554, "5.4.6", "Too many Received headers: mail loop?")
TEMPORARY_STORE = Reply(451, "4.3.0", "Temporary failure storing the message, try again")


@dataclass
class _Recipient:
    mailbox: Mailbox
    params: RcptParams
    resolved: ResolvedRecipient | None  # None: a remote recipient relayed for a trusted client


@dataclass
class _Transaction:
    sender: Mailbox | None = None
    params: MailParams = field(default_factory=MailParams)
    recipients: list[_Recipient] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    aborted: bool = False


class SMTPServer:
    """Shared state of every SMTP session; `handle` is the listener's handler."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.config = services.config
        self._trusted = tuple(
            ipaddress.ip_network(n, strict=False) for n in self.config.smtp.trusted_networks
        )
        self._trusted_ips: dict[str, bool] = {}
        self._settings: dict[tuple[bool, bool, tuple[str, ...], bool], SMTPSettings] = {}

    def is_trusted_network(self, ip: str) -> bool:
        # Asked once per connection, mostly by the same few addresses: parsing the address is
        # most of the cost, so answers are kept (bounded; the networks never change).
        known = self._trusted_ips.get(ip)
        if known is not None:
            return known
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            trusted = False
        else:
            trusted = any(addr in net for net in self._trusted)
        if len(self._trusted_ips) >= TRUSTED_CACHE_SIZE:
            self._trusted_ips.clear()
        self._trusted_ips[ip] = trusted
        return trusted

    def settings(
        self,
        *,
        tls_active: bool,
        starttls_available: bool,
        auth_mechanisms: list[str],
        submission: bool,
    ) -> SMTPSettings:
        """The core's settings for a connection: a handful of combinations, built once each."""
        key = (tls_active, starttls_available, tuple(auth_mechanisms), submission)
        found = self._settings.get(key)
        if found is None:
            found = self._settings[key] = SMTPSettings.from_config(
                self.config,
                tls_active=tls_active,
                starttls_available=starttls_available,
                auth_mechanisms=auth_mechanisms,
                auth_required_for_mail=submission,
            )
        return found

    async def handle(self, conn: Connection) -> None:
        await SMTPSession(self, conn).run()


class SMTPSession:
    def __init__(self, server: SMTPServer, conn: Connection) -> None:
        self.server = server
        self.services = server.services
        self.config = server.config
        self.conn = conn
        self.submission = conn.role in SUBMISSION_ROLES
        self.account: Account | None = None
        self.info = SessionInfo(
            peer_ip=conn.peer_ip,
            peer_port=conn.peer_port,
            role=conn.role,
            conn_id=conn.conn_id,
            tls=conn.tls_active,
            trusted=server.is_trusted_network(conn.peer_ip),
        )
        self.core = SMTPConnection(
            server.settings(
                tls_active=conn.tls_active,
                starttls_available=conn.can_start_tls,
                auth_mechanisms=self._auth_mechanisms(),
                submission=self.submission,
            )
        )
        self.tx = _Transaction()

    # ---- the loop ----------------------------------------------------------------------------
    def _auth_mechanisms(self) -> list[str]:
        tls = self.conn.tls_active
        if self.config.smtp.require_tls_for_auth and not tls and not self.conn.is_loopback:
            return []  # RFC 4954 section 4 / RFC 8314: no AUTH before TLS on the internet
        return self.services.authenticator.mechanisms_for(tls, self.conn.peer_ip)

    async def flush(self) -> None:
        out = self.core.data_to_send()
        if out:
            self.conn.write(out)
            await self.conn.drain()

    async def next_event(self) -> object:
        """The core's next event, reading from the connection whenever it needs bytes."""
        while True:
            event = self.core.next_event()
            if event is NEED_DATA:
                await self.flush()
                try:
                    data = await self.conn.recv()
                except IdleTimeout:
                    self.core.close(replies.IDLE_TIMEOUT)
                    continue
                except ShuttingDown:
                    self.core.close(replies.SHUTTING_DOWN)
                    continue
                self.core.receive_data(data)
                continue
            if event is PAUSED:  # only while a decision is pending: a bug in this glue
                raise RuntimeError("SMTP core paused with no decision pending")
            return event

    async def run(self) -> None:
        verdict = await self.services.filters.on_connect(self.info)
        if verdict.action in (Action.REJECT, Action.TEMPFAIL):
            # RFC 5321 3.1: a server may refuse service with 554 (or 421) in the greeting.
            code = 554 if verdict.action is Action.REJECT else 421
            self.conn.write(self.core.greeting(Reply(code, None, verdict.text)))
            await self.conn.drain()
            return
        self.conn.write(self.core.greeting())
        await self.conn.drain()
        try:
            while True:
                event = await self.next_event()
                if isinstance(event, Terminal):
                    break
                await self.dispatch(event)
            await self.flush()
        except (ConnectionError, TLSHandshakeError, TimeoutError) as exc:
            log.info("smtp session ended", extra={"conn": self.conn.conn_id, "why": repr(exc)})

    async def dispatch(self, event: object) -> None:
        match event:
            case Helo(name=name):
                self.info.helo = name
                verdict = await self.services.filters.on_helo(self.info, name)
                self._answer(verdict)
            case StartTLS():
                await self.start_tls()
            case AuthStart(mechanism=mechanism, initial_response=initial):
                await self.authenticate(mechanism, initial)
            case MailFrom(address=address, params=params):
                await self.mail_from(address, params)
            case RcptTo(address=address, params=params):
                await self.rcpt_to(address, params)
            case DataStart():
                self.tx.chunks, self.tx.size, self.tx.aborted = [], 0, False
                self.core.accept()
            case MessageData(data=data):
                if not self.tx.aborted:
                    self.tx.chunks.append(data)
                    self.tx.size += len(data)
            case MessageAborted():
                self.tx.aborted = True
                self.tx.chunks = []
            case MessageComplete():
                await self.message_complete()
            case Reset():
                self.tx = _Transaction()
            case AuthAborted() | AuthResponse():
                pass  # only inside authenticate(); a stray one means nothing to answer

    def _answer(self, verdict: Verdict, ok: Reply | None = None) -> bool:
        if verdict.action is Action.REJECT:
            self.core.reject(Reply(verdict.code, verdict.enhanced, verdict.text))
            return False
        if verdict.action is Action.TEMPFAIL:
            self.core.reject(Reply(verdict.code, verdict.enhanced, verdict.text))
            return False
        self.core.accept(ok)
        return True

    # ---- STARTTLS and AUTH ---------------------------------------------------------------------
    async def start_tls(self) -> None:
        if not self.conn.can_start_tls:
            self.core.reject(replies.TLS_NOT_AVAILABLE)
            return
        self.core.accept()
        await self.flush()  # the 220 must leave before the handshake
        await self.conn.start_tls()
        # RFC 3207 section 4.2: forget everything learnt before TLS (the core drops its
        # buffered plaintext too), then offer what a TLS connection may use.
        self.info.tls = True
        self.info.helo = None
        self.tx = _Transaction()
        self.core.start_tls_done(auth_mechanisms=self._auth_mechanisms())

    async def authenticate(self, mechanism: str, initial: bytes | None) -> None:
        # The core hands over the wire form, which the shared authenticator speaks.
        async def send_challenge(b64: bytes) -> None:
            self.core.auth_challenge(b64)
            await self.flush()

        async def receive_response() -> bytes | None:
            event = await self.next_event()
            if isinstance(event, AuthResponse):
                return event.data
            return None  # AuthAborted (a bad line) or the connection ended

        result = await self.services.authenticator.authenticate(
            mechanism,
            initial,
            send_challenge,
            receive_response,
            tls_active=self.conn.tls_active,
            peer_ip=self.conn.peer_ip,
        )
        if result.account is not None:
            self.account = result.account
            self.info.auth_user = result.account.address
            self.info.trusted = True
            self.core.auth_success()
            log.info("smtp auth", extra={"conn": self.conn.conn_id, "user": result.username})
            return
        reason = result.failure or FailureReason.INVALID_CREDENTIALS
        log.info(
            "smtp auth failed",
            extra={"conn": self.conn.conn_id, "user": result.username, "reason": reason.value},
        )
        # A bad line ends the exchange inside the core, which has already answered it
        # (AuthAborted); only an exchange still pending gets our reply.
        if self.core.auth_pending:
            self.core.auth_failure(_AUTH_FAILURE_REPLIES[reason])

    # ---- the transaction -----------------------------------------------------------------------
    async def mail_from(self, address: Mailbox | None, params: MailParams) -> None:
        verdict = await self.services.filters.on_mail(self.info, str(address or ""))
        if self._answer(verdict):
            self.tx = _Transaction(sender=address, params=params)
            self.info.mail_from = str(address) if address else ""
            self.info.recipients = []

    async def rcpt_to(self, address: Mailbox, params: RcptParams) -> None:
        reply = await self._check_recipient(address, params)
        if reply is not None:
            self.core.reject(reply)
            return
        verdict = await self.services.filters.on_rcpt(self.info, str(address))
        if self._answer(verdict):
            self.info.recipients.append(str(address))
        else:
            self.tx.recipients.pop()

    async def _check_recipient(self, address: Mailbox, params: RcptParams) -> Reply | None:
        """Adds the recipient to the transaction, or returns the reply refusing it."""
        directory = self.services.directory
        text = str(address)
        if address.is_postmaster:
            # RFC 5321 4.5.1: <Postmaster> without a domain must be accepted.
            text = await self._postmaster_address()
            if not text:
                return replies.USER_UNKNOWN
        try:
            try:
                local, resolved = await directory.lookup_recipient(text)
            except InvalidAddress:
                # A domain with no A-label form (IDNA refuses it) can be neither ours nor
                # routed: refused now, as Postfix does, not queued to bounce later.
                return replies.BAD_RECIPIENT_SYNTAX
            if local:
                if resolved is None:
                    return replies.USER_UNKNOWN
                full = await self._over_quota(resolved.accounts, 0)
                if full:
                    return replies.MAILBOX_FULL
                self.tx.recipients.append(_Recipient(address, params, resolved))
                return None
        except AliasLoopError:
            return ROUTING_LOOP
        except StoreError:
            return replies.LOCAL_ERROR
        if not self.info.trusted:
            return RELAY_DENIED
        self.tx.recipients.append(_Recipient(address, params, None))
        return None

    async def _postmaster_address(self) -> str:
        store = self.services.store
        candidates = [self.config.hostname, *[d.name for d in await store.list_domains()]]
        for domain in candidates:
            resolved = await self.services.directory.resolve_recipient(f"postmaster@{domain}")
            if resolved is not None:
                return f"postmaster@{domain}"
        return ""

    async def _over_quota(self, accounts: tuple[Account, ...], size: int) -> bool:
        for account in accounts:
            if not account.quota_bytes:
                continue  # unlimited: no need to ask the store what is used
            used, limit = await self.services.store.quota_usage(account.id)
            if limit and used + size > limit:
                return True
        return False

    async def message_complete(self) -> None:
        tx, self.tx = self.tx, _Transaction(sender=self.tx.sender, params=self.tx.params)
        content = b"".join(tx.chunks)
        tx.chunks = []
        try:
            reply = await self._accept_message(tx, content)
        except StoreError as exc:
            log.error("smtp store failure", extra={"conn": self.conn.conn_id, "err": str(exc)})
            reply = TEMPORARY_STORE
        if reply.is_positive:
            self.core.accept(reply)
        else:
            self.core.reject(reply)

    async def _accept_message(self, tx: _Transaction, content: bytes) -> Reply:
        if _count_received(content) > self.config.smtp.max_received_headers:
            return TOO_MANY_HOPS
        verdict = await self.services.filters.on_data(self.info, content)
        if verdict.action in (Action.REJECT, Action.TEMPFAIL):
            return Reply(verdict.code, verdict.enhanced, verdict.text)
        queue_id = self.conn.conn_id + format(int(time.time() * 1000) % 0xFFFFFF, "06x")
        tls = (
            TLSInfo(self.conn.tls_version or "", self.conn.tls_cipher or "")
            if self.conn.tls_active
            else None
        )
        trace = received_header(
            helo=self.core.helo_name,
            client_ip=self.conn.peer_ip or "127.0.0.1",
            client_hostname=None,
            server_hostname=self.config.hostname,
            protocol=with_protocol(
                esmtp=self.core.esmtp,
                tls=self.conn.tls_active,
                authenticated=self.account is not None,
                smtputf8=tx.params.smtputf8,
            ),
            timestamp=datetime.now(UTC),
            recipients=[r.mailbox for r in tx.recipients],
            queue_id=queue_id,
            tls=tls,
        )
        tags = b"".join(f"{name}: {value}\r\n".encode() for name, value in verdict.headers)
        prefix = trace + tags
        size = len(prefix) + len(content)

        local: dict[int, DeliveryTarget] = {}
        remote: dict[str, QueuedRecipient] = {}
        folder = "Junk" if verdict.action is Action.JUNK else "INBOX"
        for rcpt in tx.recipients:
            notify = tuple(sorted(rcpt.params.notify or ()))
            orcpt = (
                f"{rcpt.params.orcpt.addr_type};{rcpt.params.orcpt.address}"
                if rcpt.params.orcpt
                else None
            )
            if rcpt.resolved is None:
                addr = str(rcpt.mailbox)
                remote.setdefault(addr, QueuedRecipient(addr, notify, orcpt))
                continue
            for account in rcpt.resolved.accounts:
                local.setdefault(account.id, DeliveryTarget(account.id, folder))
            for addr in rcpt.resolved.remote:
                remote.setdefault(addr, QueuedRecipient(addr, notify, orcpt))

        store = self.services.store
        if local:
            accounts = [a for r in tx.recipients if r.resolved for a in r.resolved.accounts]
            if await self._over_quota(tuple(accounts), size):
                # All or nothing: one reply answers every recipient after DATA, so a partial
                # delivery could only be reported by a bounce. The client retries later.
                return replies.MAILBOX_FULL
            # RFC 5321 4.4: the final delivery adds Return-Path with the reverse-path.
            # One join builds the stored bytes: content is copied once, not once per header.
            final = b"".join((return_path_header(tx.sender), prefix, content))
            if len(final) > PARSE_IN_THREAD_ABOVE:
                parsed = await asyncio.to_thread(parse_message, final)
            else:
                parsed = parse_message(final)
            try:
                await store.deliver(final, parsed, list(local.values()))
            except QuotaExceeded:
                return replies.MAILBOX_FULL
            del final
        if remote:
            await store.enqueue(
                str(tx.sender) if tx.sender else "",
                list(remote.values()),
                prefix + content,
                ret=tx.params.ret,
                envid=tx.params.envid,
                auth_user=self.account.address if self.account else None,
            )
        log.info(
            "smtp message accepted",
            extra={
                "conn": self.conn.conn_id,
                "id": queue_id,
                "size": size,
                "local": len(local),
                "remote": len(remote),
            },
        )
        return Reply(250, "2.0.0", f"Ok: queued as {queue_id}")


def _count_received(content: bytes) -> int:
    """Received fields in the header block, for loop detection (RFC 5321 6.3)."""
    end = content.find(b"\r\n\r\n")
    header = content[: end if end >= 0 else len(content)]
    count = 1 if header[:9].lower() == b"received:" else 0
    return count + header.lower().count(b"\r\nreceived:")
