"""Domains, accounts and aliases."""

from __future__ import annotations

import pytest

from postar.store.interface import AlreadyExists, InvalidName, NotFound, Store, StoreError
from postar.store.model import DEFAULT_FOLDERS, Account, ScramSecrets
from tests.unit.store.store_helpers import StoreFactory


async def test_domains(store: Store) -> None:
    await store.add_domain("Example.ORG")
    await store.add_domain("example.net", catch_all="postmaster@example.net")
    with pytest.raises(AlreadyExists):
        await store.add_domain("example.org")
    assert [d.name for d in await store.list_domains()] == ["example.net", "example.org"]
    domain = await store.get_domain("EXAMPLE.net")
    assert domain is not None and domain.catch_all == "postmaster@example.net"
    await store.set_catch_all("example.net", None)
    assert (await store.get_domain("example.net")).catch_all is None  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        await store.set_catch_all("nowhere.test", "x@nowhere.test")
    await store.remove_domain("example.net")
    assert await store.get_domain("example.net") is None


async def test_domain_in_use_cannot_be_removed(store: Store, alice: Account) -> None:
    with pytest.raises(StoreError):
        await store.remove_domain("example.org")
    await store.remove_account(alice.address)
    await store.add_alias("sales@example.org", ["bob@example.net"])
    with pytest.raises(StoreError):
        await store.remove_domain("example.org")
    await store.remove_alias("sales@example.org")
    await store.remove_domain("example.org")


async def test_account_gets_default_folders_subscribed(store: Store, alice: Account) -> None:
    mailboxes = await store.list_mailboxes(alice.id)
    by_name = {m.name: m for m in mailboxes}
    assert set(by_name) == {name for name, _ in DEFAULT_FOLDERS}
    for name, special_use in DEFAULT_FOLDERS:
        assert by_name[name].special_use == special_use
        assert by_name[name].subscribed
    assert sorted(await store.list_subscriptions(alice.id)) == sorted(n for n, _ in DEFAULT_FOLDERS)
    assert [m.name for m in mailboxes] == sorted(m.name for m in mailboxes)


async def test_account_lookup_and_updates(store: Store) -> None:
    await store.add_domain("example.org")
    scram = ScramSecrets(b"salt", 4096, b"stored", b"server")
    created = await store.add_account("Alice@Example.org", "$argon2id$one", scram, 1000)
    assert created.address == "alice@example.org" and created.domain == "example.org"
    assert await store.get_account("ALICE@example.org") == created
    assert await store.get_account_by_id(created.id) == created
    with pytest.raises(AlreadyExists):
        await store.add_account("alice@example.org", "x", None)
    await store.set_password("alice@example.org", "$argon2id$two", None)
    await store.set_quota("alice@example.org", 5000)
    updated = await store.get_account("alice@example.org")
    assert updated is not None
    assert (updated.password_hash, updated.scram, updated.quota_bytes) == (
        "$argon2id$two",
        None,
        5000,
    )
    assert await store.quota_usage(created.id) == (0, 5000)
    with pytest.raises(NotFound):
        await store.set_password("nobody@example.org", "x", None)
    with pytest.raises(NotFound):
        await store.add_account("carol@unknown.test", "x", None)
    with pytest.raises(InvalidName):
        await store.add_account("no-at-sign", "x", None)


async def test_list_accounts_by_domain(store: Store) -> None:
    await store.add_domain("example.org")
    await store.add_domain("example.net")
    await store.add_account("b@example.org", "x", None)
    await store.add_account("a@example.org", "x", None)
    await store.add_account("c@example.net", "x", None)
    assert [a.address for a in await store.list_accounts()] == [
        "a@example.org",
        "b@example.org",
        "c@example.net",
    ]
    assert [a.address for a in await store.list_accounts("example.org")] == [
        "a@example.org",
        "b@example.org",
    ]


async def test_remove_account(store: Store, alice: Account) -> None:
    await store.remove_account("alice@example.org")
    assert await store.get_account("alice@example.org") is None
    assert await store.list_mailboxes(alice.id) == []
    with pytest.raises(NotFound):
        await store.remove_account("alice@example.org")


async def test_default_quota_applies_to_new_accounts(store_factory: StoreFactory) -> None:
    store = store_factory(default_quota=12345)
    await store.open()
    try:
        await store.add_domain("example.org")
        account = await store.add_account("q@example.org", "x", None)
        assert account.quota_bytes == 12345
        explicit = await store.add_account("r@example.org", "x", None, quota_bytes=99)
        assert explicit.quota_bytes == 99
    finally:
        await store.close()


async def test_aliases(store: Store, alice: Account) -> None:
    alias = await store.add_alias("Sales@example.org", ["alice@example.org", "x@remote.test"])
    assert alias.address == "sales@example.org"
    assert await store.get_alias("sales@EXAMPLE.org") == alias
    with pytest.raises(AlreadyExists):
        await store.add_alias("sales@example.org", ["a@b.c"])
    with pytest.raises(AlreadyExists):  # an alias may not shadow an account
        await store.add_alias("alice@example.org", ["a@b.c"])
    with pytest.raises(NotFound):
        await store.add_alias("x@unknown.test", ["a@b.c"])
    await store.add_domain("example.net")
    await store.add_alias("info@example.net", ["alice@example.org"])
    assert [a.address for a in await store.list_aliases("example.org")] == ["sales@example.org"]
    assert len(await store.list_aliases()) == 2
    await store.remove_alias("sales@example.org")
    assert await store.get_alias("sales@example.org") is None
    with pytest.raises(NotFound):
        await store.remove_alias("sales@example.org")
