"""What every target offers: start, stop, ports, the process tree to measure, and seeding."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs

DOMAIN = "bench.test"
PASSWORD = "bench-Pass-1"
# The same accounts on every server. user1 takes SMTP and POP3, user2 the large mailbox,
# the rest the concurrent IMAP clients (one account per load process, so IDLE wake-ups
# in one process are caused by that process's own APPENDs).
USERS = [f"user{i}@{DOMAIN}" for i in range(1, 7)]
# Dovecot and Postfix deliver as this uid/gid (nobody/nogroup): the bench creates no
# system users; the files live only in the temporary directory.
MAIL_UID = 65534
MAIL_GID = 65534


class TargetError(RuntimeError):
    """The server could not be configured or started; the message says why."""


def free_port() -> int:
    # The kernel picks an unused port; a race with another process is possible but rare,
    # and a clash shows up as a start failure, not as wrong numbers.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TargetError(f"{what} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TargetError(f"{what} did not listen on 127.0.0.1:{port} in time")


@dataclass
class Target:
    """Base class. Subclasses fill `ports` with the roles they serve (smtp, imap, pop3)."""

    name: str = "target"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="postar-bench-")))
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None

    def start(self) -> None:
        raise NotImplementedError

    def root_pid(self) -> int:
        if self.proc is None:
            raise TargetError(f"{self.name} is not running")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def memory(self) -> procs.Memory:
        return procs.memory(self.root_pid())

    def cpu_seconds(self) -> float:
        return procs.tree_cpu_seconds(self.root_pid())

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop_tree(self.proc.pid)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 15) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        text = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text)

    # Seeding: a target that can write its store directly overrides this; the default is
    # IMAP APPEND (the only way into Postar's store that the contract promises).
    direct_seed: bool = False
    seed_how: str = "direct Maildir writes"

    def seed_direct(self, user: str, messages: list[bytes], deadline: float) -> int:
        """Store messages for user without the protocol; returns how many got in before the
        monotonic deadline (a target whose writes are instant may ignore it)."""
        raise NotImplementedError
