"""The machine and software versions printed with every result: numbers mean little without them."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any


def _run(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _mem_total() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _dpkg_version(pkg: str) -> str:
    return _run(["dpkg-query", "-W", "-f=${Version}", pkg])


def _git(root: str, *args: str) -> str:
    return _run(["git", "-C", root, *args])


def machine(repo_root: str) -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_bytes": _mem_total(),
        "kernel": platform.release(),
        "os": _run(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "versions": {
            "postar_commit": _git(repo_root, "rev-parse", "--short", "HEAD"),
            "dovecot": _run(["dovecot", "--version"]),
            "postfix": _dpkg_version("postfix"),
            "dovecot_pkg": _dpkg_version("dovecot-core"),
        },
    }


def describe(m: dict[str, Any]) -> str:
    v = m["versions"]
    return (
        f"{m['cpu_model']}, {m['cores']} cores, {m['ram_bytes'] / 2**30:.1f} GiB RAM, "
        f"kernel {m['kernel']}, {m['os']}, Python {m['python']}; "
        f"Postar {v['postar_commit']}, Dovecot {v['dovecot']}, Postfix {v['postfix']}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}"
    )
