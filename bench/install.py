"""Bring in what the benchmark needs from Debian's packages and PyPI, without side effects.

Installing postfix on Debian normally configures and starts a system MTA on port 25, and the
dovecot packages start a system IMAP/POP3 server. We preseed postfix to "No configuration" and
put a policy-rc.d in place for the install, so no init script starts anything; afterwards, where
systemd runs, units the install enabled are disabled and stopped. Packages already installed
are left exactly as they were.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

DEBIAN_PACKAGES = ["dovecot-imapd", "dovecot-pop3d", "dovecot-lmtpd", "postfix"]
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
# exit 101 = "action forbidden" to invoke-rc.d: packages install but nothing starts
_POLICY = (
    "#!/bin/sh\n# written by postar bench/install.py for the duration of one apt-get run\n"
    "exit 101\n"
)


def _missing(packages: list[str]) -> list[str]:
    missing = []
    for pkg in packages:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True
        )
        if "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def ensure_debian_packages(log: Callable[[str], None]) -> None:
    missing = _missing(DEBIAN_PACKAGES)
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"bench: need root to install {' '.join(missing)}")
    log(f"installing {' '.join(missing)} from Debian's packages (no services started)")
    subprocess.run(
        ["debconf-set-selections"],
        input="postfix postfix/main_mailer_type select No configuration\n",
        text=True,
        check=True,
    )
    wrote_policy = not POLICY_RC_D.exists()
    if wrote_policy:
        POLICY_RC_D.write_text(_POLICY)
        POLICY_RC_D.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", *missing], check=True, env=env, timeout=900
        )
    finally:
        if wrote_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    if shutil.which("systemctl") and Path("/run/systemd/system").exists():
        for unit in ("postfix", "dovecot"):
            if any(p.startswith(unit) for p in missing):
                subprocess.run(["systemctl", "disable", "--now", unit], check=False)


def ensure_matplotlib(log: Callable[[str], None]) -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("installing matplotlib from PyPI for the charts")
        res = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=False
        )
        if res.returncode != 0:
            log("matplotlib could not be installed: no charts this run")
            return False
    return True
