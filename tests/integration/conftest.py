"""Fixtures that start a real server; see tests/support/server.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import DOMAIN, PostarServer


@pytest.fixture
def postar(tmp_path: Path) -> Iterator[PostarServer]:
    """A running server with the domain example.test and the users alice and bob."""
    server = PostarServer(tmp_path)
    server.add_domain(DOMAIN)
    server.add_user(f"alice@{DOMAIN}")
    server.add_user(f"bob@{DOMAIN}")
    server.start()
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, f"server exited with {code}:\n{server.log()[-3000:]}"
