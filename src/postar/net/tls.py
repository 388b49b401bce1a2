"""The server's TLS context: one for every listener (STARTTLS and implicit TLS alike).

With ``[tls] cert`` and ``key`` configured those files are used. Without them the server makes
a self-signed certificate on first start in ``data_dir/tls/`` and reuses it afterwards, so a new
install speaks TLS at once (clients must be told to accept it; real deployments configure a
CA-issued certificate). The self-signed certificate is ECDSA P-256: every TLS 1.2+ client
supports it and its handshakes cost a fraction of RSA's.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import secrets
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postar.config import Config, ConfigError, TLSConfig

from ._log import log_event

SELF_SIGNED_CERT = "selfsigned.crt"
SELF_SIGNED_KEY = "selfsigned.key"
SELF_SIGNED_VALIDITY = datetime.timedelta(days=3650)
# Regenerate a self-signed certificate this close to expiry, so a restart renews it.
SELF_SIGNED_RENEW_BEFORE = datetime.timedelta(days=30)

_TLS_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def _san_entries(hostname: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in (hostname, "localhost", "127.0.0.1", "::1"):
        if name in seen:
            continue
        seen.add(name)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def _write_private(path: Path, data: bytes, mode: int) -> None:
    # Write beside the target and rename, so a crash never leaves half a key; the file is
    # created with its final mode, so the key is never readable by others, not even briefly.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def generate_self_signed(
    hostname: str, *, now: datetime.datetime | None = None
) -> tuple[bytes, bytes]:
    """A new self-signed certificate and key for `hostname`, as (cert PEM, key PEM)."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated a day so a client whose clock is slightly behind still accepts it.
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + SELF_SIGNED_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_san_entries(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def _reusable(cert_path: Path, key_path: Path, hostname: str, now: datetime.datetime) -> bool:
    if not cert_path.is_file() or not key_path.is_file():
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound, OSError):
        return False
    if cert.not_valid_after_utc - SELF_SIGNED_RENEW_BEFORE < now:
        return False
    # A changed `hostname` in the config must show up in the certificate clients see.
    try:
        wanted: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        wanted = x509.DNSName(hostname)
    return wanted in san


def ensure_self_signed(
    directory: Path, hostname: str, *, now: datetime.datetime | None = None
) -> tuple[Path, Path]:
    """The self-signed (cert, key) paths in `directory`, made on first use and reused after.

    Regenerated when missing, unreadable, within 30 days of expiry, or not naming `hostname`.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path = directory / SELF_SIGNED_CERT
    key_path = directory / SELF_SIGNED_KEY
    if _reusable(cert_path, key_path, hostname, now):
        return cert_path, key_path
    cert_pem, key_pem = generate_self_signed(hostname, now=now)
    # The key first: a cert without its key is useless, a stale cert is replaced next start.
    _write_private(key_path, key_pem, 0o600)
    _write_private(cert_path, cert_pem, 0o644)
    log_event(logging.INFO, "tls.self_signed_created", cert=str(cert_path), hostname=hostname)
    return cert_path, key_path


def build_server_context(cert: Path, key: Path, min_version: str = "TLSv1.2") -> ssl.SSLContext:
    """A server SSLContext from PEM files, with our protocol floor and options."""
    version = _TLS_VERSIONS.get(min_version)
    if version is None:
        raise ConfigError(
            f"tls.min_version: expected one of {', '.join(_TLS_VERSIONS)}, got {min_version!r}"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = version
    # Client-initiated renegotiation is a CPU-exhaustion vector and no mail client needs it.
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except FileNotFoundError as exc:
        raise ConfigError(f"tls: cannot read {exc.filename}") from exc
    except ssl.SSLError as exc:
        raise ConfigError(f"tls: {cert} and {key} are not a valid PEM certificate and key") from exc
    return ctx


# asyncio's SSL layer (3.11) gives every TLS connection a 256 KiB read buffer, allocated and
# zeroed up front: about 270 KB of RSS per idle IMAPS client, five times the rest of the
# connection. `max_size` is the class attribute it sizes that buffer (and each decrypted
# read) from; 32 KiB still holds two full TLS records (16 KiB each), so only bulk uploads
# pay a few more read calls. uvloop has its own SSL layer and is not affected.
ASYNCIO_TLS_READ_BUFFER = 32 * 1024


def limit_asyncio_tls_buffer(size: int = ASYNCIO_TLS_READ_BUFFER) -> None:
    """Shrink asyncio's per-TLS-connection read buffer to `size` (never grow it)."""
    from asyncio import sslproto

    protocol = getattr(sslproto, "SSLProtocol", None)
    current = getattr(protocol, "max_size", None)
    if protocol is not None and isinstance(current, int) and current > size:
        protocol.max_size = size


def load_server_context(config: Config) -> ssl.SSLContext:
    """The server context from [tls], or from the self-signed pair in data_dir/tls/."""
    tls: TLSConfig = config.tls
    if (tls.cert is None) != (tls.key is None):
        raise ConfigError("tls: set both cert and key, or neither (self-signed)")
    if tls.cert is not None and tls.key is not None:
        return build_server_context(tls.cert, tls.key, tls.min_version)
    cert, key = ensure_self_signed(config.data_dir / "tls", config.hostname)
    return build_server_context(cert, key, tls.min_version)
