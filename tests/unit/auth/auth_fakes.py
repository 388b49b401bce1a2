"""A small in-memory stand-in for the few Store methods postar.auth calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from argon2 import PasswordHasher

from postar.store.interface import AlreadyExists, NotFound, StoreError
from postar.store.model import Account, Alias, Domain, ScramSecrets

# Cheap argon2id parameters so tests run fast; production uses argon2-cffi's defaults.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


class FakeStore:
    def __init__(self) -> None:
        self.domains: dict[str, Domain] = {}
        self.accounts: dict[str, Account] = {}
        self.aliases: dict[str, Alias] = {}
        self.fail_lookups = False  # simulate an unavailable store
        self.lookups = 0
        self._next_id = 1

    async def add_domain(self, name: str, catch_all: str | None = None) -> Domain:
        if name in self.domains:
            raise AlreadyExists(name)
        self.domains[name] = Domain(name, catch_all)
        return self.domains[name]

    async def get_domain(self, name: str) -> Domain | None:
        return self.domains.get(name)

    async def add_account(
        self,
        address: str,
        password_hash: str,
        scram: ScramSecrets | None,
        quota_bytes: int = 0,
    ) -> Account:
        if address in self.accounts:
            raise AlreadyExists(address)
        account = Account(
            id=self._next_id,
            address=address,
            domain=address.rpartition("@")[2],
            password_hash=password_hash,
            scram=scram,
            quota_bytes=quota_bytes,
        )
        self._next_id += 1
        self.accounts[address] = account
        return account

    async def get_account(self, address: str) -> Account | None:
        self.lookups += 1
        if self.fail_lookups:
            raise StoreError("database is locked")
        return self.accounts.get(address)

    async def set_password(
        self, address: str, password_hash: str, scram: ScramSecrets | None
    ) -> None:
        if address not in self.accounts:
            raise NotFound(address)
        self.accounts[address] = replace(
            self.accounts[address], password_hash=password_hash, scram=scram
        )

    async def remove_account(self, address: str) -> None:
        if self.accounts.pop(address, None) is None:
            raise NotFound(address)

    async def get_alias(self, address: str) -> Alias | None:
        return self.aliases.get(address)

    async def add_alias(self, address: str, targets: Sequence[str]) -> Alias:
        if address in self.aliases:
            raise AlreadyExists(address)
        self.aliases[address] = Alias(address, tuple(targets))
        return self.aliases[address]

    async def remove_alias(self, address: str) -> None:
        if self.aliases.pop(address, None) is None:
            raise NotFound(address)

    def disable(self, address: str) -> None:
        self.accounts[address] = replace(self.accounts[address], disabled=True)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
