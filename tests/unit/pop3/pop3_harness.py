"""A synchronous stand-in for the POP3 glue: answers the core's events from in-memory data."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

from postar.pop3 import (
    AuthRequest,
    AuthResponse,
    CloseConnection,
    Commit,
    LoginRequest,
    MaildropEntry,
    NeedData,
    POP3Connection,
    POP3Settings,
    ResponseCode,
    RetrRequest,
    SendPending,
    StartTLS,
)

MESSAGES = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nHello\r\n.dotted line\r\nbye\r\n",
    b"Subject: two\r\n\r\nl1\r\nl2\r\nl3\r\n",
]

TLS_SETTINGS = POP3Settings(
    mechanisms=("SCRAM-SHA-256", "PLAIN", "LOGIN"), plaintext_allowed=True, tls_active=True
)
CLEAR_SETTINGS = POP3Settings(
    mechanisms=("SCRAM-SHA-256",), plaintext_allowed=False, stls_available=True
)


@dataclass
class FakeGlue:
    settings: POP3Settings = TLS_SETTINGS
    messages: list[bytes] = field(default_factory=lambda: list(MESSAGES))
    users: dict[str, str] = field(default_factory=lambda: {"mrose": "secret"})
    chunk_size: int = 7
    locked: bool = False  # the maildrop is held by another session
    commit_ok: bool = True
    commits: list[tuple[int, ...]] = field(default_factory=list)
    closed: str | None = None
    tls_starts: int = 0
    core: POP3Connection = field(init=False)
    _auth_mech: str | None = None

    def __post_init__(self) -> None:
        self.core = POP3Connection(self.settings)

    def maildrop(self) -> list[MaildropEntry]:
        return [MaildropEntry(len(m), f"1.{n + 1}") for n, m in enumerate(self.messages)]

    def feed(self, pieces: Iterable[bytes], eof: bool = False) -> bytes:
        """Feed the pieces one by one, answering every event; returns everything sent."""
        out = bytearray(self.core.data_to_send())
        queue = list(pieces)
        if eof:
            queue.append(b"")
        while self.closed is None:
            event = self.core.next_event()
            out += self.core.data_to_send()
            if isinstance(event, NeedData):
                if not queue:
                    break
                self.core.receive_data(queue.pop(0))
                continue
            self._answer(event)
            out += self.core.data_to_send()
        return bytes(out)

    def _check(self, user: str, password: str) -> None:
        if self.users.get(user) != password:
            self.core.authentication_failed(ResponseCode.AUTH, "Authentication failed")
        elif self.locked:
            self.core.authentication_failed(ResponseCode.IN_USE, "Maildrop locked elsewhere")
        else:
            self.core.authenticated(self.maildrop(), user)

    def _plain(self, data: bytes | None) -> None:
        if data is None or data == b"*":
            self.core.authentication_failed(None, "Authentication cancelled")
            return
        try:
            _authzid, user, password = base64.b64decode(data, validate=True).split(b"\0")
        except ValueError:
            self.core.authentication_failed(None, "Invalid authentication data")
            return
        self._check(user.decode(), password.decode())

    def _answer(self, event: object) -> None:
        match event:
            case LoginRequest(username=u, password=p):
                self._check(u, p)
            case AuthRequest(mechanism="PLAIN", initial_response=None):
                self._auth_mech = "PLAIN"
                self.core.send_auth_challenge(b"")
            case AuthRequest(mechanism="PLAIN", initial_response=initial):
                self._plain(initial)
            case AuthRequest():
                self.core.authentication_failed(None, "Unsupported authentication mechanism")
            case AuthResponse(line=line):
                assert self._auth_mech == "PLAIN"
                self._auth_mech = None
                self._plain(line)
            case StartTLS():
                self.tls_starts += 1
                self.core.tls_started(mechanisms=("SCRAM-SHA-256", "PLAIN"), plaintext_allowed=True)
            case RetrRequest(index=index):
                data = self.messages[index]
                for start in range(0, len(data), self.chunk_size):
                    if not self.core.message_data(data[start : start + self.chunk_size]):
                        break
                self.core.message_end()
            case Commit(deleted_indexes=deleted):
                self.commits.append(deleted)
                if self.commit_ok:
                    self.core.commit_done()
                else:
                    self.core.commit_failed()
            case CloseConnection(reason=reason):
                self.closed = reason
            case SendPending():
                pass  # feed() takes data_to_send() after every event
            case _:
                raise AssertionError(f"unexpected event {event!r}")


def transcript(pieces: Iterable[bytes], glue: FakeGlue | None = None, eof: bool = False) -> bytes:
    return (glue or FakeGlue()).feed(pieces, eof=eof)
