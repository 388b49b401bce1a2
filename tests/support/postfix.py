"""A private Postfix instance (Debian's package) for interoperation tests, on loopback only.

Everything lives in a directory of its own under /tmp (not pytest's tmp_path: Postfix's
unprivileged daemons must traverse it, and pytest keeps /tmp/pytest-of-root at 0700, resetting
it whenever another session starts): config_directory, queue_directory, data_directory, the log
and the Maildirs. stop() removes it. The system's /etc/postfix is only read for
postfix-files (meta_directory; Debian keeps the permission list there). `postfix -c DIR
start-fg` keeps the master in the foreground as our child's child; stop() sends SIGTERM to the
master by the pid in its own pid file and then waits for our child, so no other Postfix on the
machine (a bench run, a system MTA) is ever touched.

Skip or fail: when the postfix binaries are missing a test skips, unless CI is set, in which
case scripts/test should have installed them and the missing package is a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.postfix_conf import main_cf, master_cf, vmailbox
from tests.support.server import free_port, wait_for_port

# Maildirs are read by the test (root); any unprivileged uid works for virtual(8).
VMAIL_UID = 65534
VMAIL_GID = 65534


def require_postfix() -> None:
    """Skip when Postfix is not installed, except under CI, where that is a failure."""
    if shutil.which("postfix") and Path("/usr/lib/postfix/sbin/master").exists():
        return
    if os.environ.get("CI"):
        pytest.fail("postfix is not installed (scripts/test installs it); CI must run this test")
    pytest.skip("postfix is not installed (apt-get install postfix)")


class PostfixInstance:
    """One Postfix on 127.0.0.1:`port`.

    relayhost: "[127.0.0.1]:PORT" to send everything there (Postfix relays into Postar).
    mailboxes: addresses delivered by virtual(8) into Maildirs under root/mail.
    tls_cert/tls_key: offer STARTTLS on smtpd (so our client's STARTTLS meets Postfix's).
    """

    def __init__(
        self,
        *,
        hostname: str = "postfix.interop.test",
        relayhost: str = "",
        mailboxes: tuple[str, ...] = (),
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        extra: str = "",
    ) -> None:
        self.root = root = Path(tempfile.mkdtemp(prefix="postar-postfix-"))
        os.chmod(root, 0o755)
        self.etc = root / "etc"
        self.etc.mkdir()
        self.port = free_port()
        self.mailboxes = mailboxes
        self.proc: subprocess.Popen[bytes] | None = None
        domains = sorted({m.split("@", 1)[1] for m in mailboxes})
        tls = ""
        if tls_cert and tls_key:
            tls = (
                f"smtpd_tls_cert_file = {tls_cert}\nsmtpd_tls_key_file = {tls_key}\n"
                "smtpd_tls_security_level = may\n"
            )
        self.main_cf = main_cf(
            root,
            hostname=hostname,
            mydomain="interop.test",
            mailbox_domains=domains,
            uid=VMAIL_UID,
            gid=VMAIL_GID,
            relayhost=relayhost,
            written_by="tests/support/postfix.py",
            # Retry quickly so a test sees a second attempt within its deadline.
            extra="queue_run_delay = 2s\nminimal_backoff_time = 2s\nmaximal_backoff_time = 4s\n"
            + tls
            + extra,
        )

    def maildir(self, address: str) -> Path:
        local, domain = address.split("@", 1)
        return self.root / "mail" / domain / local

    def messages(self, address: str) -> list[bytes]:
        new = self.maildir(address) / "new"
        if not new.is_dir():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir())]

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.etc), *args], capture_output=True, text=True, timeout=60
        )

    def start(self) -> PostfixInstance:
        for d in ("etc", "spool", "data", "mail"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chown(self.root / "mail", VMAIL_UID, VMAIL_GID)
        # The master's lock file and the TLS caches live in data_directory, owned by mail_owner.
        owner = pwd.getpwnam("postfix")
        os.chown(self.root / "data", owner.pw_uid, owner.pw_gid)
        (self.etc / "main.cf").write_text(self.main_cf)
        (self.etc / "master.cf").write_text(master_cf(self.port))
        (self.etc / "vmailbox").write_text(vmailbox(self.mailboxes))
        res = self._postfix("set-permissions")
        if res.returncode != 0:
            raise RuntimeError(f"postfix set-permissions failed: {res.stderr.strip()}")
        res = self._postfix("check")
        if res.returncode != 0:
            raise RuntimeError(f"postfix check failed: {res.stderr.strip()}")
        self.proc = subprocess.Popen(
            ["postfix", "-c", str(self.etc), "start-fg"],
            stdout=open(self.root / "stdout.log", "wb"),  # noqa: SIM115 - lives with the process
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port, timeout=30, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            out = (self.root / "stdout.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"postfix did not start: {exc}\n{out}\n{self.log()[-2000:]}"
            ) from exc
        return self

    def master_pid(self) -> int | None:
        path = self.root / "spool" / "pid" / "master.pid"
        try:
            return int(path.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """SIGTERM to this instance's master (by its pid file), then reap our child."""
        if self.proc is None:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        pid = self.master_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            # The master ignored SIGTERM: end our child (the start-fg shell) and the master.
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        # The master's children exit when it does; wait for them so the queue can be removed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid is not None and _alive(pid):
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
