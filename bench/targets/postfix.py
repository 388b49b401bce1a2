"""Postfix from Debian's packages as a separate instance: its own config_directory,
queue_directory and data_directory under the temporary directory, SMTP on 127.0.0.1 at a picked
port, and `virtual` delivery into a Maildir, so a message counts when its file is in new/.

Started with ``postfix -c DIR start-fg`` so the master stays our child and is stopped by its pid.
Also here: smtp-sink, the accept-only ceiling of the SMTP load generator.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bench.targets.base import (
    DOMAIN,
    MAIL_GID,
    MAIL_UID,
    USERS,
    Target,
    TargetError,
    free_port,
    wait_port,
)
from tests.support.postfix_conf import main_cf, master_cf, vmailbox


def outbound_main_cf(domain: str, port: int, connections: int) -> str:
    """The outbound workload's settings: mail for `domain` to 127.0.0.1:port (the route Postar
    gets too), `connections` at once from the first message (no slow start: both servers
    get the same 20 connections from the start; Postar has no slow start either)."""
    return f"""\
transport_maps = inline:{{{domain}=smtp:[127.0.0.1]:{port}}}
smtp_destination_concurrency_limit = {connections}
default_destination_concurrency_limit = {connections}
initial_destination_concurrency = {connections}
"""


def bench_main_cf(root: Path, extra: str = "") -> str:
    return main_cf(
        root,
        hostname=f"mx.{DOMAIN}",
        mydomain=DOMAIN,
        mailbox_domains=[DOMAIN],
        uid=MAIL_UID,
        gid=MAIL_GID,
        written_by="postar's bench, for side-by-side measurement",
        # No limits the load generator would hit before the server does.
        extra="""\
message_size_limit = 52428800
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
anvil_rate_time_unit = 60s
default_process_limit = 200
virtual_mailbox_limit = 0
"""
        + extra,
    )


class Postfix(Target):
    def __init__(self, extra_main_cf: str = "") -> None:
        super().__init__(name="postfix")
        self.root = self.workdir / "postfix"
        self.extra_main_cf = extra_main_cf

    def maildir_new(self, user: str) -> Path:
        local, domain = user.split("@")
        return self.root / "mail" / domain / local / "new"

    def delivered(self, user: str) -> int:
        try:
            return sum(1 for _ in os.scandir(self.maildir_new(user)))
        except FileNotFoundError:
            return 0

    # ---- outbound queue (the outbound workload) ------------------------------------------------
    def queue_state(self) -> tuple[int, int]:
        """(messages queued, of which not yet tried): queue files, deferred/ holding the tried."""
        counts = {}
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            counts[sub] = sum(len(f) for _, _, f in os.walk(self.root / "spool" / sub))
        total = sum(counts.values())
        return total, total - counts["deferred"] - counts["hold"]

    def flush_queue(self) -> None:
        """`postqueue -f`: every queued message tried now (qmgr is told through its fifo)."""
        res = subprocess.run(
            ["postqueue", "-c", str(self.root / "etc"), "-f"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if res.returncode != 0:
            raise TargetError(f"postqueue -f failed: {res.stderr.strip()}")

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.root / "etc"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> None:
        r = self.root
        etc = r / "etc"
        for d in ("etc", "spool", "data", "mail"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        os.chmod(r, 0o755)
        os.chown(r / "mail", MAIL_UID, MAIL_GID)
        self.ports = {"smtp": free_port()}
        (etc / "main.cf").write_text(bench_main_cf(r, self.extra_main_cf))
        (etc / "master.cf").write_text(master_cf(self.ports["smtp"]))
        (etc / "vmailbox").write_text(vmailbox(USERS))
        # set-permissions creates the queue subdirectories with their owners and modes.
        res = self._postfix("set-permissions")
        if res.returncode != 0:
            raise TargetError(f"postfix set-permissions failed: {res.stderr.strip()}")
        self.log_file = r / "maillog"
        self.proc = subprocess.Popen(
            ["postfix", "-c", str(etc), "start-fg"],
            stdout=open(r / "stdout.log", "wb"),  # noqa: SIM115 - lives as long as the server
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_port(self.ports["smtp"], time.monotonic() + 30, self.proc, "postfix")
        except TargetError as exc:
            tail = (r / "stdout.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise TargetError(f"{exc}\n{tail}\n{self.log_tail()}") from exc

    def root_pid(self) -> int:
        # start-fg execs the master in the foreground: our child is the master itself, or the
        # postfix-script shell whose child it is; the process tree covers both cases.
        return super().root_pid()


class SmtpSink(Target):
    """smtp-sink: accepts and discards, the ceiling smtp-source can reach on this machine."""

    def __init__(self) -> None:
        super().__init__(name="smtp-sink")

    def start(self) -> None:
        self.ports = {"smtp": free_port()}
        self.proc = subprocess.Popen(
            # -u: drop root after binding (required when run as root); 1000 = listen backlog
            ["smtp-sink", "-u", "nobody", f"127.0.0.1:{self.ports['smtp']}", "1000"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(self.ports["smtp"], time.monotonic() + 10, self.proc, "smtp-sink")
