"""Dovecot from Debian's packages, as a private instance: its own config file, base_dir,
state_dir, log and Maildirs under the temporary directory, listening on 127.0.0.1 only.

Started with ``dovecot -F -c FILE`` so the master stays our child and is stopped by its pid.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from bench.targets.base import (
    MAIL_GID,
    MAIL_UID,
    PASSWORD,
    USERS,
    Target,
    TargetError,
    free_port,
    wait_port,
)


def password_hash(scheme: str, password: str) -> str:
    """Hash with doveadm itself, so the passdb holds exactly what Dovecot would write.
    ARGON2ID by default: Postar stores argon2id too, so a LOGIN costs both the same kind of work."""
    if scheme == "PLAIN":
        return "{PLAIN}" + password
    out = subprocess.run(
        ["doveadm", "pw", "-s", scheme, "-p", password],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise TargetError(f"doveadm pw -s {scheme} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def config_text(
    root: Path,
    imap_port: int,
    pop3_port: int,
    lmtp_port: int,
    max_connections: int,
    imap_clients_per_process: int,
    scheme: str = "ARGON2ID",
) -> str:
    """The whole dovecot.conf; nothing from /etc/dovecot is read."""
    # default_client_limit bounds every service's listener (auth, anvil, log...), which all
    # see one connection per logged-in client; process_limit for imap bounds the forks.
    imap_procs = max(100, max_connections // imap_clients_per_process + 10)
    # SCRAM needs the SCRAM keys stored; offer the mechanism only when the passdb has them.
    mechanisms = "plain login" + (" scram-sha-256" if scheme == "SCRAM-SHA-256" else "")
    return f"""\
# Written by postar's bench: a private Dovecot instance for side-by-side measurement.
instance_name = postar-bench-{os.getpid()}-{imap_port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = no
# Loopback only: plaintext LOGIN/USER+PASS allowed, as Postar allows them from loopback.
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
# The verified-password cache is a normal production setting; without it each of
# thousands of LOGINs would pay a full argon2 hash.
auth_cache_size = 10M
# ...and for cached users the (argon2) verification runs in auth-worker processes, in
# parallel, instead of one at a time in the single auth process: what an admin with a slow
# password scheme would configure.
auth_cache_verify_password_with_worker = yes
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_max_userip_connections = {max_connections + 100}
default_client_limit = {max_connections + 1000}
default_process_limit = {max(100, imap_procs)}
default_vsz_limit = 1G
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  # High-performance mode: a few login processes serve all connections (the security
  # mode, one process per connection, would measure fork cost rather than IMAP).
  service_count = 0
  process_min_avail = 2
  client_limit = {max_connections + 1000}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 1
}}
service imap {{
  process_limit = {imap_procs}
  client_limit = {imap_clients_per_process}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
"""


class Dovecot(Target):
    def __init__(
        self,
        scheme: str = "ARGON2ID",
        max_connections: int = 2000,
        imap_clients_per_process: int = 1,
    ) -> None:
        super().__init__(name="dovecot")
        self.scheme = scheme
        self.max_connections = max_connections
        self.imap_clients_per_process = imap_clients_per_process
        self.direct_seed = True
        self.root = self.workdir / "dovecot"

    def home(self, user: str) -> Path:
        local, domain = user.split("@")
        return self.root / "mail" / domain / local

    def start(self) -> None:
        r = self.root
        for d in ("run", "state", "mail"):
            (r / d).mkdir(parents=True, exist_ok=True)
        # The mail uid must reach its home through the temporary directory.
        os.chmod(self.workdir, 0o755)
        os.chmod(r, 0o755)
        os.chown(r / "mail", MAIL_UID, MAIL_GID)
        hashed = password_hash(self.scheme, PASSWORD)
        lines = []
        for user in USERS:
            home = self.home(user)
            home.mkdir(parents=True, exist_ok=True)
            os.chown(home.parent, MAIL_UID, MAIL_GID)
            os.chown(home, MAIL_UID, MAIL_GID)
            lines.append(f"{user}:{hashed}:{MAIL_UID}:{MAIL_GID}::{home}::")
        (r / "users").write_text("\n".join(lines) + "\n")
        self.ports = {"imap": free_port(), "pop3": free_port(), "lmtp": free_port()}
        conf = r / "dovecot.conf"
        conf.write_text(
            config_text(
                r,
                self.ports["imap"],
                self.ports["pop3"],
                self.ports["lmtp"],
                self.max_connections,
                self.imap_clients_per_process,
                self.scheme,
            )
        )
        self.log_file = r / "dovecot.log"
        self.proc = subprocess.Popen(
            ["dovecot", "-F", "-c", str(conf)],
            stdout=open(r / "stdout.log", "wb"),  # noqa: SIM115 - lives as long as the server
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        try:
            for role in ("imap", "pop3"):
                wait_port(self.ports[role], deadline, self.proc, "dovecot")
        except TargetError as exc:
            tail = (r / "stdout.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise TargetError(f"{exc}\n{tail}\n{self.log_tail()}") from exc

    def seed_direct(self, user: str, messages: list[bytes], deadline: float) -> int:
        """Write messages straight into the user's Maildir cur/ (as read, no flags), the way a
        migration or an MDA would; Dovecot indexes them on the next SELECT."""
        md = self.home(user) / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        now = int(time.time())
        pid = os.getpid()
        cur = md / "cur"
        for i, data in enumerate(messages):
            # ":2,S": seen, as Postar's accounts are seeded by APPEND with \Seen
            name = f"{now}.M{i}P{pid}.bench,S={len(data)},W={len(data)}:2,S"
            with open(cur / name, "wb") as fh:
                fh.write(data)
        for dirpath, dirnames, filenames in os.walk(self.home(user)):
            os.chown(dirpath, MAIL_UID, MAIL_GID)
            for n in filenames:
                os.chown(os.path.join(dirpath, n), MAIL_UID, MAIL_GID)
            del dirnames  # walk continues into them regardless
        return len(messages)  # plain file writes: the deadline cannot bite
