from __future__ import annotations

import pytest

from postar.auth.directory import (
    MAX_ALIAS_DEPTH,
    AliasLoopError,
    Directory,
    DirectoryError,
    InvalidAddress,
    normalize_address,
    split_detail,
)
from postar.auth.passwords import verify_password
from postar.store.model import Account, Domain
from tests.unit.auth.auth_fakes import FAST_HASHER, FakeStore


@pytest.fixture
async def d() -> tuple[Directory, FakeStore]:
    store = FakeStore()
    directory = Directory(store, hasher=FAST_HASHER)
    await directory.create_domain("Example.COM.")
    await directory.create_domain("other.org", catch_all="postmaster@example.com")
    for name in ("alice", "bob", "carol", "postmaster"):
        await directory.create_user(f"{name}@example.com", "pw-" + name)
    return directory, store


def addresses(accounts: tuple[Account, ...]) -> list[str]:
    return [a.address for a in accounts]


def test_normalize_address() -> None:
    assert normalize_address(" Alice@Example.COM. ") == "alice@example.com"
    assert normalize_address("bücher@Bücher.example") == "bücher@xn--bcher-kva.example"
    for bad in ("alice", "@example.com", "alice@", ""):
        with pytest.raises(InvalidAddress):
            normalize_address(bad)
    assert split_detail("alice+news+x") == ("alice", "news+x")
    assert split_detail("+news") == ("+news", None)


async def test_local_domain(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    assert await directory.is_local_domain("EXAMPLE.com")
    assert not await directory.is_local_domain("example.net")
    assert not await directory.is_local_domain("")


async def test_account_and_unknown(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    r = await directory.resolve_recipient("Alice@EXAMPLE.com")
    assert r is not None and addresses(r.accounts) == ["alice@example.com"]
    assert r.detail is None and r.remote == () and not r.via_catch_all
    assert await directory.resolve_recipient("nobody@example.com") is None
    assert await directory.resolve_recipient("alice@example.net") is None  # not our domain


async def test_lookup_tells_a_foreign_domain_from_an_unknown_user(
    d: tuple[Directory, FakeStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, store = d
    asked: list[str] = []
    real = store.get_domain

    async def get_domain(name: str) -> Domain | None:
        asked.append(name)
        return await real(name)

    monkeypatch.setattr(store, "get_domain", get_domain)
    local, r = await directory.lookup_recipient("Alice@EXAMPLE.com")
    assert local and r is not None and addresses(r.accounts) == ["alice@example.com"]
    assert asked == ["example.com"]  # RCPT costs one domain lookup, not one per step
    assert await directory.lookup_recipient("nobody@example.com") == (True, None)
    assert await directory.lookup_recipient("alice@example.net") == (False, None)


async def test_plus_addressing(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    r = await directory.resolve_recipient("alice+News@example.com")
    assert r is not None and addresses(r.accounts) == ["alice@example.com"]
    assert r.detail == "news" and r.address == "alice+news@example.com"
    await directory.create_alias("team@example.com", ["bob@example.com"])
    r = await directory.resolve_recipient("team+x@example.com")
    assert r is not None and addresses(r.accounts) == ["bob@example.com"] and r.detail == "x"
    assert await directory.resolve_recipient("nobody+x@example.com") is None


async def test_exact_plus_alias_wins(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    await directory.create_alias("alice+spam@example.com", ["carol@example.com"])
    r = await directory.resolve_recipient("alice+spam@example.com")
    assert r is not None and addresses(r.accounts) == ["carol@example.com"]
    assert r.detail is None


async def test_alias_fan_out_local_and_remote(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    await directory.create_alias("sales@example.com", ["bob@example.com", "team@example.com"])
    await directory.create_alias(
        "team@example.com", ["Carol@example.com", "bob@example.com", "Ext@Partner.net"]
    )
    r = await directory.resolve_recipient("sales@example.com")
    assert r is not None
    assert addresses(r.accounts) == ["bob@example.com", "carol@example.com"]  # bob once
    assert r.remote == ("ext@partner.net",)


async def test_alias_target_detail_falls_back(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    await directory.create_alias("lists@example.com", ["alice+lists@example.com"])
    r = await directory.resolve_recipient("lists@example.com")
    assert r is not None and addresses(r.accounts) == ["alice@example.com"]


async def test_alias_dangling_target_dropped(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    await directory.create_alias("old@example.com", ["gone@example.com"])
    assert await directory.resolve_recipient("old@example.com") is None
    await directory.create_alias("mixed@example.com", ["gone@example.com", "bob@example.com"])
    r = await directory.resolve_recipient("mixed@example.com")
    assert r is not None and addresses(r.accounts) == ["bob@example.com"]


async def test_alias_loop(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    await directory.create_alias("a@example.com", ["b@example.com"])
    await directory.create_alias("b@example.com", ["a@example.com"])
    with pytest.raises(AliasLoopError):
        await directory.resolve_recipient("a@example.com")
    # A loop beside a real target is skipped, not fatal.
    await directory.create_alias("c@example.com", ["a@example.com", "alice@example.com"])
    r = await directory.resolve_recipient("c@example.com")
    assert r is not None and addresses(r.accounts) == ["alice@example.com"]


async def test_alias_chain_depth_limit(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    for n in range(MAX_ALIAS_DEPTH + 2):
        await directory.create_alias(f"l{n}@example.com", [f"l{n + 1}@example.com"])
    await directory.create_alias(f"l{MAX_ALIAS_DEPTH + 2}@example.com", ["alice@example.com"])
    with pytest.raises(AliasLoopError):
        await directory.resolve_recipient("l0@example.com")
    r = await directory.resolve_recipient("l5@example.com")
    assert r is not None and addresses(r.accounts) == ["alice@example.com"]


async def test_catch_all(d: tuple[Directory, FakeStore]) -> None:
    directory, store = d
    r = await directory.resolve_recipient("whoever@other.org")
    assert r is not None and r.via_catch_all
    assert addresses(r.accounts) == ["postmaster@example.com"]
    # No catch-all on example.com: unknown stays unknown.
    assert store.domains["example.com"].catch_all is None
    assert await directory.resolve_recipient("whoever@example.com") is None


async def test_create_user_rules(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    with pytest.raises(DirectoryError, match="domain"):
        await directory.create_user("x@nowhere.example", "pw")
    with pytest.raises(DirectoryError, match="already"):
        await directory.create_user("ALICE@example.com", "pw")
    with pytest.raises(DirectoryError, match=r"\+"):
        await directory.create_user("a+b@example.com", "pw")
    with pytest.raises(DirectoryError, match="empty"):
        await directory.create_user("new@example.com", "")
    account = await directory.create_user("New@Example.com", "s3cret")
    assert account.address == "new@example.com"
    assert verify_password(account.password_hash, "s3cret", FAST_HASHER)
    assert account.scram is not None and account.scram.iterations >= 4096


async def test_change_password_and_remove(d: tuple[Directory, FakeStore]) -> None:
    directory, store = d
    old_scram = store.accounts["bob@example.com"].scram
    await directory.change_password("Bob@example.com", "new-pw")
    account = store.accounts["bob@example.com"]
    assert verify_password(account.password_hash, "new-pw", FAST_HASHER)
    assert account.scram != old_scram
    await directory.remove_user("bob@example.com")
    assert await directory.resolve_recipient("bob@example.com") is None
    with pytest.raises(DirectoryError):
        await directory.remove_user("bob@example.com")
    with pytest.raises(DirectoryError):
        await directory.change_password("bob@example.com", "x")


async def test_alias_management_rules(d: tuple[Directory, FakeStore]) -> None:
    directory, _ = d
    with pytest.raises(DirectoryError, match="account"):
        await directory.create_alias("alice@example.com", ["bob@example.com"])
    with pytest.raises(DirectoryError, match="target"):
        await directory.create_alias("x@example.com", [])
    with pytest.raises(DirectoryError, match="own target"):
        await directory.create_alias("x@example.com", ["X@example.com"])
    alias = await directory.create_alias("x@example.com", ["Bob@example.com", "bob@example.com"])
    assert alias.targets == ("bob@example.com",)
    await directory.remove_alias("X@example.com")
    with pytest.raises(DirectoryError):
        await directory.remove_alias("x@example.com")
