"""Shared fixtures for the network layer tests: test certificates, servers on loopback
ports picked per test, and both event loops.

Every async test here runs on asyncio's default loop and on uvloop (libraries.md: test on
both loops). Without uvloop installed the uvloop variant is skipped; POSTAR_TEST_LOOPS=asyncio
(or =uvloop) runs one of them only.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import Callable, Mapping

import pytest
import trustme

# The test modules import net_helpers (plain functions, not fixtures) by name. This folder
# is on sys.path under pytest's "prepend" import mode but not under "importlib", so put it
# there for either mode; conftest.py is loaded before the modules beside it.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

try:
    import uvloop
except ImportError:  # pragma: no cover - depends on the machine
    uvloop = None  # type: ignore[assignment]


def _uvloop_missing() -> asyncio.AbstractEventLoop:
    pytest.skip("uvloop is not installed")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop,
        "uvloop": uvloop.new_event_loop if uvloop is not None else _uvloop_missing,
    }
    wanted = os.environ.get("POSTAR_TEST_LOOPS")
    if wanted:
        names = {n.strip() for n in wanted.split(",")}
        factories = {k: v for k, v in factories.items() if k in names} or factories
    return factories


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx
