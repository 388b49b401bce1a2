"""A real Postar server in a subprocess, on loopback ports picked per test.

The server runs exactly as a user runs it (`postar --config FILE serve`), so the tests also
exercise the command line contract, SIGTERM handling and, with kill(), crash recovery.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

ALL_ROLES = ("smtp", "submission", "submissions", "smtp-alt", "pop3", "pop3s", "imap", "imaps")
DOMAIN = "example.test"
PASSWORD = "correct horse battery staple"


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_EPHEMERAL = _ephemeral_range()
# Ports below the kernel's ephemeral range: a port found free there is not handed to some
# outgoing connection (ours or the machine's) before the server binds it, which is what
# bind(("127.0.0.1", 0)) ports are exposed to in the seconds a test takes to set up.
_PICK_RANGE = (10000, min(_EPHEMERAL[0], 32768))
_handed_out: set[int] = set()
_rng = random.Random(os.getpid() ^ time.monotonic_ns())


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on, never handed out twice in this process."""
    for _ in range(1000):
        port = _rng.randrange(*_PICK_RANGE)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


class PostarServer:
    def __init__(
        self,
        root: Path,
        roles: Iterable[str] = ALL_ROLES,
        extra_config: str = "",
        hostname: str = "mx.example.test",
    ) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.config_path = root / "postar.toml"
        self.log_path = root / "server.log"
        if "[dns]" not in extra_config:
            # No test server asks the machine's resolver: lookups go to a closed loopback
            # port and fail fast as temporary errors (mail to foreign domains stays queued).
            extra_config += f'\n[dns]\nnameservers = ["127.0.0.1:{free_port()}"]\ntimeout = 1.0\n'
        self._config_head = f'hostname = "{hostname}"\ndata_dir = "{self.data_dir}"\n{extra_config}'
        self._pick_ports(tuple(roles))
        self.proc: subprocess.Popen[bytes] | None = None

    def _pick_ports(self, roles: tuple[str, ...]) -> None:
        self.ports = {role: free_port() for role in roles}
        listen = "\n".join(f'{r} = "127.0.0.1:{p}"' for r, p in self.ports.items())
        self.config_path.write_text(f"{self._config_head}\n[listen]\n{listen}\n")

    # ---- the CLI --------------------------------------------------------------------------------
    def cli(self, *args: str, input_text: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "postar", "--config", str(self.config_path), *args],
            input=input_text.encode() if input_text is not None else None,
            capture_output=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"postar {' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}"
            )
        return result.stdout.decode() + result.stderr.decode()

    def add_domain(self, domain: str = DOMAIN) -> None:
        self.cli("domain", "add", domain)

    def add_user(self, address: str, password: str = PASSWORD) -> None:
        self.cli("user", "add", address, "--password-stdin", input_text=password + "\n")

    # ---- the process ---------------------------------------------------------------------------
    def start(self, pick_new_ports_on_collision: bool = True) -> PostarServer:
        """Start and wait until every port accepts. A port taken by another process between
        picking and binding (the server exits naming it) gets fresh ports and a second try,
        unless the test has already handed the ports to something else."""
        for attempt in range(3):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "postar", "--config", str(self.config_path), "serve"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            try:
                for port in self.ports.values():
                    wait_for_port(port, proc=self.proc)
                self._wait_for_workers(log_start)
                return self
            except RuntimeError as exc:
                self.proc = None
                tail = self.log()[log_start:][-2000:]
                collided = "cannot listen for" in tail and "in use" in tail
                if collided and pick_new_ports_on_collision and attempt < 2:
                    self._pick_ports(tuple(self.ports))
                    continue
                raise RuntimeError(f"{exc}; its log ends:\n{tail}") from exc
        raise AssertionError("unreachable")

    def _wait_for_workers(self, log_start: int, timeout: float = 20.0) -> None:
        """Until the SMTP worker processes are ready: before that the serving process takes
        the SMTP connections itself, and the tests would not see the workers' path."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()[log_start:]
            found = re.search(r"smtp workers starting count=(\d+)", log)
            if found is None or log.count("smtp worker ready") >= int(found.group(1)):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError("the SMTP workers did not get ready")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a service manager does; returns the exit code."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pids(self) -> list[int]:
        """The serving process and its children (the SMTP worker processes)."""
        assert self.proc is not None
        pids = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):
                pids.extend(int(p) for p in (task / "children").read_text().split())
        return pids

    def rss_kb(self) -> int:
        """Resident memory of the whole server: SMTP sessions live in its worker processes."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        if not total:
            raise RuntimeError("no VmRSS")
        return total
