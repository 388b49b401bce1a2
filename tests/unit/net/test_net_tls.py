"""Server TLS contexts: configured files, and the first-run self-signed certificate."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from postar.config import Config, ConfigError, TLSConfig
from postar.net.tls import (
    ASYNCIO_TLS_READ_BUFFER,
    SELF_SIGNED_CERT,
    SELF_SIGNED_KEY,
    build_server_context,
    ensure_self_signed,
    limit_asyncio_tls_buffer,
    load_server_context,
)


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str:
    """One TLS handshake over a socketpair; returns the negotiated version."""
    a, b = socket.socketpair()
    result: dict[str, str] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as tls:
                result["server"] = tls.version() or ""
        except (ssl.SSLError, OSError) as exc:
            result["server_error"] = repr(exc)
            a.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname="localhost") as tls:
            version = tls.version() or ""
    finally:
        t.join(5)
    assert result["server"] == version
    return version


def test_self_signed_created_with_private_key_mode(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path / "tls", "mail.example.test")
    assert cert_path.name == SELF_SIGNED_CERT and key_path.name == SELF_SIGNED_KEY
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mail.example.test", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=3650) <= lifetime <= datetime.timedelta(days=3652)
    assert list(tmp_path.joinpath("tls").glob("*.tmp")) == []


def test_self_signed_reused_on_next_start(tmp_path: Path) -> None:
    cert1, key1 = ensure_self_signed(tmp_path, "mail.example.test")
    before = (cert1.read_bytes(), key1.read_bytes())
    cert2, key2 = ensure_self_signed(tmp_path, "mail.example.test")
    assert (cert2.read_bytes(), key2.read_bytes()) == before


def test_self_signed_renewed_for_new_hostname_or_expiry(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path, "old.example.test")
    first = cert.read_bytes()
    ensure_self_signed(tmp_path, "new.example.test")
    second = cert.read_bytes()
    assert second != first
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3640)
    ensure_self_signed(tmp_path, "new.example.test", now=later)
    assert cert.read_bytes() != second


def test_self_signed_with_ip_hostname(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path, "192.0.2.10")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.0.2.10") in san.get_values_for_type(x509.IPAddress)


def test_load_server_context_self_signed_handshake(tmp_path: Path) -> None:
    config = Config(hostname="mail.example.test", data_dir=tmp_path)
    server_ctx = load_server_context(config)
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "tls" / SELF_SIGNED_CERT))
    assert handshake(server_ctx, client_ctx) in ("TLSv1.2", "TLSv1.3")


def test_load_server_context_configured_files(tmp_path: Path, ca: trustme.CA) -> None:
    leaf = ca.issue_cert("localhost")
    cert = tmp_path / "chain.pem"
    key = tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    config = Config(data_dir=tmp_path, tls=TLSConfig(cert=cert, key=key, min_version="TLSv1.3"))
    server_ctx = load_server_context(config)
    assert server_ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    assert handshake(server_ctx, client_ctx) == "TLSv1.3"
    assert not (tmp_path / "tls").exists()  # no self-signed pair when files are configured


def test_tls12_client_refused_by_tls13_floor(tmp_path: Path) -> None:
    server_ctx = load_server_context(
        Config(hostname="localhost", data_dir=tmp_path, tls=TLSConfig(min_version="TLSv1.3"))
    )
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "tls" / SELF_SIGNED_CERT))
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(server_ctx, client_ctx)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both cert and key"):
        load_server_context(Config(data_dir=tmp_path, tls=TLSConfig(cert=tmp_path / "c.pem")))
    with pytest.raises(ConfigError, match="min_version"):
        load_server_context(Config(data_dir=tmp_path, tls=TLSConfig(min_version="SSLv3")))
    with pytest.raises(ConfigError, match="cannot read"):
        build_server_context(tmp_path / "missing.pem", tmp_path / "missing.key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a valid PEM"):
        build_server_context(garbage, garbage)


def test_limit_asyncio_tls_buffer_only_shrinks() -> None:
    from asyncio import sslproto

    limit_asyncio_tls_buffer()
    assert sslproto.SSLProtocol.max_size == ASYNCIO_TLS_READ_BUFFER
    limit_asyncio_tls_buffer(1024 * 1024)
    assert sslproto.SSLProtocol.max_size == ASYNCIO_TLS_READ_BUFFER
