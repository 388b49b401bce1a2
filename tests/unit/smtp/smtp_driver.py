"""A tiny glue for tests: feeds byte pieces to an SMTPConnection, answers decisions by a
policy, and records events and the bytes the server wrote."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from postar.smtp.core import SMTPConnection
from postar.smtp.events import (
    NEED_DATA,
    PAUSED,
    AuthResponse,
    AuthStart,
    Decision,
    Event,
    MessageData,
    StartTLS,
    Terminal,
)
from postar.smtp.settings import SMTPSettings

Policy = Callable[[SMTPConnection, Decision], None]

# SASL PLAIN of "user"/"secret": the fake credentials the default policy takes, and their
# wire form, which is what the core hands over (the authenticator decodes).
PLAIN_OK = b"\0user\0secret"
PLAIN_OK_WIRE = base64.b64encode(PLAIN_OK)


def accept_all(conn: SMTPConnection, event: Decision) -> None:
    if isinstance(event, AuthStart):
        if event.initial_response is None:
            conn.auth_challenge(b"")
        elif event.initial_response == PLAIN_OK_WIRE:
            conn.auth_success()
        else:
            conn.auth_failure()
    elif isinstance(event, AuthResponse):
        if event.data == PLAIN_OK_WIRE:
            conn.auth_success()
        else:
            conn.auth_failure()
    else:
        conn.accept()
        if isinstance(event, StartTLS):
            conn.start_tls_done()


@dataclass
class Session:
    conn: SMTPConnection
    events: list[Event] = field(default_factory=list)
    output: bytearray = field(default_factory=bytearray)
    max_buffer: int = 0  # the most input the core ever held, for the bounded-memory tests


def settings(**overrides: object) -> SMTPSettings:
    base: dict[str, object] = {
        "hostname": "mx.example.net",
        "auth_mechanisms": ("PLAIN", "LOGIN"),
        "starttls_available": True,
    }
    base.update(overrides)
    return SMTPSettings(**base)  # type: ignore[arg-type]


def run(
    pieces: Iterable[bytes],
    policy: Policy = accept_all,
    config: SMTPSettings | None = None,
    eof: bool = True,
) -> Session:
    conn = SMTPConnection(config or settings())
    session = Session(conn)
    session.output += conn.greeting()
    feed = iter(pieces)
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            session.output += conn.data_to_send()
            piece = next(feed, None)
            if piece is None:
                if not eof:
                    return session
                piece = b""
            conn.receive_data(piece)
            session.max_buffer = max(session.max_buffer, len(conn._buf))
            continue
        assert event is not PAUSED, "the driver answers every decision"
        assert isinstance(event, Event)
        session.events.append(event)
        if isinstance(event, Decision):
            policy(conn, event)
        elif isinstance(event, Terminal):
            session.output += conn.data_to_send()
            return session


def merged(events: list[Event]) -> list[Event]:
    """Events with adjacent MessageData joined: how content is cut depends on the reads."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, MessageData) and out and isinstance(out[-1], MessageData):
            out[-1] = MessageData(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def content(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, MessageData))


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def reply_codes(output: bytes) -> list[int]:
    """The code of each final reply line (multi-line replies count once)."""
    codes = []
    for line in output.split(b"\r\n"):
        if (len(line) >= 4 and line[3:4] == b" ") or len(line) == 3:
            codes.append(int(line[:3]))
    return codes
