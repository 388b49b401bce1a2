"""Domains, accounts and aliases of the SQLite store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from postar.store import names
from postar.store.interface import (
    AlreadyExists,
    InvalidName,
    NotFound,
    StoreError,
)
from postar.store.model import (
    DEFAULT_FOLDERS,
    Account,
    Alias,
    Domain,
    ScramSecrets,
)
from postar.store.sqlite import ops, rows
from postar.store.sqlite.base import SQLiteBase
from postar.store.sqlite.writer import Tx


class DirectoryOps(SQLiteBase):
    # ---- domains ----------------------------------------------------------------------------
    async def add_domain(self, name: str, catch_all: str | None = None) -> Domain:
        domain = Domain(name.strip().lower(), catch_all)
        if not domain.name:
            raise InvalidName("empty domain name")

        def job(tx: Tx) -> Domain:
            if tx.one("SELECT 1 FROM domains WHERE name = ?", (domain.name,)):
                raise AlreadyExists(f"domain {domain.name} exists")
            tx.execute(
                "INSERT INTO domains (name, catch_all) VALUES (?, ?)", (domain.name, catch_all)
            )
            return domain

        return await self._write(job)

    async def get_domain(self, name: str) -> Domain | None:
        def read(conn: sqlite3.Connection) -> Domain | None:
            row = conn.execute(
                "SELECT name, catch_all FROM domains WHERE name = ?", (name.strip().lower(),)
            ).fetchone()
            return rows.domain(row) if row else None

        return self._read_point(read)

    async def set_catch_all(self, name: str, catch_all: str | None) -> None:
        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE domains SET catch_all = ? WHERE name = ?", (catch_all, name.strip().lower())
            )
            if cur.rowcount == 0:
                raise NotFound(f"no domain {name}")

        await self._write(job)

    async def list_domains(self) -> list[Domain]:
        return await self._read(
            lambda conn: [
                rows.domain(r)
                for r in conn.execute("SELECT name, catch_all FROM domains ORDER BY name")
            ]
        )

    async def remove_domain(self, name: str) -> None:
        key = name.strip().lower()

        def job(tx: Tx) -> None:
            if not tx.one("SELECT 1 FROM domains WHERE name = ?", (key,)):
                raise NotFound(f"no domain {key}")
            if tx.one("SELECT 1 FROM accounts WHERE domain = ? LIMIT 1", (key,)) or tx.one(
                "SELECT 1 FROM aliases WHERE domain = ? LIMIT 1", (key,)
            ):
                raise StoreError(f"domain {key} still has accounts or aliases")
            tx.execute("DELETE FROM domains WHERE name = ?", (key,))

        await self._write(job)

    # ---- accounts ---------------------------------------------------------------------------
    async def add_account(
        self,
        address: str,
        password_hash: str,
        scram: ScramSecrets | None,
        quota_bytes: int = 0,
    ) -> Account:
        """The address's domain must exist (NotFound otherwise). quota_bytes 0 takes the
        configured default quota; set_quota(address, 0) afterwards makes it unlimited."""
        addr, domain = names.address(address)
        quota = quota_bytes or self.default_quota

        def job(tx: Tx) -> Account:
            if not tx.one("SELECT 1 FROM domains WHERE name = ?", (domain,)):
                raise NotFound(f"no domain {domain}")
            if tx.one("SELECT 1 FROM accounts WHERE address = ?", (addr,)) or tx.one(
                "SELECT 1 FROM aliases WHERE address = ?", (addr,)
            ):
                raise AlreadyExists(f"{addr} exists")
            account_id = int(
                tx.one(
                    "INSERT INTO accounts (address, domain, password_hash, scram_salt, "
                    "scram_iterations, scram_stored_key, scram_server_key, quota_bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (addr, domain, password_hash, *rows.scram_params(scram), quota),
                )[0]
            )
            for folder, special_use in DEFAULT_FOLDERS:
                ops.insert_mailbox(tx, account_id, folder, special_use)
                tx.execute(
                    "INSERT INTO subscriptions (account_id, name) VALUES (?, ?)",
                    (account_id, folder),
                )
            return Account(account_id, addr, domain, password_hash, scram, quota)

        return await self._write(job)

    async def get_account(self, address: str) -> Account | None:
        key = address.strip().lower()

        def read(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {rows.ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (key,)
            ).fetchone()
            return rows.account(row) if row else None

        return self._read_point(read)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        def read(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                f"SELECT {rows.ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            return rows.account(row) if row else None

        return self._read_point(read)

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def read(conn: sqlite3.Connection) -> list[Account]:
            if domain is None:
                cur = conn.execute(f"SELECT {rows.ACCOUNT_COLUMNS} FROM accounts ORDER BY address")
            else:
                cur = conn.execute(
                    f"SELECT {rows.ACCOUNT_COLUMNS} FROM accounts WHERE domain = ? "
                    "ORDER BY address",
                    (domain.strip().lower(),),
                )
            return [rows.account(r) for r in cur]

        return await self._read(read)

    async def set_password(
        self, address: str, password_hash: str, scram: ScramSecrets | None
    ) -> None:
        key = address.strip().lower()

        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE accounts SET password_hash = ?, scram_salt = ?, scram_iterations = ?, "
                "scram_stored_key = ?, scram_server_key = ? WHERE address = ?",
                (password_hash, *rows.scram_params(scram), key),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account {key}")

        await self._write(job)

    async def set_quota(self, address: str, quota_bytes: int) -> None:
        key = address.strip().lower()

        def job(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE accounts SET quota_bytes = ? WHERE address = ?", (quota_bytes, key)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no account {key}")

        await self._write(job)

    async def remove_account(self, address: str) -> None:
        key = address.strip().lower()

        def job(tx: Tx) -> None:
            row = tx.one("SELECT id FROM accounts WHERE address = ?", (key,))
            if row is None:
                raise NotFound(f"no account {key}")
            account_id = int(row[0])
            for (mailbox_id,) in tx.execute(
                "SELECT id FROM mailboxes WHERE account_id = ?", (account_id,)
            ).fetchall():
                ops.drop_mailbox(tx, account_id, mailbox_id)
            tx.execute("DELETE FROM subscriptions WHERE account_id = ?", (account_id,))
            tx.execute("DELETE FROM accounts WHERE id = ?", (account_id,))

        await self._write(job)

    # ---- aliases ------------------------------------------------------------------------------
    async def add_alias(self, address: str, targets: Sequence[str]) -> Alias:
        addr, domain = names.address(address)
        alias = Alias(addr, tuple(t.strip() for t in targets))
        if not alias.targets:
            raise InvalidName(f"alias {addr} has no targets")

        def job(tx: Tx) -> Alias:
            if not tx.one("SELECT 1 FROM domains WHERE name = ?", (domain,)):
                raise NotFound(f"no domain {domain}")
            if tx.one("SELECT 1 FROM aliases WHERE address = ?", (addr,)) or tx.one(
                "SELECT 1 FROM accounts WHERE address = ?", (addr,)
            ):
                raise AlreadyExists(f"{addr} exists")
            tx.execute(
                "INSERT INTO aliases (address, domain, targets) VALUES (?, ?, ?)",
                (addr, domain, json.dumps(list(alias.targets))),
            )
            return alias

        return await self._write(job)

    async def get_alias(self, address: str) -> Alias | None:
        key = address.strip().lower()

        def read(conn: sqlite3.Connection) -> Alias | None:
            row = conn.execute(
                "SELECT address, targets FROM aliases WHERE address = ?", (key,)
            ).fetchone()
            return rows.alias(row) if row else None

        return self._read_point(read)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def read(conn: sqlite3.Connection) -> list[Alias]:
            if domain is None:
                cur = conn.execute("SELECT address, targets FROM aliases ORDER BY address")
            else:
                cur = conn.execute(
                    "SELECT address, targets FROM aliases WHERE domain = ? ORDER BY address",
                    (domain.strip().lower(),),
                )
            return [rows.alias(r) for r in cur]

        return await self._read(read)

    async def remove_alias(self, address: str) -> None:
        key = address.strip().lower()

        def job(tx: Tx) -> None:
            if tx.execute("DELETE FROM aliases WHERE address = ?", (key,)).rowcount == 0:
                raise NotFound(f"no alias {key}")

        await self._write(job)
