"""POP3 server glue: binds the sans-I/O core to a connection, the authenticator and the store.

The maildrop is the account's INBOX, snapshotted at login: messages arriving during the
session are seen at the next login (RFC 1939 section 8 leaves this to the server; Dovecot
does the same). UIDL is "<uidvalidity>.<uid>", so it never changes for a message.

Invariants:
- One POP3 session per maildrop at a time in this process; a second gets [IN-USE]
  (RFC 2449 section 8.1.1 / RFC 3206). IMAP sessions on the same INBOX are not locked out;
  the store's UIDs keep both views consistent.
- Deletion only at QUIT in TRANSACTION, through store.expunge(), durable before "+OK";
  a dropped connection deletes nothing (RFC 1939 section 6).
- RETR streams the body in chunks of RETR_CHUNK. Replies gather in the core until they reach
  WRITE_THRESHOLD (the core then stops reading commands and asks for them to be sent:
  SendPending), or until the session is about to wait for input, and only then go to the
  connection, followed by drain(): pipelined RETRs of small messages cost one send() per
  WRITE_THRESHOLD bytes instead of one per message.
- A download in message order reads ahead: a RETR (or TOP) of the message after the previous
  one reads the bodies of that and the next small messages in one store call
  (Store.read_whole_blobs), at most READ_AHEAD_COUNT messages and READ_AHEAD_BYTES, and the
  following RETRs are answered from them. A store call per message costs two to three times
  as much for 4 KB messages (about 6 us each, against 2.3 us in one call for 32). A client
  that jumps around reads each message on its own.
- Memory per session stays below WRITE_THRESHOLD + the longest single answer (a stuffed
  chunk, at most 2 * RETR_CHUNK, or a LIST/UIDL of the whole maildrop) + READ_AHEAD_BYTES +
  the connection's write high-water mark, whatever the message size, however many commands
  the client pipelines and however slowly it reads.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from postar.auth.sasl import FailureReason
from postar.net.connection import Connection, IdleTimeout, ShuttingDown, TLSHandshakeError
from postar.pop3.core import MaildropEntry, POP3Connection, POP3Settings
from postar.pop3.events import (
    SEND_PENDING,
    AuthRequest,
    AuthResponse,
    CloseConnection,
    Commit,
    LoginRequest,
    NeedData,
    RetrRequest,
    StartTLS,
)
from postar.pop3.replies import ResponseCode, auth_failure_reply
from postar.store.interface import StoreError
from postar.store.model import Account, MessageRecord, WholeBody

if TYPE_CHECKING:
    from postar.app import Services

log = logging.getLogger("postar.pop3")

RETR_CHUNK = 64 * 1024
# Replies (mostly RETR answers) gathered before they are written: one socket send per this
# many bytes. The connection's write high-water mark (net.connection) is the same size, so a
# batch never waits in the transport long before drain() applies back-pressure.
WRITE_THRESHOLD = 64 * 1024
# A RETR that follows the previous one reads the bodies of up to this many next messages (and
# bytes) in one store call (see the module docstring). 32 messages of 4 KB fill the bytes.
READ_AHEAD_COUNT = 32
READ_AHEAD_BYTES = 128 * 1024


class POP3Server:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.locked: set[int] = set()  # account ids with a POP3 session in TRANSACTION

    async def handle(self, conn: Connection) -> None:
        session = POP3Session(self, conn)
        try:
            await session.run()
        finally:
            session.release()


class POP3Session:
    def __init__(self, server: POP3Server, conn: Connection) -> None:
        self.server = server
        self.services = server.services
        self.conn = conn
        self.account: Account | None = None
        self.mailbox_id = 0
        self.messages: list[MessageRecord] = []
        # Bodies read ahead of a download in message order (see _read_ahead), by index; at
        # most READ_AHEAD_BYTES. The previous RETR's index tells whether the order holds.
        self._ahead: dict[int, WholeBody] = {}
        self._last_retrieved = -1
        self._asked_from = self._asked_until = 0  # what the last read-ahead asked for
        limits = self.services.config.limits
        auth = self.services.authenticator
        self.core = POP3Connection(
            POP3Settings(
                mechanisms=tuple(auth.mechanisms_for(conn.tls_active, conn.peer_ip)),
                plaintext_allowed=auth.plaintext_allowed(conn.tls_active, conn.peer_ip),
                stls_available=conn.can_start_tls,
                tls_active=conn.tls_active,
                expire=self.services.config.pop3.expire,
                line_length=limits.line_length,
                max_errors=limits.errors_per_session,
                max_commands=limits.commands_per_session,
                output_limit=WRITE_THRESHOLD,
            )
        )

    def release(self) -> None:
        if self.account is not None:
            self.server.locked.discard(self.account.id)
            self.account = None

    async def flush(self) -> None:
        out = self.core.data_to_send()
        if out:
            self.conn.write(out)
            await self.conn.drain()

    async def run(self) -> None:
        core = self.core
        try:
            while True:
                event = core.next_event()
                # RETR first: a download is a run of them, each otherwise one more coroutine
                # and four failed class patterns in dispatch(). Most are answered from the
                # bodies read ahead, without a coroutine at all.
                if type(event) is RetrRequest:
                    if not self._answer_read_ahead(event.index, event.top_lines):
                        await self.retrieve(event.index, event.top_lines)
                elif event is SEND_PENDING:  # WRITE_THRESHOLD gathered: out, with back-pressure
                    await self.flush()
                elif isinstance(event, NeedData):
                    core.receive_data(await self._recv())
                elif isinstance(event, CloseConnection):
                    await self.flush()
                    return
                else:
                    await self.dispatch(event)
        except (ConnectionError, TLSHandshakeError, TimeoutError) as exc:
            log.info("pop3 session ended", extra={"conn": self.conn.conn_id, "why": repr(exc)})

    async def _recv(self) -> bytes:
        # Replies the core produced while consuming the last input leave before we wait.
        await self.flush()
        try:
            return await self.conn.recv()
        except (IdleTimeout, ShuttingDown) as exc:
            # RFC 1939 section 3: an idle session is closed without entering UPDATE.
            what = "idle timeout" if isinstance(exc, IdleTimeout) else "server shutting down"
            self.conn.write(f"-ERR [SYS/TEMP] {what}, closing\r\n".encode())
            return b""

    async def dispatch(self, event: object) -> None:
        # What these events wait for (a password hash, a handshake, a durable expunge) takes
        # long next to a write: gathered answers leave first, so the RETRs a client pipelined
        # before QUIT are on their way before their messages are removed.
        await self.flush()
        auth = self.services.authenticator
        match event:
            case StartTLS():
                await self.conn.start_tls()
                self.core.tls_started(
                    mechanisms=auth.mechanisms_for(True, self.conn.peer_ip),
                    plaintext_allowed=auth.plaintext_allowed(True, self.conn.peer_ip),
                )
            case LoginRequest(username=username, password=password):
                result = await auth.login(
                    username, password, tls_active=self.conn.tls_active, peer_ip=self.conn.peer_ip
                )
                await self._after_auth(result.account, result.failure)
            case AuthRequest(mechanism=mechanism, initial_response=initial):
                result = await auth.authenticate(
                    mechanism,
                    initial,
                    self._send_challenge,
                    self._receive_response,
                    tls_active=self.conn.tls_active,
                    peer_ip=self.conn.peer_ip,
                )
                await self._after_auth(result.account, result.failure)
            case Commit(deleted_indexes=deleted):
                await self.commit(deleted)

    async def _send_challenge(self, b64: bytes) -> None:
        self.core.send_auth_challenge(b64)
        await self.flush()

    async def _receive_response(self) -> bytes | None:
        while True:
            event = self.core.next_event()
            if isinstance(event, NeedData):
                self.core.receive_data(await self._recv())
                continue
            if isinstance(event, AuthResponse):
                return event.line
            return None

    async def _after_auth(self, account: Account | None, failure: FailureReason | None) -> None:
        if account is None:
            code, text = auth_failure_reply(failure or FailureReason.INVALID_CREDENTIALS)
            self.core.authentication_failed(code, text)
            return
        if account.id in self.server.locked:
            self.core.authentication_failed(
                ResponseCode.IN_USE, "Maildrop already in use by another POP3 session"
            )
            return
        store = self.services.store
        try:
            inbox = await store.get_mailbox(account.id, "INBOX")
            if inbox is None:
                raise StoreError("account has no INBOX")
            messages = await store.list_messages(inbox.id)
        except StoreError as exc:
            log.error("pop3 maildrop", extra={"conn": self.conn.conn_id, "err": str(exc)})
            self.core.authentication_failed(ResponseCode.SYS_TEMP, "Maildrop unavailable")
            return
        self.server.locked.add(account.id)
        self.account = account
        self.mailbox_id = inbox.id
        self.messages = messages
        self.core.authenticated(
            [MaildropEntry(m.size, f"{inbox.uidvalidity}.{m.uid}") for m in messages],
            account.address,
        )
        log.info("pop3 login", extra={"conn": self.conn.conn_id, "user": account.address})

    def _answer_read_ahead(self, index: int, top_lines: int | None) -> bool:
        """Answer the RETR or TOP of message `index` with its body read ahead, if it was.
        TOP leaves the body for the RETR that often follows it."""
        body = self._ahead.pop(index, None) if top_lines is None else self._ahead.get(index)
        if body is None:
            return False
        self._last_retrieved = index
        self.core.message(body.data, body.dot_lines)
        return True

    async def retrieve(self, index: int, top_lines: int | None) -> None:
        # In message order, outside what the last read-ahead asked for: read ahead. Messages
        # it asked for and did not get (files) are read one by one, not asked for again.
        asked = self._asked_from <= index < self._asked_until
        if index == self._last_retrieved + 1 and not asked:
            await self._read_ahead(index)
            if self._answer_read_ahead(index, top_lines):
                return
        self._last_retrieved = index
        try:
            await self._stream_message(self.messages[index])
        except (StoreError, OSError) as exc:
            log.error("pop3 retr", extra={"conn": self.conn.conn_id, "err": str(exc)})
            self.core.message_unavailable()
            return
        self.core.message_end()

    async def _stream_message(self, record: MessageRecord) -> None:
        store = self.services.store
        offset = 0
        while offset < record.size:
            chunk = await store.read_blob(record.blob_id, offset, RETR_CHUNK, size=record.size)
            if not chunk:
                break
            offset += len(chunk)
            wanted_more = self.core.message_data(chunk)
            if self.core.bytes_to_send >= WRITE_THRESHOLD:
                await self.flush()
            if not wanted_more:
                break

    async def _read_ahead(self, index: int) -> None:
        """Read the bodies of message `index` and the next small ones into self._ahead, in
        one store call; a body the store leaves out (a file), or too large, is not there."""
        self._ahead.clear()
        wanted: dict[int, str] = {}
        total = 0
        for i in range(index, min(index + READ_AHEAD_COUNT, len(self.messages))):
            record = self.messages[i]
            if record.size > RETR_CHUNK or total + record.size > READ_AHEAD_BYTES:
                break
            wanted[i] = record.blob_id
            total += record.size
        self._asked_from, self._asked_until = index, index + len(wanted)
        if not wanted:
            return
        try:
            bodies = await self.services.store.read_whole_blobs(list(wanted.values()))
        except StoreError as exc:
            # Only a lost speed-up: each message is then read on its own, and a failure
            # there is reported for that message.
            log.warning("pop3 read-ahead", extra={"conn": self.conn.conn_id, "err": str(exc)})
            return
        for i, blob_id in wanted.items():
            body = bodies.get(blob_id)
            if body is not None:
                self._ahead[i] = body

    async def commit(self, deleted: tuple[int, ...]) -> None:
        try:
            if deleted:
                uids = [self.messages[i].uid for i in deleted]
                await self.services.store.expunge(self.mailbox_id, uids)
        except StoreError as exc:
            log.error("pop3 commit", extra={"conn": self.conn.conn_id, "err": str(exc)})
            self.core.commit_failed()
        else:
            self.core.commit_done()
        self.release()
