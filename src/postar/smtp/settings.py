"""Per-connection settings of the SMTP core, built from the typed configuration by the glue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from postar.config import Config

BareNewlinePolicy = Literal["normalize", "reject"]

# RFC 5321 4.5.3.1.4: a server must accept command lines of at least 512 octets (with CRLF).
MIN_LINE_LENGTH = 512


@dataclass(frozen=True, slots=True)
class SMTPSettings:
    hostname: str
    banner: str = "ESMTP Postar"
    max_message_size: int = 50 * 1024 * 1024  # octets; 0 = no fixed limit (RFC 1870 section 4)
    max_recipients: int = 100  # RFC 5321 4.5.3.1.8: at least 100
    max_line_length: int = 4096  # command line including CRLF
    bare_newlines: BareNewlinePolicy = "normalize"
    tls_active: bool = False  # implicit TLS (port 465) or already upgraded
    starttls_available: bool = False  # a TLS context exists for this listener
    auth_mechanisms: tuple[str, ...] = ()  # offered SASL mechanisms; empty: no AUTH
    auth_required_for_mail: bool = False  # submission: MAIL needs AUTH first (RFC 4954 6)
    smtputf8: bool = True
    eightbitmime: bool = True
    chunking: bool = True
    dsn: bool = True
    pipelining: bool = True
    max_errors: int = 20  # 5xx replies before 421 and hang-up
    max_commands: int = 10000  # command lines per session before 421 and hang-up
    extra_keywords: tuple[str, ...] = field(default=())  # more EHLO lines, e.g. "REQUIRETLS"

    def __post_init__(self) -> None:
        if self.max_line_length < MIN_LINE_LENGTH:
            raise ValueError(f"max_line_length must be at least {MIN_LINE_LENGTH} (RFC 5321)")
        if self.bare_newlines not in ("normalize", "reject"):
            raise ValueError("bare_newlines must be 'normalize' or 'reject'")
        if self.max_recipients < 1 or self.max_errors < 1 or self.max_commands < 1:
            raise ValueError("limits must be positive")
        if self.max_message_size < 0:
            raise ValueError("max_message_size must not be negative")
        mechs = tuple(m.upper() for m in self.auth_mechanisms)
        object.__setattr__(self, "auth_mechanisms", mechs)

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        tls_active: bool,
        starttls_available: bool,
        auth_mechanisms: Sequence[str] = (),
        auth_required_for_mail: bool = False,
    ) -> SMTPSettings:
        """Settings for one listener role; the glue decides TLS and AUTH per connection."""
        policy: BareNewlinePolicy = (
            "reject" if config.smtp.bare_newlines == "reject" else ("normalize")
        )
        return cls(
            hostname=config.hostname,
            banner=config.smtp.banner,
            max_message_size=config.limits.message_size,
            max_recipients=config.limits.recipients_per_message,
            max_line_length=max(config.limits.line_length, MIN_LINE_LENGTH),
            bare_newlines=policy,
            tls_active=tls_active,
            starttls_available=starttls_available,
            auth_mechanisms=tuple(auth_mechanisms),
            auth_required_for_mail=auth_required_for_mail,
            max_errors=config.limits.errors_per_session,
            max_commands=config.limits.commands_per_session,
        )
