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

# chroot "n" everywhere: a chroot would need copies of /etc files inside our queue directory.
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{smtp_addr} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
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


def main_cf(root: Path, port: int) -> str:
    return f"""\
# Written by postar's bench: a private Postfix instance for side-by-side measurement.
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
# Debian keeps postfix-files (the permissions list) in /etc/postfix whatever config_directory is.
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
relayhost =
append_dot_mydomain = no
biff = no
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
message_size_limit = 52428800
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
anvil_rate_time_unit = 60s
default_process_limit = 200
# Delivery into Maildir (trailing slash in the map) under the temporary directory.
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/etc/vmailbox
virtual_uid_maps = static:{MAIL_UID}
virtual_gid_maps = static:{MAIL_GID}
virtual_minimum_uid = 100
virtual_mailbox_limit = 0
"""


class Postfix(Target):
    def __init__(self) -> None:
        super().__init__(name="postfix")
        self.root = self.workdir / "postfix"

    def maildir_new(self, user: str) -> Path:
        local, domain = user.split("@")
        return self.root / "mail" / domain / local / "new"

    def delivered(self, user: str) -> int:
        try:
            return sum(1 for _ in os.scandir(self.maildir_new(user)))
        except FileNotFoundError:
            return 0

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
        (etc / "main.cf").write_text(main_cf(r, self.ports["smtp"]))
        (etc / "master.cf").write_text(
            _MASTER_CF.format(smtp_addr=f"127.0.0.1:{self.ports['smtp']}")
        )
        (etc / "vmailbox").write_text(
            "".join(f"{u} {u.split('@')[1]}/{u.split('@')[0]}/\n" for u in USERS)
        )
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
