"""Helpers for outbound tests: a sending Postar wired to a loopback DNS server, submission,
POP3 reads and bounded waits."""

from __future__ import annotations

import poplib
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.dnsserver import LocalDNS
from tests.support.server import DOMAIN, PASSWORD, PostarServer

ALICE = f"alice@{DOMAIN}"
REMOTE = "remote.test"


def wait_until(check: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def pop3_messages(server: PostarServer, user: str) -> list[bytes]:
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=10)
    try:
        pop.user(user)
        pop.pass_(PASSWORD)
        count, _ = pop.stat()
        return [b"\r\n".join(pop.retr(i + 1)[1]) + b"\r\n" for i in range(count)]
    finally:
        pop.quit()


def submit(server: PostarServer, rcpts: list[str], body: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as smtp:
        smtp.login(ALICE, PASSWORD)
        assert smtp.sendmail(ALICE, rcpts, body) == {}


def sender_server(root: Path, dns: LocalDNS, mx_port: int, retry: float = 1.0) -> PostarServer:
    root.mkdir(parents=True, exist_ok=True)
    extra = (
        f'[dns]\nnameservers = ["{dns.nameserver}"]\ntimeout = 2\n'
        f"[relay]\nmx_port = {mx_port}\n"
        f"[queue]\nretry_first_seconds = {retry}\nretry_max_seconds = {retry}\n"
        "connect_timeout = 3\ncommand_timeout = 5\ndata_timeout = 5\n"
    )
    server = PostarServer(
        root, roles=("smtp", "submission", "pop3"), extra_config=extra, hostname="mail.example.test"
    )
    server.add_domain(DOMAIN)
    server.add_user(ALICE)
    return server
