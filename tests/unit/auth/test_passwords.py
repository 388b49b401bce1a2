from __future__ import annotations

import base64

import pytest
import scramp
from argon2 import PasswordHasher

from postar.auth import passwords
from postar.auth.passwords import (
    check_needs_rehash,
    derive_scram_secrets,
    hash_password,
    verify_password,
    verify_password_async,
)
from tests.unit.auth.auth_fakes import FAST_HASHER


def test_hash_is_argon2id_and_verifies() -> None:
    h = hash_password("correct horse", FAST_HASHER)
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse", FAST_HASHER)
    assert not verify_password(h, "correct horsE", FAST_HASHER)


def test_unreadable_hash_is_a_mismatch_not_a_crash() -> None:
    assert not verify_password("not-a-hash", "x", FAST_HASHER)
    assert not verify_password("$argon2id$v=19$m=64,t=1,p=1$AAAA$AAAA", "x", FAST_HASHER)


async def test_verify_async() -> None:
    h = hash_password("pw", FAST_HASHER)
    assert await verify_password_async(h, "pw", FAST_HASHER)
    assert not await verify_password_async(h, "other", FAST_HASHER)


def test_needs_rehash_when_parameters_change() -> None:
    h = hash_password("pw", FAST_HASHER)
    assert not check_needs_rehash(h, FAST_HASHER)
    stronger = PasswordHasher(time_cost=2, memory_cost=128, parallelism=1)
    assert check_needs_rehash(h, stronger)
    assert check_needs_rehash("garbage", FAST_HASHER)


def test_saslprep_applies_to_hash_and_verify() -> None:
    # RFC 4013 maps SOFT HYPHEN (U+00AD) to nothing, so "I\u00adX" and "IX" are one password.
    h = hash_password("I\u00adX", FAST_HASHER)
    assert verify_password(h, "IX", FAST_HASHER)


def test_scram_secrets_match_scramp_and_rfc_7677_salt() -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    ours = derive_scram_secrets("pencil", 4096, salt)
    m = scramp.ScramMechanism("SCRAM-SHA-256")
    s, stored_key, server_key, i = m.make_auth_info("pencil", iteration_count=4096, salt=salt)
    assert (ours.salt, ours.stored_key, ours.server_key, ours.iterations) == (
        s,
        stored_key,
        server_key,
        i,
    )


def test_scram_secrets_random_salt_and_minimum_iterations() -> None:
    a = derive_scram_secrets("pw")
    b = derive_scram_secrets("pw")
    assert a.salt != b.salt and len(a.salt) == 16
    assert a.iterations >= 4096
    with pytest.raises(ValueError):
        derive_scram_secrets("pw", iterations=1000)


@pytest.mark.parametrize(
    "hasher",
    [
        FAST_HASHER,
        PasswordHasher(time_cost=1, memory_cost=64, parallelism=4),
        PasswordHasher(time_cost=2, memory_cost=256, parallelism=2, salt_len=8, hash_len=16),
        PasswordHasher(time_cost=1, memory_cost=32, parallelism=1, salt_len=24, hash_len=40),
    ],
)
def test_libsodium_and_argon2_cffi_agree(hasher: PasswordHasher) -> None:
    # The hashes libsodium takes over must verify exactly as argon2-cffi verifies them.
    h = hash_password("pässword 1", hasher)
    assert passwords._sodium_verifiable(h)
    assert verify_password(h, "pässword 1", hasher) and hasher.verify(h, "pässword 1")
    assert not verify_password(h, "pässword 2", hasher)
    assert not verify_password(h, "", hasher)


def test_hashes_libsodium_would_refuse_stay_with_argon2_cffi() -> None:
    # Longer than libsodium's 127-character strings: argon2-cffi verifies it.
    long_hash = hash_password("pw", PasswordHasher(time_cost=1, memory_cost=64, hash_len=96))
    assert not passwords._sodium_verifiable(long_hash)
    assert verify_password(long_hash, "pw", FAST_HASHER)
    assert not verify_password(long_hash, "x", FAST_HASHER)
    assert not passwords._sodium_verifiable("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$" + "A" * 22)
    for odd in (
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$" + "A" * 22,  # a 4-byte salt, under argon2's 8
        "$argon2id$v=16$m=8,t=1,p=1$c2FsdHNhbHQ$" + "A" * 22,  # old version
        "$argon2id$v=19$m=08,t=1,p=1$c2FsdHNhbHQ$" + "A" * 22,  # leading zero
        "$argon2id$v=19$m=8,t=1,p=2$c2FsdHNhbHQ$" + "A" * 22,  # under 8 KiB per lane
        "$argon2id$v=19$m=8,t=1,p=1,keyid=x$c2FsdHNhbHQ$" + "A" * 22,
    ):
        assert not passwords._sodium_verifiable(odd)
        assert not verify_password(odd, "pw", FAST_HASHER)
