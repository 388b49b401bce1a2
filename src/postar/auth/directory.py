"""Who receives mail for an address, and the account management the CLI calls.

Address normalisation (normalize_address):
- The domain is lower-cased, a trailing dot dropped, and an IDN converted to its A-label, as
  model.Domain stores it (RFC 5321 section 2.4: domains are case-insensitive).
- The local part is lower-cased too. RFC 5321 section 2.4 lets a server treat it as case-
  sensitive, but like Postfix, Dovecot and most hosted mail we treat Alice@ and alice@ as one
  mailbox: users type their address in every case imaginable.

Resolution (resolve_recipient), in this order:
1. an account or alias with exactly this address;
2. plus-addressing: "alice+news@d" falls back to "alice@d" (an account or an alias), keeping
   "news" as ResolvedRecipient.detail;
3. the domain's catch-all address (Domain.catch_all), itself resolved like an alias target;
4. otherwise None (SMTP answers 550 5.1.1).
Aliases fan out to local accounts and remote addresses. Chains are followed up to
MAX_ALIAS_DEPTH; a target already on the current chain is a loop and is skipped. If nothing is
left but loops (or the chain is too deep), AliasLoopError: SMTP answers 550 5.4.6, "routing loop
detected" (RFC 3463 section 3.5). Alias targets that name no local account are dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from argon2 import PasswordHasher

from postar.auth.passwords import derive_scram_secrets, hash_password
from postar.store.model import Account, Alias, Domain, ScramSecrets

PLUS_SEPARATOR = "+"
MAX_ALIAS_DEPTH = 10
# A bound on the work one RCPT can cause (a big alias tree costs one store lookup per node).
MAX_EXPANSION = 1000


class DirectoryStore(Protocol):
    """The Store methods the directory uses (store.interface.Store provides them)."""

    async def get_domain(self, name: str) -> Domain | None: ...
    async def add_domain(self, name: str, catch_all: str | None = None) -> Domain: ...
    async def get_account(self, address: str) -> Account | None: ...
    async def add_account(
        self,
        address: str,
        password_hash: str,
        scram: ScramSecrets | None,
        quota_bytes: int = 0,
    ) -> Account: ...
    async def set_password(
        self, address: str, password_hash: str, scram: ScramSecrets | None
    ) -> None: ...
    async def remove_account(self, address: str) -> None: ...
    async def get_alias(self, address: str) -> Alias | None: ...
    async def add_alias(self, address: str, targets: Sequence[str]) -> Alias: ...
    async def remove_alias(self, address: str) -> None: ...


class DirectoryError(ValueError):
    """A request the directory refuses; the message is fit for the CLI user."""


class InvalidAddress(DirectoryError):
    pass


class AliasLoopError(DirectoryError):
    """The alias chain loops or is deeper than MAX_ALIAS_DEPTH."""


@dataclass(frozen=True)
class ResolvedRecipient:
    address: str  # the normalised address as given (with its +detail)
    accounts: tuple[Account, ...] = ()  # local mailboxes, each once, in discovery order
    remote: tuple[str, ...] = ()  # addresses in other domains, each once
    detail: str | None = None  # "news" for alice+news@, when the plus rule applied
    via_catch_all: bool = False


def normalize_address(address: str) -> str:
    """lower-case local@a-label-domain; InvalidAddress if it is not local@domain."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress(f"not an address: {address!r}")
    return f"{local.lower()}@{normalize_domain(domain)}"


def normalize_domain(domain: str) -> str:
    name = domain.strip().rstrip(".").lower()
    if not name:
        raise InvalidAddress("empty domain")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidAddress(f"not a valid domain: {domain!r}") from exc
    return name


def split_detail(local: str) -> tuple[str, str | None]:
    """("alice", "news") for "alice+news": the first "+" splits (Postfix's recipient_delimiter)."""
    base, sep, detail = local.partition(PLUS_SEPARATOR)
    if not sep or not base:
        return local, None
    return base, detail


@dataclass
class _Expansion:
    accounts: dict[int, Account] = field(default_factory=dict)
    remote: dict[str, None] = field(default_factory=dict)
    visited: set[str] = field(default_factory=set)
    loop: bool = False
    steps: int = 0
    domains: dict[str, Domain | None] = field(default_factory=dict)  # looked up so far


class Directory:
    def __init__(self, store: DirectoryStore, hasher: PasswordHasher | None = None) -> None:
        self._store = store
        self._hasher = hasher

    # ---- lookups -------------------------------------------------------------------------
    async def is_local_domain(self, domain: str) -> bool:
        try:
            name = normalize_domain(domain)
        except InvalidAddress:
            return False
        return await self._store.get_domain(name) is not None

    async def resolve_recipient(self, address: str) -> ResolvedRecipient | None:
        """Where mail for address goes; None if the domain is not ours or nobody is there."""
        return (await self.lookup_recipient(address))[1]

    async def lookup_recipient(self, address: str) -> tuple[bool, ResolvedRecipient | None]:
        """(is the address's domain ours, where mail for it goes): what RCPT needs to choose
        between 550 unknown user and the relay rules, from one set of lookups."""
        norm = normalize_address(address)
        local, _, domain_name = norm.rpartition("@")
        domain = await self._store.get_domain(domain_name)
        if domain is None:
            return False, None

        exp = _Expansion(domains={domain_name: domain})
        detail: str | None = None
        via_catch_all = False
        found = await self._expand(norm, (), exp)
        if not found:
            base, detail = split_detail(local)
            if detail is not None:
                found = await self._expand(f"{base}@{domain_name}", (), exp)
            if not found:
                detail = None
        if not found and domain.catch_all:
            via_catch_all = True
            found = await self._expand(normalize_address(domain.catch_all), (), exp)
        if not exp.accounts and not exp.remote:
            if exp.loop:
                raise AliasLoopError(f"alias loop or chain too deep for {norm}")
            return True, None
        return True, ResolvedRecipient(
            address=norm,
            accounts=tuple(exp.accounts.values()),
            remote=tuple(exp.remote),
            detail=detail,
            via_catch_all=via_catch_all,
        )

    async def _expand(self, address: str, chain: tuple[str, ...], exp: _Expansion) -> bool:
        """Add what address delivers to; False if it names nothing (so fallbacks apply)."""
        if address in chain or len(chain) >= MAX_ALIAS_DEPTH:
            exp.loop = True
            return True
        exp.steps += 1
        if exp.steps > MAX_EXPANSION:
            raise AliasLoopError(f"alias expansion exceeds {MAX_EXPANSION} addresses")
        if address in exp.visited:
            # Reached twice through different branches (a diamond): already expanded.
            return True
        domain_name = domain_of(address)
        if domain_name not in exp.domains:  # one lookup per domain and resolution
            exp.domains[domain_name] = await self._store.get_domain(domain_name)
        if exp.domains[domain_name] is None:
            exp.visited.add(address)
            exp.remote[address] = None
            return True
        account = await self._store.get_account(address)
        if account is not None:
            exp.visited.add(address)
            exp.accounts.setdefault(account.id, account)
            return True
        alias = await self._store.get_alias(address)
        if alias is not None:
            exp.visited.add(address)
            for target in alias.targets:
                try:
                    norm_target = normalize_address(target)
                except InvalidAddress:
                    continue
                if not await self._expand(norm_target, (*chain, address), exp):
                    # An alias target's +detail falls back like a recipient's does.
                    base, detail = split_detail(norm_target.rpartition("@")[0])
                    if detail is not None:
                        await self._expand(f"{base}@{domain_of(norm_target)}", chain, exp)
            return True
        return False

    # ---- management (the CLI) --------------------------------------------------------------
    async def create_domain(self, name: str, catch_all: str | None = None) -> Domain:
        norm_catch_all = normalize_address(catch_all) if catch_all else None
        return await self._store.add_domain(normalize_domain(name), norm_catch_all)

    async def create_user(self, address: str, password: str, quota_bytes: int = 0) -> Account:
        """A new account with its argon2id hash and SCRAM-SHA-256 verifier."""
        norm = await self._check_new_address(address)
        if PLUS_SEPARATOR in norm.rpartition("@")[0]:
            raise DirectoryError(f"{norm}: '+' is the detail separator, not part of a name")
        password_hash, scram = await self._secrets(password)
        return await self._store.add_account(norm, password_hash, scram, quota_bytes)

    async def change_password(self, address: str, password: str) -> None:
        norm = normalize_address(address)
        if await self._store.get_account(norm) is None:
            raise DirectoryError(f"no account {norm}")
        password_hash, scram = await self._secrets(password)
        await self._store.set_password(norm, password_hash, scram)

    async def remove_user(self, address: str) -> None:
        norm = normalize_address(address)
        if await self._store.get_account(norm) is None:
            raise DirectoryError(f"no account {norm}")
        await self._store.remove_account(norm)

    async def create_alias(self, address: str, targets: Sequence[str]) -> Alias:
        norm = await self._check_new_address(address)
        norm_targets = tuple(dict.fromkeys(normalize_address(t) for t in targets))
        if not norm_targets:
            raise DirectoryError("an alias needs at least one target")
        if norm in norm_targets:
            raise DirectoryError(f"{norm} cannot be its own target")
        return await self._store.add_alias(norm, norm_targets)

    async def remove_alias(self, address: str) -> None:
        norm = normalize_address(address)
        if await self._store.get_alias(norm) is None:
            raise DirectoryError(f"no alias {norm}")
        await self._store.remove_alias(norm)

    async def _check_new_address(self, address: str) -> str:
        norm = normalize_address(address)
        domain = domain_of(norm)
        if await self._store.get_domain(domain) is None:
            raise DirectoryError(f"domain {domain} does not exist; add it first")
        if await self._store.get_account(norm) is not None:
            raise DirectoryError(f"{norm} is already an account")
        if await self._store.get_alias(norm) is not None:
            raise DirectoryError(f"{norm} is already an alias")
        return norm

    async def _secrets(self, password: str) -> tuple[str, ScramSecrets]:
        if not password:
            raise DirectoryError("empty password")
        # Both derivations are deliberately slow; keep them off the event loop.
        password_hash = await asyncio.to_thread(hash_password, password, self._hasher)
        scram = await asyncio.to_thread(derive_scram_secrets, password)
        return password_hash, scram


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]
