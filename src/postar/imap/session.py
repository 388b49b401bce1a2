"""One IMAP session: the behaviour half that binds the sans-I/O core to a transport and the store.

Theory of operation
-------------------
`run()` reads bytes, feeds the `Receiver`, and executes each command in order; the
`ResponseEncoder` turns responses into bytes, and FETCH bodies are streamed from the blob
store in ranged reads (`StreamedData`), never held whole. Command groups live in their own
modules (`mailbox_exec`, `message_exec`, `fetch_exec`, `search_exec`); this module keeps the
loop, authentication, STARTTLS, ENABLE, SELECT and IDLE.

Invariants
----------
- One command at a time per connection; the one task that runs `run()` is the only writer
  (IDLE waits on input and on the change feed in that same task).
- A user reaches only their own account: every store call carries `account.id`, and mailbox
  names are always relative to it (no name, "../" or otherwise, leaves the account).
- Untagged news about the selected mailbox (EXISTS, flag changes, EXPUNGE) goes out before a
  command's tagged answer, and EXPUNGE never during FETCH, STORE or SEARCH (RFC 9051 7.5.1).
- Bytes buffered before STARTTLS are discarded (RFC 9051 11.1, STARTTLS injection).
- Peer errors are answered as BAD/NO; a bug in a command is logged with its traceback and
  answered NO [SERVERBUG] without internals, and the session goes on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from postar.auth.authenticator import Authenticator
from postar.auth.sasl import FailureReason
from postar.imap import commands as c
from postar.imap import state as st
from postar.imap.capabilities import ENABLEABLE, capabilities, literal_capability
from postar.imap.codes import (
    CapabilityCode,
    Code,
    MailboxId,
    PermanentFlags,
    ResponseCode,
    highest_modseq,
    uid_next,
    uid_validity,
    unseen,
)
from postar.imap.compress import DeflateTransport
from postar.imap.errors import ParseError
from postar.imap.limits import ImapLimits, LiteralMode
from postar.imap.mailbox_view import MailboxGone, MailboxView
from postar.imap.parsed_cache import ParsedCache
from postar.imap.receiver import NeedContinuation, NeedData, Receiver
from postar.imap.response import (
    CapabilityData,
    Continuation,
    EnabledData,
    ExistsData,
    FlagsData,
    IdData,
    ListData,
    NamespaceData,
    RecentData,
    Response,
    ResponseEncoder,
    Status,
    StreamedData,
    Tagged,
    Untagged,
)
from postar.imap.sequence import SequenceSet
from postar.imap.sort_exec import SortCache
from postar.mime.structure import ParsedMessage
from postar.net.connection import IdleTimeout, ShuttingDown, TLSHandshakeError
from postar.store.interface import NotFound, Store, StoreError
from postar.store.model import RESYNC_ALL, SYSTEM_FLAGS, Account, MailboxChange

log = logging.getLogger("postar.imap")

STREAM_CHUNK = 64 * 1024
FLUSH_AT = 64 * 1024  # buffered response bytes written out before more are produced


class Transport(Protocol):
    """What a session needs of its connection (postar.net.connection.Connection)."""

    conn_id: str
    peer_ip: str

    @property
    def tls_active(self) -> bool: ...

    @property
    def can_start_tls(self) -> bool: ...

    async def recv(self, max_bytes: int = ...) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def start_tls(self) -> None: ...


@dataclass(frozen=True)
class ImapSettings:
    hostname: str = "localhost"
    limits: ImapLimits = field(default_factory=ImapLimits)
    max_errors: int = 20  # protocol errors before the server hangs up
    server_name: str = "Postar"
    # RFC 7888 section 5: LITERAL+ (the default) or LITERAL-, advertised and enforced alike.
    literal_mode: LiteralMode = LiteralMode.PLUS

    def __post_init__(self) -> None:
        literal_capability(self.literal_mode)  # NONE is refused here, not at CAPABILITY time


class CommandError(Exception):
    """A command's NO or BAD, raised from anywhere inside its execution."""

    def __init__(self, status: Status, text: str, code: ResponseCode | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


def no(text: str, code: ResponseCode | None = None) -> CommandError:
    return CommandError(Status.NO, text, code)


def bad(text: str, code: ResponseCode | None = None) -> CommandError:
    return CommandError(Status.BAD, text, code)


_AUTH_FAILURES: dict[FailureReason, tuple[Status, Code | None, str]] = {
    FailureReason.INVALID_CREDENTIALS: (
        Status.NO,
        Code.AUTHENTICATIONFAILED,
        "Authentication failed",
    ),
    FailureReason.MALFORMED: (Status.BAD, None, "Malformed authentication data"),
    FailureReason.CANCELLED: (Status.BAD, None, "Authentication cancelled"),
    FailureReason.AUTHZ_REFUSED: (
        Status.NO,
        Code.AUTHORIZATIONFAILED,
        "Not authorized for that identity",
    ),
    FailureReason.UNSUPPORTED_MECHANISM: (Status.NO, Code.CANNOT, "Unsupported mechanism"),
    FailureReason.ENCRYPTION_REQUIRED: (
        Status.NO,
        Code.PRIVACYREQUIRED,
        "Plain-text authentication needs TLS; use STARTTLS",
    ),
    FailureReason.DISABLED: (Status.NO, Code.CONTACTADMIN, "Account disabled"),
    FailureReason.LOCKED_OUT: (Status.NO, Code.UNAVAILABLE, "Too many failures, try later"),
    FailureReason.TEMPORARY: (Status.NO, Code.UNAVAILABLE, "Temporary failure, try later"),
}

# RFC 9051 7.1 PERMANENTFLAGS: system flags and "\*" (clients may create keywords).
PERMANENT_FLAGS = (*SYSTEM_FLAGS, "\\*")


class ImapSession:
    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        conn: Transport,
        settings: ImapSettings | None = None,
        parsed_cache: ParsedCache | None = None,
    ) -> None:
        self.store = store
        self.auth = authenticator
        self.conn = conn
        self.settings = settings or ImapSettings()
        self.receiver = Receiver(self.settings.limits, literal_mode=self.settings.literal_mode)
        self.encoder = ResponseEncoder()
        self.state = st.State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.view: MailboxView | None = None
        self.enabled: set[str] = set()
        self.condstore = False  # RFC 7162 3.1: on after ENABLE or the first CONDSTORE use
        self.saved_search: list[int] | None = None  # RFC 5182 "$", as UIDs
        self.errors = 0
        self._out = bytearray()
        self._changed = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._changes: AsyncIterator[MailboxChange] | None = None
        # Shared with the server's other sessions (IMAPServer); a session alone gets its own.
        self.parsed_cache = parsed_cache if parsed_cache is not None else ParsedCache(64)
        self.sort_cache = SortCache()  # SORT/THREAD keys by blob id (RFC 5256)

    # -- helpers for the command modules ------------------------------------------------------

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def account_id(self) -> int:
        assert self.account is not None
        return self.account.id

    def selected(self) -> MailboxView:
        if self.view is None:
            raise bad("No mailbox selected")
        return self.view

    def writable(self) -> MailboxView:
        view = self.selected()
        if view.read_only:
            raise no("Mailbox is read-only", Code.READ_ONLY)
        return view

    def resolve(self, seqs: SequenceSet, *, uid: bool) -> list[tuple[int, int]]:
        """(seq, uid) pairs named by a command's set; "$" is the saved search (RFC 5182)."""
        view = self.selected()
        if seqs.saved:
            return view.by_uid_list(self.saved_search or [])
        if uid:
            return view.by_uid(seqs)
        pairs = view.by_sequence(seqs)
        if pairs is None:
            raise bad("Invalid message sequence number")
        return pairs

    def capability_list(self) -> tuple[str, ...]:
        tls = self.conn.tls_active
        return capabilities(
            authenticated=self.state in (st.State.AUTHENTICATED, st.State.SELECTED),
            can_start_tls=self.conn.can_start_tls and not tls,
            plaintext_allowed=self.auth.plaintext_allowed(tls, self.conn.peer_ip),
            mechanisms=self.auth.mechanisms_for(tls, self.conn.peer_ip),
            append_limit=self.settings.limits.max_literal_size,
            literal_mode=self.settings.literal_mode,
        )

    # -- output --------------------------------------------------------------------------------

    async def send(self, response: Response) -> None:
        for chunk in self.encoder.chunks(response):
            if isinstance(chunk, StreamedData):
                await self._stream(chunk)
            else:
                self._out += chunk
        if len(self._out) >= FLUSH_AT:
            await self.flush()

    async def send_all(self, responses: list[Response]) -> None:
        for r in responses:
            await self.send(r)

    async def _stream(self, data: StreamedData) -> None:
        """Copy `length` octets of a blob, from `source` = (blob_id, start, the blob's size),
        chunk by chunk."""
        source = data.source
        assert isinstance(source, tuple)
        blob_id, start, size = source
        await self.flush()
        left = data.length
        pos = start
        while left > 0:
            chunk = await self.store.read_blob(blob_id, pos, min(STREAM_CHUNK, left), size=size)
            if not chunk:
                # The literal length was promised: pad rather than break the stream.
                chunk = b" " * min(STREAM_CHUNK, left)
            self.conn.write(chunk)
            await self.conn.drain()
            pos += len(chunk)
            left -= len(chunk)

    async def flush(self) -> None:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            self.conn.write(data)
        await self.conn.drain()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self.send(
                Untagged(
                    Status.OK,
                    f"{self.settings.hostname} {self.settings.server_name} ready",
                    CapabilityCode(self.capability_list()),
                )
            )
            await self.flush()
            while self.state is not st.State.LOGOUT:
                event = self.receiver.next_command()
                if isinstance(event, NeedData):
                    await self.flush()
                    data = await self.conn.recv()
                    if not data:
                        return
                    self.receiver.receive_data(data)
                    continue
                if isinstance(event, NeedContinuation):
                    await self.send(Continuation(event.text))
                    await self.flush()
                    continue
                if isinstance(event, ParseError):
                    self._out += self.encoder.error(event)
                    if event.fatal or self._count_error():
                        return
                    continue
                await self.execute(event)
        except IdleTimeout:
            await self._bye("Autologout; idle for too long")
        except ShuttingDown:
            await self._bye("Server shutting down")
        except (ConnectionError, TLSHandshakeError, TimeoutError) as exc:
            log.info("imap session ended", extra={"conn": self.conn.conn_id, "why": repr(exc)})
        finally:
            with contextlib.suppress(ConnectionError, TimeoutError):
                await self.flush()
            await self._stop_watching()

    async def _bye(self, text: str) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            await self.send(Untagged(Status.BYE, text))
            await self.flush()

    def _count_error(self) -> bool:
        self.errors += 1
        if self.errors >= self.settings.max_errors:
            self._out += self.encoder.encode(Untagged(Status.BYE, "Too many errors"))
            return True
        return False

    async def execute(self, command: c.Command) -> None:
        rejection = st.admit(self.state, command)
        if rejection is not None:
            await self.send(rejection)
            self._count_error()
            return
        try:
            answer = await self.dispatch(command)
            if answer is None:  # STARTTLS: answered before the handshake
                return
            tagged = answer
            ok = tagged.status is Status.OK
        except CommandError as err:
            tagged = Tagged(command.tag, err.status, err.text, err.code)
            ok = False
        except MailboxGone:
            await self.send(Untagged(Status.BYE, "Selected mailbox was deleted"))
            self.state = st.State.LOGOUT
            return
        except StoreError as exc:
            log.warning("imap store refused", extra={"conn": self.conn.conn_id, "err": str(exc)})
            tagged = Tagged(command.tag, Status.NO, "Operation failed", Code.SERVERBUG)
            ok = False
        except (ConnectionError, TimeoutError, ShuttingDown):
            raise
        except Exception:
            # A bug: keep the traceback in the log, give the client no internals.
            log.exception("imap command failed", extra={"conn": self.conn.conn_id})
            tagged = Tagged(command.tag, Status.NO, "Internal error", Code.SERVERBUG)
            ok = False
        if tagged.status is Status.BAD and self._count_error():
            await self.send(tagged)
            self.state = st.State.LOGOUT
            return
        if not isinstance(command, c.Logout | c.Select | c.Close | c.Unselect):
            with contextlib.suppress(MailboxGone):
                await self.announce(command)
        new_state = st.after(self.state, command, ok=ok)
        if new_state is st.State.LOGOUT:
            await self.send(Untagged(Status.BYE, "Logging out"))
        await self.send(tagged)
        self.state = new_state

    async def announce(self, command: c.Command | None, *, force: bool = False) -> None:
        """Send the selected mailbox's pending news, as far as `command` allows."""
        view = self.view
        if view is None:
            return
        if force or self._changed.is_set():
            self._changed.clear()
            await view.refresh(self.store)
            if view.uids and view.uids[-1] > view.recent_top:
                await self._claim_recent(view)
        # RFC 9051 7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH (their UID forms
        # may, but keeping them consistent costs nothing).
        no_expunge = isinstance(command, c.Fetch | c.Store | c.Search | c.Sort | c.Thread)
        await self.send_all(
            view.announce(expunge=not no_expunge, qresync=self.qresync, condstore=self.condstore)
        )

    # -- change feed ---------------------------------------------------------------------------

    async def _start_watching(self) -> None:
        self._changes = self.store.changes(self.account_id)
        self._watcher = asyncio.create_task(self._watch(self._changes))

    async def _watch(self, changes: AsyncIterator[MailboxChange]) -> None:
        async for change in changes:
            view = self.view
            if view is not None and change.mailbox_id in (view.id, RESYNC_ALL):
                self._changed.set()

    async def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._changes is not None:
            aclose = getattr(self._changes, "aclose", None)
            if aclose is not None:
                await aclose()
            self._changes = None

    # -- dispatch ------------------------------------------------------------------------------

    async def dispatch(self, command: c.Command) -> Tagged | None:
        from postar.imap import (
            fetch_exec,
            mailbox_exec,
            message_exec,
            quota_exec,
            search_exec,
            sort_exec,
        )

        tag = command.tag
        match command:
            case c.Capability():
                await self.send(CapabilityData(self.capability_list()))
                return Tagged(tag, Status.OK, "CAPABILITY completed")
            case c.Noop() | c.Check():
                await self.announce(command, force=True)
                return Tagged(tag, Status.OK, f"{command.name} completed")
            case c.Logout():
                return Tagged(tag, Status.OK, "LOGOUT completed")
            case c.Id():
                # RFC 2971 3.2: identify ourselves; what the client says is only logged.
                log.info("imap client id", extra={"conn": self.conn.conn_id})
                await self.send(IdData((("name", self.settings.server_name),)))
                return Tagged(tag, Status.OK, "ID completed")
            case c.StartTls():
                await self.starttls(tag)
                return None
            case c.Login():
                return await self.login(command)
            case c.Authenticate():
                return await self.authenticate(command)
            case c.Enable():
                return await self.enable(command)
            case c.Namespace():
                # RFC 2342: one personal namespace, no prefix, "/" separator; nothing shared.
                await self.send(NamespaceData((("", "/"),)))
                return Tagged(tag, Status.OK, "NAMESPACE completed")
            case c.Select():
                return await self.select(command)
            case c.Close():
                view = self.selected()
                if not view.read_only:
                    # RFC 9051 6.4.1: CLOSE expunges silently.
                    await self.store.expunge(view.id)
                await self._deselect(closed_code=False)
                return Tagged(tag, Status.OK, "CLOSE completed")
            case c.Unselect():
                self.selected()
                await self._deselect(closed_code=False)
                return Tagged(tag, Status.OK, "UNSELECT completed")
            case c.Idle():
                return await self.idle(tag)
            case c.List() | c.Lsub():
                return await mailbox_exec.list_mailboxes(self, command)
            case c.Status():
                return await mailbox_exec.status(self, command)
            case c.Create() | c.Delete() | c.Rename() | c.Subscribe() | c.Unsubscribe():
                return await mailbox_exec.manage(self, command)
            case c.GetQuota() | c.GetQuotaRoot() | c.SetQuota():
                return await quota_exec.quota(self, command)
            case c.Append():
                return await message_exec.append(self, command)
            case c.Expunge() | c.UidExpunge():
                return await message_exec.expunge(self, command)
            case c.Store():
                return await message_exec.store_flags(self, command)
            case c.Copy() | c.Move():
                return await message_exec.copy_move(self, command)
            case c.Fetch():
                return await fetch_exec.fetch(self, command)
            case c.Search():
                return await search_exec.search(self, command)
            case c.Compress():
                await self.compress(command)
                return None
            case c.Sort():
                return await sort_exec.sort(self, command)
            case c.Thread():
                return await sort_exec.thread(self, command)
        raise bad("Command not supported")

    # -- not authenticated ---------------------------------------------------------------------

    async def starttls(self, tag: str) -> None:
        if self.conn.tls_active or not self.conn.can_start_tls:
            raise bad("TLS not available")
        await self.send(Tagged(tag, Status.OK, "Begin TLS negotiation now"))
        await self.flush()
        # RFC 9051 11.1: anything the client sent before the handshake is discarded.
        self.receiver.discard_buffer()
        await self.conn.start_tls()

    async def compress(self, command: c.Compress) -> None:
        """RFC 4978 section 3: OK in clear, then deflate both ways from the next octet."""
        if isinstance(self.conn, DeflateTransport):
            raise no("Compression is already active", Code.COMPRESSIONACTIVE)
        if command.mechanism.upper() != "DEFLATE":
            raise bad("Unknown compression mechanism")
        await self.send(Tagged(command.tag, Status.OK, "DEFLATE active"))
        await self.flush()
        # Bytes the client sent before seeing the OK were not compressed and cannot be taken
        # as commands of the compressed stream (the same rule as STARTTLS, RFC 9051 11.1).
        self.receiver.discard_buffer()
        self.conn = DeflateTransport(self.conn)

    async def login(self, command: c.Login) -> Tagged:
        result = await self.auth.login(
            command.username,
            command.password,
            tls_active=self.conn.tls_active,
            peer_ip=self.conn.peer_ip,
        )
        return await self._after_auth(command.tag, result.account, result.failure)

    async def authenticate(self, command: c.Authenticate) -> Tagged:
        ir = command.initial_response
        # The authenticator takes the wire form of SASL-IR: base64, "=" for empty (RFC 4959).
        wire = None if ir is None else (base64.b64encode(ir) if ir else b"=")

        async def send_challenge(b64: bytes) -> None:
            self._out += b"+ " + b64 + b"\r\n"
            await self.flush()

        async def receive_response() -> bytes | None:
            while True:
                line = self.receiver.expect_line()
                if isinstance(line, NeedData):
                    data = await self.conn.recv()
                    if not data:
                        return None
                    self.receiver.receive_data(data)
                    continue
                if isinstance(line, ParseError):
                    return None
                return line

        result = await self.auth.authenticate(
            command.mechanism,
            wire,
            send_challenge,
            receive_response,
            tls_active=self.conn.tls_active,
            peer_ip=self.conn.peer_ip,
        )
        return await self._after_auth(command.tag, result.account, result.failure)

    async def _after_auth(
        self, tag: str, account: Account | None, failure: FailureReason | None
    ) -> Tagged:
        if account is None:
            status, code, text = _AUTH_FAILURES[failure or FailureReason.INVALID_CREDENTIALS]
            raise CommandError(status, text, code)
        self.account = account
        self.state = st.State.AUTHENTICATED
        await self._start_watching()
        log.info("imap login", extra={"conn": self.conn.conn_id, "user": account.address})
        # RFC 9051 6.2.2: the tagged OK may carry the new capabilities.
        return Tagged(tag, Status.OK, "Logged in", CapabilityCode(self.capability_list()))

    # -- authenticated -------------------------------------------------------------------------

    async def enable(self, command: c.Enable) -> Tagged:
        newly: list[str] = []
        for name in command.capabilities:
            if name in ENABLEABLE and name not in self.enabled:
                self.enabled.add(name)
                newly.append(name)
                if name == "QRESYNC" and "CONDSTORE" not in self.enabled:
                    # RFC 7162 3.2.3: enabling QRESYNC implies CONDSTORE.
                    self.enabled.add("CONDSTORE")
        if {"CONDSTORE", "QRESYNC"} & self.enabled:
            self.condstore = True
        if {"IMAP4REV2", "UTF8=ACCEPT"} & self.enabled:
            # RFC 6855 3, RFC 9051 5.1: UTF-8 in quoted strings and mailbox names from now on.
            self.receiver.utf8 = self.encoder.utf8 = True
        spelled = {"IMAP4REV2": "IMAP4rev2"}
        await self.send(EnabledData(tuple(spelled.get(n, n) for n in newly)))
        return Tagged(command.tag, Status.OK, "ENABLE completed")

    async def _deselect(self, *, closed_code: bool) -> None:
        if self.view is not None and closed_code:
            # RFC 7162 3.2.11 / RFC 9051 7.1: CLOSED marks where the old mailbox's news ends.
            await self.send(Untagged(Status.OK, "Previous mailbox closed", Code.CLOSED))
        self.view = None
        self.saved_search = None
        self._changed.clear()

    async def select(self, command: c.Select) -> Tagged:
        from postar.imap import mailbox_exec

        await self._deselect(closed_code=self.view is not None and (self.qresync or self.rev2))
        if command.condstore or command.qresync is not None:
            self.condstore = True
        if command.qresync is not None and not self.qresync:
            raise bad("QRESYNC must be enabled first")
        # SELECT counts from the records it reads anyway (MailboxView), not from the row.
        mailbox = await self.store.get_mailbox(self.account_id, command.mailbox, counts=False)
        if mailbox is None:
            raise no("No such mailbox", Code.NONEXISTENT)
        if mailbox.noselect:
            raise no("Mailbox cannot be selected", Code.NONEXISTENT)
        self._changed.clear()
        records = await self.store.list_messages(mailbox.id)
        view = MailboxView.from_records(mailbox, records, read_only=command.read_only)
        view.show_recent = not self.rev2
        await self._claim_recent(view)
        flags = tuple(sorted(set(SYSTEM_FLAGS) | view.keywords()))
        out: list[Response] = [FlagsData(flags), ExistsData(view.exists)]
        if not self.rev2:
            out.append(RecentData(len(view.recent)))  # RFC 3501 only
            first_unseen = next(
                (i + 1 for i, u in enumerate(view.uids) if "\\Seen" not in view.flags[u]), None
            )
            if first_unseen is not None:
                out.append(Untagged(Status.OK, "First unseen", unseen(first_unseen)))
        out += [
            Untagged(Status.OK, "UIDs valid", uid_validity(mailbox.uidvalidity)),
            Untagged(Status.OK, "Predicted next UID", uid_next(view.uidnext)),
            Untagged(
                Status.OK,
                "Flags permitted",
                PermanentFlags(() if command.read_only else PERMANENT_FLAGS),
            ),
            Untagged(Status.OK, "Highest", highest_modseq(mailbox.highestmodseq)),
            # RFC 8474 4.1: SELECT/EXAMINE name the mailbox's id.
            Untagged(Status.OK, "Mailbox id", MailboxId(mailbox_exec.mailbox_object_id(mailbox))),
        ]
        if self.rev2:
            # RFC 9051 6.3.2: a LIST response with the mailbox name is required.
            attrs = await mailbox_exec.attributes_of(self, mailbox.name)
            # With OLDNAME when the client spelled the name otherwise, as in section 8.
            out.append(ListData(attrs, "/", mailbox.name, old_name=command.given_name))
        await self.send_all(out)
        if command.qresync is not None:
            await mailbox_exec.qresync_select(self, view, command.qresync)
        self.view = view
        code = Code.READ_ONLY if command.read_only else Code.READ_WRITE
        return Tagged(command.tag, Status.OK, f"{command.name} completed", code)

    async def _claim_recent(self, view: MailboxView) -> None:
        """RFC 3501 2.3.2: a message is recent to the first session that sees it. SELECT
        claims (raises the store's mark); EXAMINE only looks, leaving them for a SELECT."""
        top = view.uids[-1] if view.uids else 0
        try:
            old = await self.store.claim_recent(view.id, 0 if view.read_only else top)
        except NotFound:
            raise MailboxGone from None
        view.claim_recent(old)

    async def idle(self, tag: str) -> Tagged:
        """RFC 2177: news goes out as it happens until the client sends DONE."""
        await self.send(Continuation("idling"))
        await self.announce(None, force=True)
        await self.flush()
        recv: asyncio.Task[bytes] | None = None
        changed: asyncio.Task[bool] | None = None
        try:
            while True:
                line = self.receiver.expect_line()
                if isinstance(line, ParseError):
                    raise bad("Line too long")
                if not isinstance(line, NeedData):
                    if line.upper() == b"DONE":
                        return Tagged(tag, Status.OK, "IDLE terminated")
                    raise bad("Expected DONE")
                if recv is None:
                    recv = asyncio.ensure_future(self.conn.recv())
                if changed is None:
                    changed = asyncio.ensure_future(self._changed.wait())
                done, _ = await asyncio.wait({recv, changed}, return_when=asyncio.FIRST_COMPLETED)
                if changed in done:
                    changed = None
                    await self.announce(None)
                    await self.flush()
                if recv in done:
                    data = recv.result()
                    recv = None
                    if not data:
                        raise ConnectionResetError("peer closed during IDLE")
                    self.receiver.receive_data(data)
        finally:
            for task in (recv, changed):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                        await task

    async def parsed(self, blob_id: str) -> ParsedMessage:
        """The stored parse of a body (read-only: it is shared through the cache)."""
        return await self.parsed_cache.get(self.store, blob_id)
