"""First start without a configuration: make a server a person can try in a minute.

Creates the data directory, a configuration on loopback with every served role on its
standard port + 10000 (unprivileged), the domain example.test and one account whose random
password is printed once and kept in data_dir/initial-credentials (mode 0600) for later.
The certificate is made by the TLS setup when the server starts.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from postar.auth.directory import Directory
from postar.config import ROLE_STANDARD_PORT, default_config_text, load_config
from postar.store.interface import open_store_backend

DEMO_DOMAIN = "example.test"
DEMO_USER = f"postmaster@{DEMO_DOMAIN}"
PORT_OFFSET = 10000


def first_run(config_path: Path, echo: Callable[[str], object] = print) -> None:
    from postar.app import SERVED_ROLES

    data_dir = config_path.parent.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(
        default_config_text(data_dir, "localhost", SERVED_ROLES, port_offset=PORT_OFFSET)
    )
    config = load_config(config_path)
    password = secrets.token_urlsafe(12)

    async def create() -> None:
        store = open_store_backend(config)
        await store.open()
        try:
            directory = Directory(store)
            await directory.create_domain(DEMO_DOMAIN)
            await directory.create_user(DEMO_USER, password)
        finally:
            await store.close()

    asyncio.run(create())
    cred = data_dir / "initial-credentials"
    fd = os.open(cred, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{DEMO_USER} {password}\n")

    ports = {role: addr.port for role, addr in config.listen.items()}
    echo(f"First start: created {config_path}")
    echo(f"  domain  {DEMO_DOMAIN}")
    echo(f"  account {DEMO_USER}")
    echo(f"  password {password}   (also in {cred})")
    echo("Client settings (server 127.0.0.1, self-signed certificate):")
    labels = {
        "smtp": "SMTP (incoming, STARTTLS)",
        "submission": "SMTP submission (STARTTLS, login required)",
        "submissions": "SMTP submission (TLS, login required)",
        "smtp-alt": "SMTP alternate (STARTTLS, login required)",
        "pop3": "POP3 (STLS)",
        "pop3s": "POP3 (TLS)",
        "imap": "IMAP (STARTTLS)",
        "imaps": "IMAP (TLS)",
        "http": "Webmail",
    }
    for role in ROLE_STANDARD_PORT:
        if role in ports:
            echo(f"  {labels.get(role, role):45} port {ports[role]}")
    echo(f"Try: swaks --server 127.0.0.1:{ports.get('smtp', 10025)} --to {DEMO_USER}")
