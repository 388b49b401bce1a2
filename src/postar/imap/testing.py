"""Test helpers for code that drives the IMAP core: feed bytes, collect what the receiver
yields. Used by our unit tests and meant for the server's tests too (no I/O, no fixtures)."""

from __future__ import annotations

from postar.imap.commands import Command
from postar.imap.errors import ParseError
from postar.imap.limits import ImapLimits, LiteralMode
from postar.imap.receiver import NeedContinuation, NeedData, Receiver

Event = Command | NeedContinuation | ParseError


def drain(receiver: Receiver) -> list[Event]:
    events: list[Event] = []
    while True:
        event = receiver.next_command()
        if isinstance(event, NeedData):
            return events
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
    if len(events) != 1:
        raise AssertionError(f"expected one command, got {events!r}")
    return events[0]


def command(data: bytes, **kwargs: object) -> Command:
    result = one(data, **kwargs)
    if not isinstance(result, Command):
        raise AssertionError(f"expected a command, got {result!r}")
    return result


def error(data: bytes, **kwargs: object) -> ParseError:
    result = one(data, **kwargs)
    if not isinstance(result, ParseError):
        raise AssertionError(f"expected a ParseError, got {result!r}")
    return result
