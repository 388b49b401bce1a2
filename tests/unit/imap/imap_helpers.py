"""Shared helpers for the IMAP core tests: feed bytes, collect what the receiver yields."""

from __future__ import annotations

from postar.imap.commands import Command
from postar.imap.errors import ParseError
from postar.imap.limits import ImapLimits, LiteralMode
from postar.imap.receiver import NEED_DATA, NeedContinuation, Receiver

Event = Command | NeedContinuation | ParseError


def drain(receiver: Receiver) -> list[Event]:
    events: list[Event] = []
    while True:
        event = receiver.next_command()
        if event is NEED_DATA:
            return events
        assert not isinstance(event, type(NEED_DATA))
        events.append(event)
        if isinstance(event, ParseError) and event.fatal:
            return events


def feed(
    data: bytes,
    *,
    limits: ImapLimits | None = None,
    literal_mode: LiteralMode = LiteralMode.PLUS,
    utf8: bool = False,
    chunk: int | None = None,
) -> list[Event]:
    receiver = Receiver(limits, literal_mode=literal_mode)
    receiver.utf8 = utf8
    if chunk is None:
        receiver.receive_data(data)
        return drain(receiver)
    events: list[Event] = []
    for i in range(0, len(data), chunk):
        receiver.receive_data(data[i : i + chunk])
        events += drain(receiver)
    return events


def one(data: bytes, **kwargs: object) -> Command | ParseError:
    """The single command or error in `data`, skipping continuation requests."""
    events = [e for e in feed(data, **kwargs) if not isinstance(e, NeedContinuation)]  # type: ignore[arg-type]
    assert len(events) == 1, events
    return events[0]


def command(data: bytes, **kwargs: object) -> Command:
    result = one(data, **kwargs)
    assert isinstance(result, Command), result
    return result


def error(data: bytes, **kwargs: object) -> ParseError:
    result = one(data, **kwargs)
    assert isinstance(result, ParseError), result
    return result
