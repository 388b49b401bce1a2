"""The store suite runs against every backend through the Store interface.

A backend joins through store_helpers (BACKENDS, make_store); tests that need a
backend's internals (files, schema) live in test_store_sqlite_*.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from postar.store.interface import Store
from postar.store.model import Account
from tests.unit.store.store_helpers import BACKENDS, StoreFactory, make_store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(backend: str, tmp_path: Path) -> StoreFactory:
    """Builds (unopened) stores on the same data, for close-and-reopen tests."""

    def factory(**options: Any) -> Store:
        return make_store(backend, tmp_path / "data", **options)

    return factory


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[Store]:
    s = store_factory()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def alice(store: Store) -> Account:
    await store.add_domain("example.org")
    return await store.add_account("alice@example.org", "$argon2id$fake", None)


@pytest.fixture
async def bob(store: Store, alice: Account) -> Account:
    return await store.add_account("bob@example.org", "$argon2id$fake", None)
