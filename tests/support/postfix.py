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

from tests.support.server import free_port, wait_for_port

# Maildirs are read by the test (root); any unprivileged uid works for virtual(8).
VMAIL_UID = 65534
VMAIL_GID = 65534

# chroot "n" everywhere: a chroot would need copies of /etc files inside our queue directory.
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{smtp_addr} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


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
        self.main_cf = f"""\
# A private instance written by tests/support/postfix.py.
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {hostname}
mydomain = interop.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
relayhost = {relayhost}
append_dot_mydomain = no
biff = no
maillog_file = {root}/maillog
# postlogd writes only under these prefixes (default /var, /dev/stdout).
maillog_file_prefixes = {root}
# Retry quickly so a test sees a second attempt within its deadline.
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
virtual_mailbox_domains = {" ".join(domains)}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/etc/vmailbox
virtual_uid_maps = static:{VMAIL_UID}
virtual_gid_maps = static:{VMAIL_GID}
virtual_minimum_uid = 100
{tls}{extra}"""

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
        (self.etc / "master.cf").write_text(_MASTER_CF.format(smtp_addr=f"127.0.0.1:{self.port}"))
        # A trailing slash makes virtual(8) deliver into a Maildir.
        (self.etc / "vmailbox").write_text(
            "".join(f"{m} {m.split('@')[1]}/{m.split('@')[0]}/\n" for m in self.mailboxes)
        )
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
