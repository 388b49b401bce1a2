"""Password hashes (argon2id) and SCRAM-SHA-256 verifiers, one pair per account.

Invariants:
- Passwords are SASLprep'ed (RFC 4013) before hashing and before verification, as RFC 4616
  section 4 asks of PLAIN servers and RFC 5802 section 2.2 of SCRAM, so the argon2 hash and
  the SCRAM verifier accept the same strings. A password SASLprep refuses (prohibited code
  points) is used as typed, on both sides alike.
- Verification costs ~0.1-0.2 s of CPU and 64 MiB: protocol code calls verify_password_async,
  which runs it in a worker thread, never on the event loop.
- Hashes are made by argon2-cffi. An argon2id hash that libsodium (PyNaCl, already here for
  DKIM) reads is verified by libsodium: the same function over the same parameters, computed
  by its SIMD code in a little over half the CPU time of argon2-cffi's bundled library (0.13 s
  against 0.22 s for t=3, 64 MiB, p=4 here), which is what a busy server's LOGINs mostly cost.
  libsodium answers every failure alike, so only hashes whose form and parameters it is known
  to accept go to it (`_sodium_verifiable`); anything else stays with argon2-cffi.
- Nothing here logs or keeps a password.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets

import nacl.exceptions
import nacl.pwhash
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from scramp.utils import ScramException, saslprep  # type: ignore[import-untyped]

from postar.store.model import ScramSecrets

# RFC 7677 section 4: "the iteration count ... MUST be at least 4096".
SCRAM_MIN_ITERATIONS = 4096
SCRAM_DEFAULT_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16

# argon2-cffi's defaults are RFC 9106's second recommended profile (argon2id, t=3, 64 MiB, p=4).
_DEFAULT_HASHER = PasswordHasher()


def prepare_password(password: str) -> str:
    """RFC 4013 SASLprep, falling back to the raw string when SASLprep refuses it."""
    try:
        prepared: str = saslprep(password)
    except ScramException:
        return password
    return prepared


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """An argon2id PHC string ("$argon2id$v=19$m=...") for the prepared password."""
    return (hasher or _DEFAULT_HASHER).hash(prepare_password(password))


# "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>", base64 without padding; the
# form libsodium's decoder takes (decimal numbers without leading zeros).
_PHC_ARGON2ID = re.compile(
    r"\$argon2id\$v=19\$m=([1-9][0-9]{0,9}),t=([1-9][0-9]{0,9}),p=([1-9][0-9]{0,7})"
    r"\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)"
)
_SODIUM_MAX_STRING = nacl.pwhash.argon2id.PWHASH_SIZE  # crypto_pwhash_STRBYTES - 1
_ARGON2_MIN_SALT, _ARGON2_MIN_HASH = 8, 16  # argon2's own minimums, which libsodium enforces


def _b64_length(text: str) -> int | None:
    try:
        return len(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError):
        return None


def _sodium_verifiable(password_hash: str) -> bool:
    """Whether libsodium accepts this hash's form and parameters, so that its failure can
    only mean a wrong password."""
    if len(password_hash) > _SODIUM_MAX_STRING:
        return False
    found = _PHC_ARGON2ID.fullmatch(password_hash)
    if found is None:
        return False
    memory_kib, passes, lanes = (int(found.group(i)) for i in (1, 2, 3))
    salt, digest = _b64_length(found.group(4)), _b64_length(found.group(5))
    return (
        nacl.pwhash.argon2id.OPSLIMIT_MIN <= passes <= nacl.pwhash.argon2id.OPSLIMIT_MAX
        and lanes <= 0xFFFFFF
        and memory_kib >= 8 * lanes  # argon2: at least 8 KiB per lane
        and memory_kib * 1024 <= nacl.pwhash.argon2id.MEMLIMIT_MAX
        and salt is not None
        and salt >= _ARGON2_MIN_SALT
        and digest is not None
        and digest >= _ARGON2_MIN_HASH
    )


def verify_password(
    password_hash: str, password: str, hasher: PasswordHasher | None = None
) -> bool:
    """True if password matches; False for a mismatch or a hash we cannot read."""
    hasher = hasher or _DEFAULT_HASHER
    prepared = prepare_password(password)
    if _sodium_verifiable(password_hash):
        try:
            # argon2-cffi hashes the password's bytes in the hasher's encoding (UTF-8).
            return nacl.pwhash.argon2id.verify(
                password_hash.encode("ascii"), prepared.encode(hasher.encoding)
            )
        except nacl.exceptions.InvalidkeyError:
            return False
    try:
        return hasher.verify(password_hash, prepared)
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError):
        # A corrupt or foreign hash in the store: the login fails, it does not crash the session.
        return False


async def verify_password_async(
    password_hash: str, password: str, hasher: PasswordHasher | None = None
) -> bool:
    """verify_password in a worker thread, so a burst of logins does not stall the loop."""
    return await asyncio.to_thread(verify_password, password_hash, password, hasher)


def check_needs_rehash(password_hash: str, hasher: PasswordHasher | None = None) -> bool:
    """True when the hash was made with other parameters than the hasher's (rehash at login)."""
    try:
        return (hasher or _DEFAULT_HASHER).check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def _hi(password: bytes, salt: bytes, iterations: int) -> bytes:
    # RFC 5802 section 2.2: Hi() is PBKDF2 with HMAC as the PRF and one output block.
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def derive_scram_secrets(
    password: str, iterations: int = SCRAM_DEFAULT_ITERATIONS, salt: bytes | None = None
) -> ScramSecrets:
    """The RFC 5802 section 3 verifier for SCRAM-SHA-256 (RFC 7677):
    SaltedPassword = Hi(SASLprep(password), salt, i),
    ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey),
    ServerKey = HMAC(SaltedPassword, "Server Key")."""
    if iterations < SCRAM_MIN_ITERATIONS:
        raise ValueError(f"SCRAM iteration count must be at least {SCRAM_MIN_ITERATIONS}")
    if salt is None:
        salt = secrets.token_bytes(SCRAM_SALT_BYTES)
    salted = _hi(prepare_password(password).encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return ScramSecrets(
        salt=salt, iterations=iterations, stored_key=stored_key, server_key=server_key
    )


class DummyHash:
    """A hash of a random password, verified when the account does not exist, so an unknown
    user costs as much time as a wrong password and timing does not reveal which accounts exist."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher
        self._hash: str | None = None

    def get(self) -> str:
        if self._hash is None:
            self._hash = hash_password(secrets.token_urlsafe(16), self._hasher)
        return self._hash
