"""IMAP server glue: one `ImapSession` per accepted connection (roles imap and imaps).

The session (postar.imap.session) holds the behaviour; this module only builds it from the
process's shared services, as smtp/server.py and pop3/server.py do for their protocols.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from postar.imap.limits import ImapLimits, LiteralMode
from postar.imap.parsed_cache import ParsedCache
from postar.imap.session import ImapSession, ImapSettings
from postar.net.connection import Connection

if TYPE_CHECKING:
    from postar.app import Services


class IMAPServer:
    def __init__(self, services: Services) -> None:
        self.services = services
        limits = services.config.limits
        base = ImapLimits()
        self.settings = ImapSettings(
            hostname=services.config.hostname,
            limits=dataclasses.replace(
                base,
                max_literal_size=limits.literal_size,
                max_command_size=max(base.max_command_size, limits.literal_size + 1024 * 1024),
            ),
            max_errors=limits.errors_per_session,
            literal_mode=(
                LiteralMode.MINUS if services.config.imap.literal == "minus" else LiteralMode.PLUS
            ),
        )
        self.parsed_cache = ParsedCache()  # one for every session of this server

    async def handle(self, conn: Connection) -> None:
        session = ImapSession(
            self.services.store,
            self.services.authenticator,
            conn,
            self.settings,
            parsed_cache=self.parsed_cache,
        )
        await session.run()
