"""One authentication conversation, run for SMTP AUTH, IMAP AUTHENTICATE/LOGIN and POP3
AUTH/USER+PASS alike, so the protocol glue only moves lines.

The glue supplies two callbacks that speak the wire form of its protocol:
- send_challenge(b64): write the challenge line ("334 " + b64 in SMTP, "+ " + b64 in IMAP and
  POP3); b64 is already base64 (possibly empty).
- receive_response(): the client's next line without CRLF, as sent (base64 or "*"); None if
  the connection closed or the line could not be read (too long).

Invariants:
- Plain-text mechanisms and USER/PASS/LOGIN are refused on a connection without TLS unless
  AuthConfig allows it (loopback, or everywhere) — RFC 8314 section 5.1, RFC 2595 section 3.1.
- Every password check waits for the throttle's delay first, whatever the outcome, and a
  locked-out IP or account gets LOCKED_OUT without its password being looked at.
- Unknown accounts cost one argon2 verification like known ones, so timing does not tell
  which accounts exist; disabled accounts are refused (DISABLED) only after a correct password.
- Additional data with success (SCRAM's server-final) is sent as one more challenge, and the
  client must answer it with an empty response: SMTP (RFC 4954 section 4), POP3 (RFC 5034
  section 4) and IMAP (RFC 9051 section 6.2.2) all allow this form.
- Nothing here logs or keeps a password; AuthResult holds no secret.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from argon2 import PasswordHasher

from postar.auth.passwords import DummyHash, verify_password_async
from postar.auth.sasl import (
    ALL_MECHANISMS,
    PLAINTEXT_MECHANISMS,
    Cancelled,
    Challenge,
    Failure,
    FailureReason,
    NeedPassword,
    NeedScramSecrets,
    Step,
    Success,
    create_mechanism,
    decode_response,
    encode_challenge,
    normalize_login,
)
from postar.auth.throttle import LoginThrottle
from postar.config import AuthConfig
from postar.store.interface import StoreError
from postar.store.model import Account

SendChallenge = Callable[[bytes], Awaitable[None]]
ReceiveResponse = Callable[[], Awaitable[bytes | None]]


class AccountLookup(Protocol):
    """The one Store method authentication needs."""

    async def get_account(self, address: str) -> Account | None: ...


@dataclass(frozen=True)
class AuthResult:
    account: Account | None  # set exactly when the client is authenticated
    failure: FailureReason | None = None
    username: str | None = None  # the (normalised) identity tried, for logs
    retry_after: float = 0.0  # with LOCKED_OUT: seconds until the lockout ends

    @property
    def ok(self) -> bool:
        return self.account is not None


@functools.lru_cache(maxsize=4096)  # asked at every EHLO, CAPA and CAPABILITY
def is_loopback(peer_ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(peer_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


class Authenticator:
    def __init__(
        self,
        accounts: AccountLookup,
        config: AuthConfig,
        throttle: LoginThrottle | None = None,
        *,
        hasher: PasswordHasher | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = accounts
        self._config = config
        self.throttle = throttle if throttle is not None else LoginThrottle(config, clock)
        self._hasher = hasher
        self._sleep = sleep
        self._dummy = DummyHash(hasher)

    # ---- what to advertise ---------------------------------------------------------------
    def plaintext_allowed(self, tls_active: bool, peer_ip: str) -> bool:
        """May the password travel in the clear on this connection?"""
        if tls_active or self._config.allow_plaintext_without_tls:
            return True
        return self._config.allow_plaintext_from_loopback and is_loopback(peer_ip)

    def mechanisms_for(self, tls_active: bool, peer_ip: str) -> list[str]:
        """SASL mechanisms to advertise (EHLO AUTH, CAPABILITY AUTH=, CAPA SASL)."""
        plain_ok = self.plaintext_allowed(tls_active, peer_ip)
        return [m for m in ALL_MECHANISMS if plain_ok or m not in PLAINTEXT_MECHANISMS]

    # ---- conversations ---------------------------------------------------------------------
    async def login(
        self, username: str, password: str, *, tls_active: bool, peer_ip: str
    ) -> AuthResult:
        """USER/PASS (RFC 1939 section 7) and IMAP LOGIN: a name and a password, no SASL."""
        if not self.plaintext_allowed(tls_active, peer_ip):
            return AuthResult(None, FailureReason.ENCRYPTION_REQUIRED)
        name = normalize_login(username)
        if not name or not password:
            return AuthResult(None, FailureReason.INVALID_CREDENTIALS, name)
        locked = self._locked(peer_ip, name)
        if locked is not None:
            return locked
        return await self._check_password(name, password, peer_ip)

    async def authenticate(
        self,
        mechanism: str,
        initial_response: bytes | None,
        send_challenge: SendChallenge,
        receive_response: ReceiveResponse,
        *,
        tls_active: bool,
        peer_ip: str,
    ) -> AuthResult:
        """Run a whole SASL exchange. initial_response is the wire form from the command line
        ("=" for an empty one, RFC 4954/4959/5034), or None when the client sent none."""
        mech = create_mechanism(mechanism)
        if mech is None:
            return AuthResult(None, FailureReason.UNSUPPORTED_MECHANISM)
        if mech.name in PLAINTEXT_MECHANISMS and not self.plaintext_allowed(tls_active, peer_ip):
            return AuthResult(None, FailureReason.ENCRYPTION_REQUIRED)
        locked = self._locked(peer_ip, None)
        if locked is not None:
            return locked

        initial: bytes | None = None
        if initial_response is not None:
            decoded = decode_response(initial_response, initial=True)
            if isinstance(decoded, Cancelled):
                return AuthResult(None, FailureReason.CANCELLED)
            if decoded is None:
                return AuthResult(None, FailureReason.MALFORMED)
            initial = decoded

        step: Step = mech.start(initial)
        name: str | None = None
        account: Account | None = None
        while True:
            match step:
                case Challenge(data=data):
                    answer = await self._exchange(data, send_challenge, receive_response)
                    if isinstance(answer, FailureReason):
                        return AuthResult(None, answer, name)
                    step = mech.respond(answer)
                case NeedPassword(authcid=authcid, password=password):
                    name = normalize_login(authcid)
                    locked = self._locked(peer_ip, name)
                    if locked is not None:
                        return locked
                    result = await self._check_password(name, password, peer_ip)
                    # The mechanism only learns yes/no; the result already says why.
                    mech.password_checked(result.ok)
                    return result
                case NeedScramSecrets(username=username):
                    name = normalize_login(username)
                    locked = self._locked(peer_ip, name)
                    if locked is not None:
                        return locked
                    decision = self.throttle.check(peer_ip, name)
                    if decision.delay:
                        await self._sleep(decision.delay)
                    try:
                        account = await self._accounts.get_account(name)
                    except StoreError:
                        return AuthResult(None, FailureReason.TEMPORARY, name)
                    step = mech.provide_scram_secrets(account.scram if account else None)
                case Success(final_data=final_data):
                    if final_data is not None:
                        answer = await self._exchange(final_data, send_challenge, receive_response)
                        if isinstance(answer, FailureReason):
                            return AuthResult(None, answer, name)
                        if answer:
                            return AuthResult(None, FailureReason.MALFORMED, name)
                    assert name is not None
                    if account is None:
                        # A decoy verifier cannot produce Success; an account that vanished
                        # mid-exchange can (removed between lookup and proof).
                        return AuthResult(None, FailureReason.INVALID_CREDENTIALS, name)
                    self.throttle.record_success(name)
                    if account.disabled:
                        return AuthResult(None, FailureReason.DISABLED, name)
                    return AuthResult(account, None, name)
                case Failure(reason=reason):
                    if reason is FailureReason.INVALID_CREDENTIALS:
                        self.throttle.record_failure(peer_ip, name)
                    return AuthResult(None, reason, name)

    # ---- pieces ----------------------------------------------------------------------------
    async def _exchange(
        self, data: bytes, send_challenge: SendChallenge, receive_response: ReceiveResponse
    ) -> bytes | FailureReason:
        await send_challenge(encode_challenge(data))
        line = await receive_response()
        if line is None:
            return FailureReason.CANCELLED
        decoded = decode_response(line)
        if isinstance(decoded, Cancelled):
            return FailureReason.CANCELLED
        if decoded is None:
            return FailureReason.MALFORMED
        return decoded

    def _locked(self, peer_ip: str, name: str | None) -> AuthResult | None:
        decision = self.throttle.check(peer_ip, name)
        if decision.locked_out:
            return AuthResult(
                None, FailureReason.LOCKED_OUT, name, retry_after=decision.retry_after
            )
        return None

    async def _check_password(self, name: str, password: str, peer_ip: str) -> AuthResult:
        decision = self.throttle.check(peer_ip, name)
        if decision.delay:
            await self._sleep(decision.delay)
        try:
            account = await self._accounts.get_account(name)
        except StoreError:
            return AuthResult(None, FailureReason.TEMPORARY, name)
        valid = False
        if account is None:
            dummy = await asyncio.to_thread(self._dummy.get)
            await verify_password_async(dummy, password, self._hasher)
        else:
            valid = await verify_password_async(account.password_hash, password, self._hasher)
        if account is None or not valid:
            self.throttle.record_failure(peer_ip, name)
            return AuthResult(None, FailureReason.INVALID_CREDENTIALS, name)
        self.throttle.record_success(name)
        if account.disabled:
            return AuthResult(None, FailureReason.DISABLED, name)
        return AuthResult(account, None, name)
