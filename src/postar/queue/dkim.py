"""DKIM keys per domain and signing of outbound mail (RFC 6376; ed25519-sha256 per RFC 8463).

Keys live in data_dir/dkim/<domain>/<selector>.<algorithm>.key, made when a domain is added
(`postar domain add`): one RSA 2048-bit key (rsa-sha256, which every verifier knows) and one
Ed25519 key (RFC 8463 section 6 recommends signing with both while verifiers catch up).
RSA keys are PKCS#8 PEM; Ed25519 keys are the base64 32-byte seed dkimpy expects. Files are
mode 0600.

Signing uses dkimpy. The signing domain is the domain of the From: header when we hold keys
for it (the alignment DMARC checks, RFC 7489 3.1.1), else the envelope sender's domain.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type information
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}
SIGN_IN_THREAD_ABOVE = 256 * 1024
# RFC 6376 5.4.1: From must be signed; the rest are the fields a replay would want to change.
SIGNED_HEADERS = [
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"in-reply-to",
    b"references", b"mime-version", b"content-type", b"content-transfer-encoding",
    b"list-id", b"list-unsubscribe",
]  # fmt: skip


# Fields that an MTA on the way may add when the message lacks them (RFC 6409 8.2, 8.3 for
# submission servers; Postfix's cleanup for "local" clients; Exchange): naming an absent one in
# h= (RFC 6376 5.4.2's guard against additions) would make that addition break the signature,
# as the Postfix interoperation test showed. They are signed when present.
ADDED_IN_TRANSIT = frozenset({b"date", b"message-id"})


def headers_to_sign(raw: bytes) -> list[bytes]:
    end = raw.find(b"\r\n\r\n")
    block = raw[: end if end >= 0 else len(raw)]
    present = {
        line.split(b":", 1)[0].strip().lower()
        for line in block.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t") and b":" in line
    }
    return [h for h in SIGNED_HEADERS if h not in ADDED_IN_TRANSIT or h in present]


@dataclass(frozen=True)
class DKIMKey:
    domain: str
    selector: str
    kind: str  # "rsa" | "ed25519"
    private: bytes  # what dkimpy's sign() takes
    public_b64: str  # the p= value

    @property
    def algorithm(self) -> bytes:
        return ALGORITHMS[self.kind]

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record_value(self) -> str:
        # RFC 6376 3.6.1; k=ed25519 from RFC 8463 section 4.2
        return f"v=DKIM1; k={self.kind}; p={self.public_b64}"


def key_dir(data_dir: Path, domain: str) -> Path:
    return data_dir / "dkim" / domain.lower().rstrip(".")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def create_keys(data_dir: Path, domain: str, now: float | None = None) -> list[DKIMKey]:
    """Make an RSA and an Ed25519 key for domain unless it has keys already; return its keys."""
    existing = load_keys(data_dir, domain)
    if existing:
        return existing
    folder = key_dir(data_dir, domain)
    folder.mkdir(parents=True, exist_ok=True)
    # Selectors carry the month of creation, so a rotated key gets a fresh name.
    stamp = time.strftime("%Y%m", time.gmtime(now if now is not None else time.time()))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(
        folder / f"rsa{stamp}.rsa.key",
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    ed_key = ed25519.Ed25519PrivateKey.generate()
    seed = ed_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    _write_private(folder / f"ed{stamp}.ed25519.key", base64.b64encode(seed) + b"\n")
    return load_keys(data_dir, domain)


def _load_key(domain: str, path: Path) -> DKIMKey | None:
    selector, _, rest = path.name.partition(".")
    kind = rest.removesuffix(".key")
    data = path.read_bytes()
    if kind == "rsa":
        key = serialization.load_pem_private_key(data, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        # RFC 6376 3.6.1: p= is the DER SubjectPublicKeyInfo, base64.
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return DKIMKey(domain, selector, kind, data, base64.b64encode(der).decode())
    if kind == "ed25519":
        seed = base64.b64decode(data.strip())
        ed = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        # RFC 8463 section 4.2: p= is the raw 32-byte public key, base64.
        raw = ed.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return DKIMKey(domain, selector, kind, data.strip(), base64.b64encode(raw).decode())
    return None


def load_keys(data_dir: Path, domain: str) -> list[DKIMKey]:
    folder = key_dir(data_dir, domain)
    if not folder.is_dir():
        return []
    keys = [_load_key(domain.lower(), p) for p in sorted(folder.glob("*.key"))]
    # RSA first: a verifier that stops at the first signature most likely knows rsa-sha256.
    return sorted((k for k in keys if k), key=lambda k: (k.kind != "rsa", k.selector))


def from_domain(raw: bytes) -> str | None:
    """The domain of the (first) From: address in the header block."""
    header = raw[: raw.find(b"\r\n\r\n") + 2] if b"\r\n\r\n" in raw else raw
    value: list[str] = []
    collecting = False
    for line in header.decode("utf-8", "replace").split("\r\n"):
        if collecting and line[:1] in (" ", "\t"):
            value.append(line)
            continue
        if collecting:
            break
        if line.lower().startswith("from:"):
            value.append(line[5:])
            collecting = True
    if not value:
        return None
    addresses = getaddresses(["".join(value)])
    for _name, addr in addresses:
        if "@" in addr:
            return addr.rsplit("@", 1)[1].lower().rstrip(".")
    return None


class Signer:
    """Signs with the keys of data_dir/dkim; keys are read once per domain and cached."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._cache: dict[str, list[DKIMKey]] = {}

    def keys_for(self, domain: str) -> list[DKIMKey]:
        domain = domain.lower()
        if domain not in self._cache:
            self._cache[domain] = load_keys(self.data_dir, domain)
        return self._cache[domain]

    def signing_domain(self, raw: bytes, sender: str) -> str | None:
        for candidate in (from_domain(raw), sender.rsplit("@", 1)[1] if "@" in sender else None):
            if candidate and self.keys_for(candidate):
                return candidate
        return None

    def sign_headers(self, raw: bytes, sender: str) -> bytes:
        """DKIM-Signature fields to prepend to raw (b"" when no key applies)."""
        domain = self.signing_domain(raw, sender)
        if domain is None:
            return b""
        out: list[bytes] = []
        for key in self.keys_for(domain):
            sig = dkim.sign(
                raw,
                key.selector.encode(),
                domain.encode(),
                key.private,
                include_headers=headers_to_sign(raw),
                signature_algorithm=key.algorithm,
                canonicalize=(b"relaxed", b"relaxed"),
            )
            out.append(sig.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        # Each signature covers the message without the others, so verifiers check each alone.
        return b"".join(reversed(out))

    async def sign(self, raw: bytes, sender: str) -> bytes:
        if len(raw) > SIGN_IN_THREAD_ABOVE:
            return await asyncio.to_thread(self.sign_headers, raw, sender)
        return self.sign_headers(raw, sender)
