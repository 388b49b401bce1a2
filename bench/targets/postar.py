"""Postar, started through its stable contract: a TOML config with hostname, data_dir and
[listen]; ``postar --config FILE domain add``; ``user add --password-stdin``; then ``serve``
in the background until SIGTERM. Runs the working tree's code (src/ on PYTHONPATH)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.targets.base import DOMAIN, PASSWORD, USERS, Target, TargetError, free_port, wait_port

REPO = Path(__file__).resolve().parents[2]


def outbound_config(domain: str, port: int, connections: int) -> str:
    """The outbound workload's settings: loopback clients may relay (smtp-source fills the
    queue without AUTH, as Postfix's mynetworks allows), mail for `domain` goes to
    127.0.0.1:port over at most `connections` connections (Postfix: transport_maps and
    smtp_destination_concurrency_limit)."""
    return f"""
[smtp]
trusted_networks = ["127.0.0.0/8"]

[queue]
max_connections = {connections}
max_per_destination = {connections}

[relay.routes]
"{domain}" = "127.0.0.1:{port}"
"""


def config_text(
    data_dir: Path, ports: dict[str, int], max_connections: int, extra: str = ""
) -> str:
    listen = "\n".join(f'{role} = "127.0.0.1:{port}"' for role, port in ports.items())
    # The per-address limit (200 by default) would stop the memory workload, whose
    # thousands of connections all come from 127.0.0.1; Dovecot's is raised likewise.
    return f"""\
# Written by postar's bench.
hostname = "{DOMAIN}"
data_dir = "{data_dir}"

[listen]
{listen}

[limits]
connections_total = {max_connections + 1000}
connections_per_ip = {max_connections + 1000}
commands_per_session = 1000000
{extra}"""


class Postar(Target):
    def __init__(
        self,
        roles: tuple[str, ...] = ("smtp", "imap", "pop3"),
        max_connections: int = 2000,
        fallback_roles: tuple[tuple[str, ...], ...] = (),
        users: list[str] | None = None,
        extra_config: str = "",
    ) -> None:
        super().__init__(name="postar")
        self.extra_config = extra_config
        # Only the accounts a workload uses: each `user add` is a process start and an
        # argon2 hash, seconds that would otherwise come out of a --quick run.
        self.users = list(users or USERS)
        self.roles = roles
        # Role sets to try, in order, if the first does not start (while a protocol server is
        # still being written, SMTP can be measured with POP3 counting instead of IMAP).
        self.fallback_roles = fallback_roles
        self.max_connections = max_connections
        self.root = self.workdir / "postar"
        self.config = self.root / "postar.toml"
        # Bulk loads go through `postar import` (a Maildir written here, then imported beside
        # the running server): how a site migrating from Dovecot fills Postar, and far faster
        # than IMAP APPEND one message per round trip.
        self.direct_seed = True
        self.seed_how = "postar import of a Maildir"

    # `postar import` takes this many messages per run, so a load stops at its deadline.
    IMPORT_CHUNK = 5000

    def seed_direct(self, user: str, messages: list[bytes], deadline: float) -> int:
        md = self.root / f"seed-{user}"
        now, pid = int(time.time()), os.getpid()
        stored = 0
        try:
            while stored < len(messages) and time.monotonic() < deadline:
                shutil.rmtree(md, ignore_errors=True)
                for sub in ("cur", "new", "tmp"):
                    (md / sub).mkdir(parents=True, exist_ok=True)
                chunk = messages[stored : stored + self.IMPORT_CHUNK]
                for i, data in enumerate(chunk, start=stored):
                    # ":2,S": seen, like the Dovecot target's seeded messages
                    (md / "cur" / f"{now}.M{i}P{pid}.bench:2,S").write_bytes(data)
                left = max(30.0, deadline - time.monotonic() + 60)
                self._cli("import", user, str(md), timeout=left)
                stored += len(chunk)
        finally:
            shutil.rmtree(md, ignore_errors=True)
        return stored

    # ---- outbound queue (the outbound workload), through the admin CLI ----------------------
    def queue_state(self) -> tuple[int, int]:
        """(messages queued, of which not yet tried): `postar queue list`."""
        out = self._cli("queue", "list", timeout=60)
        lines = [x for x in out.splitlines() if "  attempts=" in x]
        return len(lines), sum(1 for x in lines if "  attempts=0  " in x)

    def flush_queue(self) -> None:
        """`postar queue flush`: every queued message tried now."""
        self._cli("queue", "flush", timeout=60)

    def _env(self) -> dict[str, str]:
        src = str(REPO / "src")
        path = os.environ.get("PYTHONPATH")
        return dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{path}" if path else src)

    def _cli(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        cmd = [sys.executable, "-m", "postar", "--config", str(self.config), *args]
        res = subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=self._env()
        )
        if res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().splitlines()
            raise TargetError(
                f"postar {' '.join(args[:2])} failed (exit {res.returncode}): "
                + (" | ".join(msg[-3:]) or "no output")
            )
        return res.stdout

    def start(self) -> None:
        errors = []
        for roles in (self.roles, *self.fallback_roles):
            self.roles = roles
            try:
                self._start()
                return
            except TargetError as exc:
                errors.append(f"roles {','.join(roles)}: {exc}")
                self.stop()
                shutil.rmtree(self.root, ignore_errors=True)
        raise TargetError("\n".join(errors))

    def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ports = {role: free_port() for role in self.roles}
        self.config.write_text(
            config_text(
                self.root / "postar-data", self.ports, self.max_connections, self.extra_config
            )
        )
        self._cli("domain", "add", DOMAIN)
        for user in self.users:
            self._cli("user", "add", user, "--password-stdin", stdin=PASSWORD + "\n")
        self.log_file = self.root / "serve.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postar", "--config", str(self.config), "serve"],
            stdout=open(self.log_file, "wb"),  # noqa: SIM115 - lives as long as the server
            stderr=subprocess.STDOUT,
            env=self._env(),
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        try:
            for role in self.roles:
                wait_port(self.ports[role], deadline, self.proc, "postar serve")
        except TargetError as exc:
            self.stop()
            raise TargetError(f"{exc}\n{self.log_tail()}") from exc
