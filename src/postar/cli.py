"""The `postar` command: serve, and manage domains, users, aliases, quotas and backups.

Management commands open the store directly; SQLite in WAL mode lets them run beside a
serving process, so `postar user add` works while the server is up.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from postar.auth.directory import Directory, DirectoryError
from postar.config import Config, ConfigError, load_config
from postar.store.interface import Store, StoreError, open_store_backend

T = TypeVar("T")

# Without --config, everything lives under ./postar-data (made on first `postar serve`).
DEFAULT_DATA_DIR = Path("postar-data")
DEFAULT_CONFIG_NAME = "postar.toml"


def _default_config_path() -> Path:
    env = os.environ.get("POSTAR_CONFIG")
    return Path(env) if env else DEFAULT_DATA_DIR / DEFAULT_CONFIG_NAME


class Context:
    def __init__(self, config_path: Path | None) -> None:
        self.explicit = config_path is not None
        self.config_path = config_path or _default_config_path()

    def config(self) -> Config:
        if not self.explicit and not self.config_path.exists():
            raise click.ClickException(
                f"no configuration at {self.config_path}: pass --config FILE, "
                "or run `postar serve` once to create one"
            )
        try:
            return load_config(self.config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc


pass_ctx = click.make_pass_decorator(Context)


def _run_with_store(ctx: Context, fn: Callable[[Store], Awaitable[T]]) -> T:
    config = ctx.config()

    async def main() -> T:
        # The documented contract: management commands work while `postar serve` runs.
        store = open_store_backend(config, beside_owner=True)
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (DirectoryError, StoreError) as exc:
        raise click.ClickException(str(exc)) from exc


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise click.ClickException("use --password-stdin to read the password from a pipe")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _parse_size(text: str) -> int:
    """'0', '500M', '2G', '1048576' -> bytes."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    t = text.strip().upper().removesuffix("B")
    mult = units.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in units else t
    try:
        value = float(number)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a size like 500M or 2G") from exc
    if value < 0:
        raise click.BadParameter("a size cannot be negative")
    return int(value * mult)


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML configuration file (default: ./postar-data/postar.toml or $POSTAR_CONFIG).",
)
@click.version_option(package_name="postar")
@click.pass_context
def main(click_ctx: click.Context, config_path: Path | None) -> None:
    """Postar: SMTP, POP3 (and soon IMAP and webmail) in one program."""
    click_ctx.obj = Context(config_path)


# ---- serve ----------------------------------------------------------------------------------
@main.command()
@pass_ctx
def serve(ctx: Context) -> None:
    """Run every configured service until SIGTERM or SIGINT."""
    from postar.app import serve_forever
    from postar.bootstrap import first_run
    from postar.log import setup_logging

    if not ctx.explicit and not ctx.config_path.exists():
        first_run(ctx.config_path, echo=click.echo)
    config = ctx.config()
    setup_logging(config.log_level)
    try:
        code = asyncio.run(serve_forever(config))
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


# ---- domains ----------------------------------------------------------------------------------
@main.group()
def domain() -> None:
    """Manage the domains this server receives mail for."""


@domain.command("add")
@click.argument("name")
@click.option("--catch-all", help="Address that receives mail for unknown names in the domain.")
@pass_ctx
def domain_add(ctx: Context, name: str, catch_all: str | None) -> None:
    from postar.queue.dkim import create_keys

    d = _run_with_store(ctx, lambda s: Directory(s).create_domain(name, catch_all))
    click.echo(f"domain {d.name} added")
    # RFC 6376: outbound mail is signed from the start; the keys' records come from `dns`.
    keys = create_keys(ctx.config().data_dir, d.name)
    click.echo(f"DKIM selectors {', '.join(k.selector for k in keys)}: see `postar dns {d.name}`")


@domain.command("list")
@pass_ctx
def domain_list(ctx: Context) -> None:
    for d in _run_with_store(ctx, lambda s: s.list_domains()):
        click.echo(d.name + (f"  catch-all={d.catch_all}" if d.catch_all else ""))


@domain.command("catch-all")
@click.argument("name")
@click.argument("address", required=False)
@pass_ctx
def domain_catch_all(ctx: Context, name: str, address: str | None) -> None:
    """Set (or, without ADDRESS, clear) the domain's catch-all address."""
    _run_with_store(ctx, lambda s: s.set_catch_all(name.lower(), address))
    click.echo(f"catch-all of {name}: {address or 'none'}")


@domain.command("remove")
@click.argument("name")
@pass_ctx
def domain_remove(ctx: Context, name: str) -> None:
    _run_with_store(ctx, lambda s: s.remove_domain(name.lower()))
    click.echo(f"domain {name} removed")


# ---- users ------------------------------------------------------------------------------------
@main.group()
def user() -> None:
    """Manage accounts (mailboxes with a login)."""


@user.command("add")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--quota", default="0", help="Storage quota, e.g. 2G (0 = unlimited).")
@pass_ctx
def user_add(ctx: Context, address: str, password_stdin: bool, quota: str) -> None:
    password = _read_password(password_stdin)
    quota_bytes = _parse_size(quota) or ctx.config().store.default_quota
    account = _run_with_store(
        ctx, lambda s: Directory(s).create_user(address, password, quota_bytes)
    )
    click.echo(f"user {account.address} added")


@user.command("list")
@click.option("--domain", "domain_name", help="Only this domain's accounts.")
@pass_ctx
def user_list(ctx: Context, domain_name: str | None) -> None:
    async def job(s: Store) -> list[tuple[Any, int]]:
        out = []
        for a in await s.list_accounts(domain_name.lower() if domain_name else None):
            used, _limit = await s.quota_usage(a.id)
            out.append((a, used))
        return out

    for account, used in _run_with_store(ctx, job):
        quota = f"{account.quota_bytes}" if account.quota_bytes else "unlimited"
        flag = "  disabled" if account.disabled else ""
        click.echo(f"{account.address}  used={used}  quota={quota}{flag}")


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_ctx
def user_passwd(ctx: Context, address: str, password_stdin: bool) -> None:
    password = _read_password(password_stdin)
    _run_with_store(ctx, lambda s: Directory(s).change_password(address, password))
    click.echo(f"password of {address} changed")


@user.command("quota")
@click.argument("address")
@click.argument("size")
@pass_ctx
def user_quota(ctx: Context, address: str, size: str) -> None:
    """Set the storage quota, e.g. 2G (0 = unlimited)."""
    _run_with_store(ctx, lambda s: s.set_quota(address.lower(), _parse_size(size)))
    click.echo(f"quota of {address}: {size}")


@user.command("remove")
@click.argument("address")
@pass_ctx
def user_remove(ctx: Context, address: str) -> None:
    _run_with_store(ctx, lambda s: Directory(s).remove_user(address))
    click.echo(f"user {address} removed")


# ---- aliases ----------------------------------------------------------------------------------
@main.group()
def alias() -> None:
    """Manage aliases: one address delivered to one or more others."""


@alias.command("add")
@click.argument("address")
@click.argument("targets", nargs=-1, required=True)
@pass_ctx
def alias_add(ctx: Context, address: str, targets: tuple[str, ...]) -> None:
    a = _run_with_store(ctx, lambda s: Directory(s).create_alias(address, targets))
    click.echo(f"alias {a.address} -> {', '.join(a.targets)}")


@alias.command("list")
@click.option("--domain", "domain_name", help="Only this domain's aliases.")
@pass_ctx
def alias_list(ctx: Context, domain_name: str | None) -> None:
    for a in _run_with_store(
        ctx, lambda s: s.list_aliases(domain_name.lower() if domain_name else None)
    ):
        click.echo(f"{a.address} -> {', '.join(a.targets)}")


@alias.command("remove")
@click.argument("address")
@pass_ctx
def alias_remove(ctx: Context, address: str) -> None:
    _run_with_store(ctx, lambda s: Directory(s).remove_alias(address))
    click.echo(f"alias {address} removed")


# ---- import -----------------------------------------------------------------------------------
@main.command("import")
@click.argument("address")
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option("--folder", default="INBOX", show_default=True, help="Folder to import into.")
@pass_ctx
def import_mail(ctx: Context, address: str, source: Path, folder: str) -> None:
    """Import an mbox file, a Maildir or a folder of .eml files into ADDRESS's FOLDER."""
    from postar.importer import import_messages

    result = _run_with_store(ctx, lambda s: import_messages(s, address, source, folder))
    rate = result.imported / result.seconds if result.seconds else 0.0
    click.echo(
        f"imported {result.imported} messages into {address} {folder} "
        f"in {result.seconds:.1f} s ({rate:.0f}/s)"
    )


# ---- backup and restore -------------------------------------------------------------------------
@main.command()
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
@pass_ctx
def backup(ctx: Context, dest: Path) -> None:
    """Copy the whole store into DEST, consistently, while the server may be running."""
    if dest.exists() and any(dest.iterdir()):
        raise click.ClickException(f"{dest} is not empty")
    _run_with_store(ctx, lambda s: s.backup(dest))
    click.echo(f"backup written to {dest}")


@main.command()
@click.argument("src", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Replace a data directory that is not empty.")
@pass_ctx
def restore(ctx: Context, src: Path, force: bool) -> None:
    """Take back a backup made by `postar backup` (stop the server first)."""
    from postar.store.backup import restore as restore_backup

    config = ctx.config()
    try:
        restore_backup(src, config.data_dir, force=force)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored {src} into {config.data_dir}")


# ---- outbound queue ---------------------------------------------------------------------------
@main.group()
def queue() -> None:
    """Inspect and steer the outbound queue (mail waiting to leave)."""


def _when(ts: float) -> str:
    import time

    from postar.store.model import QUEUE_HELD

    if ts == QUEUE_HELD:
        return "held"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@queue.command("list")
@pass_ctx
def queue_list(ctx: Context) -> None:
    entries = _run_with_store(ctx, lambda s: s.list_queue())
    for e in entries:
        rcpts = ", ".join(r.address for r in e.recipients)
        click.echo(
            f"{e.id}  {_when(e.created)}  attempts={e.attempts}  next={_when(e.next_attempt)}  "
            f"<{e.sender}> -> {rcpts}"
        )
        if e.last_error:
            click.echo(f"    last error: {e.last_error}")
    click.echo(f"{len(entries)} message(s) queued")


@queue.command("show")
@click.argument("entry_id", type=int)
@pass_ctx
def queue_show(ctx: Context, entry_id: int) -> None:
    """One entry's envelope, retry state and message header."""

    async def job(s: Store) -> tuple[Any, bytes]:
        e = await s.get_queue_entry(entry_id)
        if e is None:
            raise click.ClickException(f"no queue entry {entry_id}")
        return e, await s.read_blob(e.blob_id, 0, 64 * 1024)

    e, head = _run_with_store(ctx, job)
    click.echo(f"id: {e.id}\nsender: <{e.sender}>\ncreated: {_when(e.created)}")
    click.echo(f"attempts: {e.attempts}\nnext attempt: {_when(e.next_attempt)}")
    click.echo(f"last error: {e.last_error or '-'}")
    if e.ret or e.envid:
        click.echo(f"dsn: ret={e.ret or '-'} envid={e.envid or '-'}")
    for r in e.recipients:
        notify = f" notify={','.join(r.notify)}" if r.notify else ""
        click.echo(f"recipient: {r.address}{notify}")
    end = head.find(b"\r\n\r\n")
    click.echo("")
    click.echo(head[: end if end >= 0 else len(head)].decode("utf-8", "replace"))


@queue.command("retry")
@click.argument("entry_id", type=int)
@pass_ctx
def queue_retry(ctx: Context, entry_id: int) -> None:
    """Try this entry again now (the server picks it up within a second)."""
    import time

    _run_with_store(ctx, lambda s: s.reschedule_queue(time.time(), entry_id))
    click.echo(f"queue entry {entry_id} scheduled now")


@queue.command("delete")
@click.argument("entry_id", type=int)
@pass_ctx
def queue_delete(ctx: Context, entry_id: int) -> None:
    """Drop this entry without a bounce."""
    _run_with_store(ctx, lambda s: s.remove_queue_entry(entry_id))
    click.echo(f"queue entry {entry_id} deleted")


@queue.command("flush")
@pass_ctx
def queue_flush(ctx: Context) -> None:
    """Try every queued message again now."""
    import time

    count = _run_with_store(ctx, lambda s: s.reschedule_queue(time.time()))
    click.echo(f"{count} message(s) scheduled now")


def _one_or_all(entry_id: int | None, every: bool) -> int | None:
    if (entry_id is None) == (not every):
        raise click.UsageError("give one queue entry ID or --all")
    return entry_id


@queue.command("hold")
@click.argument("entry_id", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="Every queued message.")
@pass_ctx
def queue_hold(ctx: Context, entry_id: int | None, every: bool) -> None:
    """Keep a message (or all) in the queue, untried, until released (postsuper -h)."""
    target = _one_or_all(entry_id, every)
    count = _run_with_store(ctx, lambda s: s.hold_queue(target))
    click.echo(f"{count} message(s) held")


@queue.command("release")
@click.argument("entry_id", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="Every held message.")
@pass_ctx
def queue_release(ctx: Context, entry_id: int | None, every: bool) -> None:
    """Let held messages go, tried now (postsuper -H, then postqueue -f)."""
    import time

    target = _one_or_all(entry_id, every)
    count = _run_with_store(ctx, lambda s: s.release_queue(time.time(), target))
    click.echo(f"{count} message(s) released")


# ---- DNS records ------------------------------------------------------------------------------
@main.command("dns")
@click.argument("domain_name")
@pass_ctx
def dns_records(ctx: Context, domain_name: str) -> None:
    """Print the DNS records DOMAIN needs: MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV."""
    from postar.queue.dkim import load_keys
    from postar.queue.records import zone_text

    config = ctx.config()
    keys = load_keys(config.data_dir, domain_name)
    if not keys:
        click.echo(f"; no DKIM keys for {domain_name}: is it a domain (`postar domain add`)?")
    click.echo(zone_text(config, domain_name, keys), nl=False)
