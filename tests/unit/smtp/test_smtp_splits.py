"""However the network cuts the client's bytes, the server sees the same session.

Each sample is fed whole, split in two at every byte boundary, and one byte at a time; the
events (with adjacent MessageData joined) and the server's output must not change.
"""

from __future__ import annotations

import base64

import pytest

from postar.smtp.events import Event, MessageAborted, MessageData
from postar.smtp.settings import SMTPSettings
from tests.unit.smtp.smtp_driver import PLAIN_OK, Session, merged, run, settings, split_every

TOKEN = base64.b64encode(PLAIN_OK)

SAMPLES: dict[str, tuple[bytes, SMTPSettings]] = {
    "transaction with dot-stuffing": (
        b"EHLO client.example.org\r\nMAIL FROM:<a@example.org> SIZE=40\r\n"
        b"RCPT TO:<b@example.net> NOTIFY=FAILURE\r\nDATA\r\nSubject: hi\r\n\r\n"
        b"..leading dot\r\n.\r\nQUIT\r\n",
        settings(),
    ),
    "smuggling attempts": (
        b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
        b"x\n.\nMAIL FROM:<e@x.org>\r\n\r\n.\n\n.\r\n\r.\rq\r.\r\n.\r\nNOOP\r\n",
        settings(),
    ),
    "bare newline rejected": (
        b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
        b"a\rb\r\n.\r\nRSET\r\n",
        settings(bare_newlines="reject"),
    ),
    "bdat": (
        b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
        b"BDAT 7\r\n\r\n.\r\nab\rBDAT 3 LAST\r\n\ncdQUIT\r\n",
        settings(),
    ),
    "auth and errors": (
        b"EHLO c\r\nAUTH PLAIN\r\n" + TOKEN + b"\r\nAUTH LOGIN\r\nNOPE\x00\r\n"
        b"MAIL FROM:<bad\r\nVRFY\r\n" + b"N" * 600 + b"\r\nQUIT\r\n",
        settings(max_line_length=512),
    ),
    "size exceeded": (
        b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
        + b"0123456789\r\n" * 20
        + b".\r\nQUIT\r\n",
        settings(max_message_size=100),
    ),
}


def _outcome(session: Session) -> tuple[list[object], bytes]:
    # How much content arrived before an abort depends on the reads, and the glue drops it
    # anyway: compare aborted messages without their content.
    events: list[Event] = []
    for event in merged(session.events):
        if isinstance(event, MessageAborted) and events and isinstance(events[-1], MessageData):
            events.pop()
        events.append(event)
    return list(events), bytes(session.output)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_split_gives_the_same_session(name: str) -> None:
    data, config = SAMPLES[name]
    reference = _outcome(run([data], config=config))
    assert _outcome(run(split_every(data, 1), config=config)) == reference
    for cut in range(1, len(data)):
        assert _outcome(run([data[:cut], data[cut:]], config=config)) == reference, cut
