from __future__ import annotations

import base64

import pytest
import scramp
from argon2 import PasswordHasher

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
