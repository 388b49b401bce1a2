"""Typed configuration, read from one TOML file.

Every key has a default, so an empty file (or none at all) gives a working server on loopback.
The contract other tools rely on: top-level ``hostname`` and ``data_dir``, a ``[listen]`` table
mapping roles to "host:port", and ``[tls]`` with optional ``cert`` and ``key``. Everything else
is documented in docs/CONFIGURATION.md and here, next to its default.
"""

from __future__ import annotations

import dataclasses
import socket
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The roles a listener can play, and the TLS mode each one speaks.
# "starttls": plain first, upgraded by STARTTLS/STLS; "implicit": TLS from the first byte;
# "plain": no TLS offered (HTTP only, until the web issue decides otherwise).
ROLE_TLS_MODE: dict[str, str] = {
    "smtp": "starttls",
    "submission": "starttls",
    "submissions": "implicit",
    "smtp-alt": "starttls",
    "pop3": "starttls",
    "pop3s": "implicit",
    "imap": "starttls",
    "imaps": "implicit",
    "http": "plain",
    "https": "implicit",
}

# The well-known port of each role; used by the first-run config (plus an offset, so the
# server runs unprivileged) and by `postar dns` for SRV records.
ROLE_STANDARD_PORT: dict[str, int] = {
    "smtp": 25,
    "submission": 587,
    "submissions": 465,
    "smtp-alt": 2525,
    "pop3": 110,
    "pop3s": 995,
    "imap": 143,
    "imaps": 993,
    "http": 80,
    "https": 443,
}


class ConfigError(ValueError):
    """The configuration file is not valid; the message says which key and why."""


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, role: str, text: str) -> ListenAddress:
        # "host:port", "[v6]:port" or ":port" (all interfaces)
        text = text.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
        else:
            host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"listen.{role}: expected 'host:port', got {text!r}")
        return cls(host or "0.0.0.0", int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TLSConfig:
    cert: Path | None = None  # PEM certificate chain; self-signed in data_dir when absent
    key: Path | None = None  # PEM private key
    min_version: str = "TLSv1.2"


@dataclass(frozen=True)
class LimitsConfig:
    message_size: int = 50 * 1024 * 1024  # bytes; advertised in EHLO SIZE
    recipients_per_message: int = 100  # RFC 5321 4.5.3.1.8 asks for at least 100
    line_length: int = 4096  # longest command line accepted (SMTP/POP3/IMAP commands)
    literal_size: int = 64 * 1024 * 1024  # largest IMAP literal accepted
    connections_total: int = 20000  # open connections across all listeners
    connections_per_ip: int = 200  # open connections from one client address
    smtp_idle_timeout: float = 300.0  # seconds waiting for a command (RFC 5321 4.5.3.2.7)
    pop3_idle_timeout: float = 600.0  # RFC 1939 asks for at least 10 minutes
    imap_idle_timeout: float = 1860.0  # RFC 9051: at least 30 minutes; IDLE clients re-issue at 29
    http_idle_timeout: float = 60.0
    commands_per_session: int = 10000  # a command flood ends the session after this many
    errors_per_session: int = 20  # protocol errors before the server hangs up


@dataclass(frozen=True)
class AuthConfig:
    # Plain-text mechanisms (PLAIN, LOGIN, USER/PASS, IMAP LOGIN) over an unencrypted connection
    # are refused except from loopback, as Dovecot's disable_plaintext_auth does.
    allow_plaintext_without_tls: bool = False
    allow_plaintext_from_loopback: bool = True
    failures_before_delay: int = 3  # failed logins (per IP, per account) before each answer slows
    failure_delay: float = 2.0  # seconds added per failure past the threshold, capped at 15 s
    failures_before_lockout: int = 20  # then refuse that IP/account for lockout_seconds
    lockout_seconds: float = 900.0
    failure_window: float = 3600.0  # failures older than this are forgotten


@dataclass(frozen=True)
class SMTPConfig:
    # Networks (CIDR) whose clients may relay without authentication, e.g. a web app's host.
    trusted_networks: tuple[str, ...] = ()
    # "normalize": a bare LF or CR inside DATA becomes CRLF; "reject": answer 550 5.6.0.
    # Either way only CRLF.CRLF ends the data, so no second message can be smuggled.
    bare_newlines: str = "normalize"
    max_received_headers: int = 50  # loop detection: more than this many Received: is refused
    require_tls_for_auth: bool = True  # AUTH is offered only after STARTTLS (loopback excepted)
    banner: str = "ESMTP Postar"
    # Processes that run the SMTP sessions (each with its own core's worth of Python), beside
    # the one that accepts them: -1 is one per CPU core when there are several, 0 none (all
    # in the serving process). Connection limits and login throttles stay server-wide.
    workers: int = -1

    def __post_init__(self) -> None:
        if self.workers < -1:
            raise ConfigError("smtp.workers must be -1 (one per core), 0 or a positive number")


@dataclass(frozen=True)
class POP3Config:
    # RFC 2449 EXPIRE: "NEVER" leaves mail on the server as long as the client wants.
    expire: str = "NEVER"


@dataclass(frozen=True)
class IMAPConfig:
    # RFC 7888 non-synchronising literals: "plus" offers LITERAL+ ({n+} of any size up to
    # limits.literal_size); "minus" offers LITERAL- ({n+} of at most 4096 octets, larger ones
    # refused with BAD [TOOBIG]), like Dovecot's imap_literal_minus. Never both (section 5).
    literal: str = "plus"

    def __post_init__(self) -> None:
        if self.literal not in ("plus", "minus"):
            raise ConfigError('imap.literal must be "plus" or "minus"')


@dataclass(frozen=True)
class StoreConfig:
    backend: str = "sqlite"  # "sqlite" (embedded default); "postgres" comes later
    default_quota: int = 0  # bytes per account, 0 = unlimited
    # Group commit: deliveries arriving within this window share one transaction and fsync.
    # Extra seconds the writer waits for more deliveries before a commit. 0: commit what is
    # queued at once; deliveries arriving during that commit form the next batch by themselves
    # (one-session SMTP +25% over a 2 ms wait, 20 sessions unchanged, in bench/run).
    group_commit_window: float = 0.0
    fsync: bool = True  # off only for throwaway test data; never in production
    # Bodies up to this many bytes are stored in the database, committed with their rows by
    # one WAL fsync; larger ones are files under data_dir/blobs/. 0 keeps every body a file.
    inline_body_max: int = 64 * 1024
    # Readers map the database file (SQLite's mmap_size) instead of reading it page by page:
    # about half the cost of a small body read. The price: an I/O error on a mapped page
    # stops the process (SIGBUS) instead of failing one request. Off for storage that may
    # fail under a running server (network file systems, failing disks).
    read_mmap: bool = True

    def __post_init__(self) -> None:
        # A stored body is read whole, on the event loop's thread (a point lookup): larger
        # bodies belong in files, which are read in pieces.
        if not 0 <= self.inline_body_max <= 256 * 1024:
            raise ConfigError("store.inline_body_max must be between 0 and 262144 bytes")


@dataclass(frozen=True)
class ProxyProtocolConfig:
    # Roles whose listener expects a PROXY protocol v1/v2 header first (behind a load balancer).
    roles: tuple[str, ...] = ()
    # Only peers in these networks may send a PROXY header; others are refused.
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    timeout: float = 5.0


@dataclass(frozen=True)
class QueueConfig:
    retry_first_seconds: float = 300.0
    # RFC 5321 4.5.4.1: retries at least 30 minutes apart after the first ones; the delay
    # doubles from retry_first_seconds up to this cap.
    retry_max_seconds: float = 3600.0
    delay_warning_seconds: float = 4 * 3600.0
    give_up_seconds: float = 5 * 86400.0
    max_connections: int = 50  # outbound SMTP connections open at once, all destinations
    max_per_destination: int = 4  # open connections to one MX host (or smarthost)
    messages_per_connection: int = 100  # then QUIT and reconnect (connection reuse cap)
    # Client timeouts, RFC 5321 4.5.3.2: greeting 5 min, MAIL/RCPT 5 min, DATA 2 min,
    # each data block 3 min, the final dot 10 min. command_timeout covers the greeting,
    # EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA and data blocks; data_timeout the final dot.
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    line_length: int = 8192  # longest reply line accepted from a peer; longer is garbage


@dataclass(frozen=True)
class DNSConfig:
    # "host" or "host:port" ("[v6]:port"); empty: the system's /etc/resolv.conf.
    nameservers: tuple[str, ...] = ()
    timeout: float = 5.0  # seconds for one lookup, all nameservers together


@dataclass(frozen=True)
class RelayConfig:
    # All outbound mail goes through this "host:port" (a subscription SMTP service) when set.
    smarthost: str = ""
    username: str = ""  # AUTH PLAIN/LOGIN to the smarthost, when given
    password: str = ""
    # The smarthost (and AUTH) only over TLS: STARTTLS required, certificate verified.
    require_tls: bool = True
    # PEM CA bundle for every certificate the outbound side verifies: the smarthost's, MTA-STS
    # policy hosts' and MTA-STS MX hosts' (a private CA, or a test CA); default: system's.
    ca_file: Path | None = None
    # Destination port for MX delivery. 25 on the Internet; other values are a test/staging aid.
    mx_port: int = 25
    # RFC 8461: honour recipient domains' MTA-STS policies on MX delivery.
    mta_sts: bool = True
    # HTTPS port of mta-sts.<domain> policy hosts. 443 on the Internet; a test aid otherwise.
    mta_sts_port: int = 443
    # Per-domain next hops, recipient domain -> "host:port": no MX lookup for that domain.
    routes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    hostname: str = field(default_factory=socket.getfqdn)
    data_dir: Path = Path("./postar-data")
    listen: dict[str, ListenAddress] = field(default_factory=dict)
    tls: TLSConfig = field(default_factory=TLSConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    smtp: SMTPConfig = field(default_factory=SMTPConfig)
    pop3: POP3Config = field(default_factory=POP3Config)
    imap: IMAPConfig = field(default_factory=IMAPConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    proxy_protocol: ProxyProtocolConfig = field(default_factory=ProxyProtocolConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    dns: DNSConfig = field(default_factory=DNSConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    log_level: str = "info"
    source: Path | None = None  # the file this was read from, if any

    @property
    def db_path(self) -> Path:
        return self.data_dir / "postar.sqlite3"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


_SECTIONS: dict[str, type] = {
    "tls": TLSConfig,
    "limits": LimitsConfig,
    "auth": AuthConfig,
    "smtp": SMTPConfig,
    "pop3": POP3Config,
    "imap": IMAPConfig,
    "store": StoreConfig,
    "proxy_protocol": ProxyProtocolConfig,
    "queue": QueueConfig,
    "dns": DNSConfig,
    "relay": RelayConfig,
}


def _build_section(name: str, cls: type, raw: Any, base_dir: Path) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        key_py = key.replace("-", "_")
        if key_py not in fields:
            raise ConfigError(f"[{name}] has no key {key!r}; known: {', '.join(sorted(fields))}")
        default = fields[key_py].default
        if fields[key_py].default_factory is dict:
            # A sub-table of strings, e.g. [relay.routes] "example.org" = "host:port".
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigError(f"[{name}.{key}] must be a table of strings")
            value = dict(value)
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}.{key} must be a list of strings")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{name}.{key} must be true or false")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name}.{key} must be a number")
            value = float(value)
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}.{key} must be a whole number")
        elif default is None or isinstance(default, Path):
            if not isinstance(value, str):
                raise ConfigError(f"{name}.{key} must be a path string")
            path = Path(value).expanduser()
            value = path if path.is_absolute() else base_dir / path
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{name}.{key} must be a string")
        values[key_py] = value
    return cls(**values)


def load_config(path: Path | None) -> Config:
    """Read and validate a TOML configuration; relative paths are relative to its folder."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {path} not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return config_from_dict(raw, base_dir=path.parent.resolve(), source=path)


def config_from_dict(raw: dict[str, Any], base_dir: Path, source: Path | None = None) -> Config:
    kwargs: dict[str, Any] = {"source": source}
    for key, value in raw.items():
        if key == "hostname":
            if not isinstance(value, str) or not value:
                raise ConfigError("hostname must be a non-empty string")
            kwargs["hostname"] = value
        elif key == "data_dir":
            if not isinstance(value, str):
                raise ConfigError("data_dir must be a path string")
            p = Path(value).expanduser()
            kwargs["data_dir"] = p if p.is_absolute() else base_dir / p
        elif key == "log_level":
            kwargs["log_level"] = str(value)
        elif key == "listen":
            if not isinstance(value, dict):
                raise ConfigError('[listen] must be a table of role = "host:port"')
            listen: dict[str, ListenAddress] = {}
            for role, addr in value.items():
                if role not in ROLE_TLS_MODE:
                    raise ConfigError(
                        f"listen.{role}: unknown role; known: {', '.join(ROLE_TLS_MODE)}"
                    )
                if not isinstance(addr, str):
                    raise ConfigError(f'listen.{role} must be a "host:port" string')
                listen[role] = ListenAddress.parse(role, addr)
            kwargs["listen"] = listen
        elif key in _SECTIONS:
            kwargs[key] = _build_section(key, _SECTIONS[key], value, base_dir)
        else:
            raise ConfigError(f"unknown top-level key {key!r}")
    return Config(**kwargs)


def default_config_text(
    data_dir: Path, hostname: str, roles: Iterable[str], port_offset: int = 10000
) -> str:
    """The first-run configuration: the given roles on loopback, standard port + offset."""
    lines = [
        "# Postar configuration, written on first start. Every key is documented in",
        "# docs/CONFIGURATION.md; keys left out take their defaults.",
        f'hostname = "{hostname}"',
        f'data_dir = "{data_dir}"',
        "",
        "[listen]",
    ]
    for role in roles:
        lines.append(f'{role} = "127.0.0.1:{ROLE_STANDARD_PORT[role] + port_offset}"')
    lines += ["", "[tls]", '# cert = "/etc/ssl/mail.pem"', '# key = "/etc/ssl/mail.key"', ""]
    return "\n".join(lines)
