from __future__ import annotations

import base64
from collections.abc import Iterable

import pytest
import scramp

from postar.auth.authenticator import Authenticator, is_loopback
from postar.auth.passwords import derive_scram_secrets, hash_password
from postar.auth.sasl import FailureReason
from postar.auth.throttle import LoginThrottle
from postar.config import AuthConfig
from tests.unit.auth.auth_fakes import FAST_HASHER, FakeClock, FakeStore

REMOTE = "203.0.113.9"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class Wire:
    """The two callbacks of a protocol glue, scripted: the client's lines, the challenges seen."""

    def __init__(self, responses: Iterable[bytes | None] = ()) -> None:
        self.responses = list(responses)
        self.challenges: list[bytes] = []

    async def send(self, challenge: bytes) -> None:
        self.challenges.append(challenge)

    async def receive(self) -> bytes | None:
        assert self.responses, "the exchange asked for more than the client sent"
        return self.responses.pop(0)


class Harness:
    def __init__(self, config: AuthConfig | None = None) -> None:
        self.store = FakeStore()
        self.clock = FakeClock()
        self.sleeps: list[float] = []
        cfg = config or AuthConfig()
        self.auth = Authenticator(
            self.store,
            cfg,
            LoginThrottle(cfg, self.clock),
            hasher=FAST_HASHER,
            sleep=self._sleep,
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    async def add(self, address: str, password: str) -> None:
        await self.store.add_account(
            address, hash_password(password, FAST_HASHER), derive_scram_secrets(password)
        )


@pytest.fixture
async def h() -> Harness:
    harness = Harness()
    await harness.add("alice@example.com", "wonderland")
    return harness


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.2")
    assert not is_loopback(REMOTE) and not is_loopback("") and not is_loopback("::ffff:10.0.0.1")


def test_mechanisms_depend_on_tls_and_loopback() -> None:
    auth = Harness().auth
    assert auth.mechanisms_for(tls_active=False, peer_ip=REMOTE) == ["SCRAM-SHA-256"]
    assert auth.mechanisms_for(tls_active=True, peer_ip=REMOTE) == [
        "SCRAM-SHA-256",
        "PLAIN",
        "LOGIN",
    ]
    assert "PLAIN" in auth.mechanisms_for(tls_active=False, peer_ip="127.0.0.1")
    strict = Harness(AuthConfig(allow_plaintext_from_loopback=False)).auth
    assert strict.mechanisms_for(tls_active=False, peer_ip="127.0.0.1") == ["SCRAM-SHA-256"]
    lax = Harness(AuthConfig(allow_plaintext_without_tls=True)).auth
    assert "LOGIN" in lax.mechanisms_for(tls_active=False, peer_ip=REMOTE)


async def test_plain_initial_response_success(h: Harness) -> None:
    wire = Wire()
    result = await h.auth.authenticate(
        "PLAIN",
        b64(b"\x00Alice@Example.com\x00wonderland"),
        wire.send,
        wire.receive,
        tls_active=True,
        peer_ip=REMOTE,
    )
    assert result.ok and result.account is not None
    assert result.account.address == "alice@example.com"
    assert wire.challenges == []


async def test_plain_refused_in_clear_from_remote(h: Harness) -> None:
    wire = Wire()
    result = await h.auth.authenticate(
        "PLAIN", b64(b"\x00alice@example.com\x00wonderland"), wire.send, wire.receive,
        tls_active=False, peer_ip=REMOTE,
    )  # fmt: skip
    assert result.failure is FailureReason.ENCRYPTION_REQUIRED
    assert h.store.lookups == 0


async def test_plain_empty_challenge_then_response(h: Harness) -> None:
    wire = Wire([b64(b"\x00alice@example.com\x00wonderland")])
    result = await h.auth.authenticate(
        "plain", None, wire.send, wire.receive, tls_active=False, peer_ip="127.0.0.1"
    )
    assert result.ok
    assert wire.challenges == [b""]


@pytest.mark.parametrize(
    ("initial", "responses", "reason"),
    [
        (b"*", [], FailureReason.CANCELLED),
        (None, [b"*"], FailureReason.CANCELLED),
        (None, [None], FailureReason.CANCELLED),  # connection gone
        (b"%%%", [], FailureReason.MALFORMED),
        (None, [b"not base64!"], FailureReason.MALFORMED),
        (b"=", [], FailureReason.MALFORMED),  # empty PLAIN message
        (b64(b"alice@example.com\x00wonderland"), [], FailureReason.MALFORMED),
        (b64(b"bob@example.com\x00alice@example.com\x00wonderland"), [],
         FailureReason.AUTHZ_REFUSED),
        (b64(b"\x00alice@example.com\x00wrong"), [], FailureReason.INVALID_CREDENTIALS),
        (b64(b"\x00nobody@example.com\x00wonderland"), [], FailureReason.INVALID_CREDENTIALS),
    ],
)  # fmt: skip
async def test_plain_failures(
    h: Harness, initial: bytes | None, responses: list[bytes | None], reason: FailureReason
) -> None:
    wire = Wire(responses)
    result = await h.auth.authenticate(
        "PLAIN", initial, wire.send, wire.receive, tls_active=True, peer_ip=REMOTE
    )
    assert not result.ok and result.failure is reason and result.account is None


async def test_login_mechanism(h: Harness) -> None:
    wire = Wire([b64(b"alice@example.com"), b64(b"wonderland")])
    result = await h.auth.authenticate(
        "LOGIN", None, wire.send, wire.receive, tls_active=True, peer_ip=REMOTE
    )
    assert result.ok
    assert wire.challenges == [b64(b"Username:"), b64(b"Password:")]


async def test_unknown_mechanism(h: Harness) -> None:
    wire = Wire()
    result = await h.auth.authenticate(
        "CRAM-MD5", None, wire.send, wire.receive, tls_active=True, peer_ip=REMOTE
    )
    assert result.failure is FailureReason.UNSUPPORTED_MECHANISM


class ScramClientWire(Wire):
    """A scramp client answering our challenges, as a real client would over the wire."""

    def __init__(self, user: str, password: str) -> None:
        super().__init__()
        self.client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
        self.verified = False

    def initial(self) -> bytes:
        return b64(self.client.get_client_first().encode())

    async def receive(self) -> bytes | None:
        data = base64.b64decode(self.challenges[-1]).decode()
        if data.startswith("r="):
            self.client.set_server_first(data)
            return b64(self.client.get_client_final().encode())
        self.client.set_server_final(data)  # checks the server's signature (mutual auth)
        self.verified = True
        return b""


async def test_scram_over_plain_connection(h: Harness) -> None:
    wire = ScramClientWire("alice@example.com", "wonderland")
    result = await h.auth.authenticate(
        "SCRAM-SHA-256", wire.initial(), wire.send, wire.receive,
        tls_active=False, peer_ip=REMOTE,
    )  # fmt: skip
    assert result.ok and wire.verified
    assert len(wire.challenges) == 2  # server-first, then server-final as a challenge


async def test_scram_wrong_password(h: Harness) -> None:
    wire = ScramClientWire("alice@example.com", "guess")
    result = await h.auth.authenticate(
        "SCRAM-SHA-256", wire.initial(), wire.send, wire.receive,
        tls_active=False, peer_ip=REMOTE,
    )  # fmt: skip
    assert result.failure is FailureReason.INVALID_CREDENTIALS
    assert h.auth.throttle.check(REMOTE, "alice@example.com").delay == 0.0  # 1 failure only


async def test_scram_final_response_must_be_empty(h: Harness) -> None:
    class Chatty(ScramClientWire):
        async def receive(self) -> bytes | None:
            answer = await super().receive()
            return answer if not self.verified else b64(b"extra")

    wire = Chatty("alice@example.com", "wonderland")
    result = await h.auth.authenticate(
        "SCRAM-SHA-256", wire.initial(), wire.send, wire.receive,
        tls_active=True, peer_ip=REMOTE,
    )  # fmt: skip
    assert result.failure is FailureReason.MALFORMED


async def test_disabled_account_refused_after_correct_password(h: Harness) -> None:
    h.store.disable("alice@example.com")
    result = await h.auth.login("alice@example.com", "wonderland", tls_active=True, peer_ip=REMOTE)
    assert result.failure is FailureReason.DISABLED
    wire = ScramClientWire("alice@example.com", "wonderland")
    result = await h.auth.authenticate(
        "SCRAM-SHA-256", wire.initial(), wire.send, wire.receive,
        tls_active=True, peer_ip=REMOTE,
    )  # fmt: skip
    assert result.failure is FailureReason.DISABLED


async def test_login_user_pass(h: Harness) -> None:
    ok = await h.auth.login("ALICE@example.com ", "wonderland", tls_active=True, peer_ip=REMOTE)
    assert ok.ok
    refused = await h.auth.login("alice@example.com", "wonderland", tls_active=False,
                                 peer_ip=REMOTE)  # fmt: skip
    assert refused.failure is FailureReason.ENCRYPTION_REQUIRED
    empty = await h.auth.login("alice@example.com", "", tls_active=True, peer_ip=REMOTE)
    assert empty.failure is FailureReason.INVALID_CREDENTIALS


async def test_store_unavailable_is_temporary(h: Harness) -> None:
    h.store.fail_lookups = True
    result = await h.auth.login("alice@example.com", "wonderland", tls_active=True, peer_ip=REMOTE)
    assert result.failure is FailureReason.TEMPORARY


async def test_throttle_delays_then_locks_out() -> None:
    cfg = AuthConfig(failures_before_delay=2, failure_delay=1.0, failures_before_lockout=4)
    h = Harness(cfg)
    await h.add("alice@example.com", "wonderland")
    for _ in range(4):
        r = await h.auth.login("alice@example.com", "guess", tls_active=True, peer_ip=REMOTE)
        assert r.failure is FailureReason.INVALID_CREDENTIALS
    assert h.sleeps == [1.0, 2.0]  # before the 3rd and 4th answers
    lookups = h.store.lookups
    # Locked out: even the right password is not checked, from any address.
    r = await h.auth.login("alice@example.com", "wonderland", tls_active=True, peer_ip="192.0.2.8")
    assert r.failure is FailureReason.LOCKED_OUT and r.retry_after > 0
    wire = Wire()
    r = await h.auth.authenticate(
        "PLAIN", b64(b"\x00bob@example.com\x00x"), wire.send, wire.receive,
        tls_active=True, peer_ip=REMOTE,
    )  # fmt: skip
    assert r.failure is FailureReason.LOCKED_OUT  # the IP is locked too
    assert h.store.lookups == lookups
    h.clock.advance(cfg.lockout_seconds + 1)
    r = await h.auth.login("alice@example.com", "wonderland", tls_active=True, peer_ip=REMOTE)
    assert r.ok
