from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import scramp

from postar.auth.passwords import derive_scram_secrets
from postar.auth.sasl import (
    CANCELLED,
    Challenge,
    Failure,
    FailureReason,
    LoginMechanism,
    MechanismError,
    NeedPassword,
    NeedScramSecrets,
    PlainMechanism,
    ScramSha256Mechanism,
    Success,
    create_mechanism,
    decode_response,
    decoy_scram_secrets,
    encode_challenge,
)

# ---- RFC 7677 section 3: the SCRAM-SHA-256 example (user "user", password "pencil") ------
RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC7677_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC7677_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC7677_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC7677_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC7677_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_scram_rfc_7677_vector() -> None:
    mech = ScramSha256Mechanism(server_nonce=RFC7677_SERVER_NONCE)
    assert mech.start(RFC7677_CLIENT_FIRST) == NeedScramSecrets("user")
    step = mech.provide_scram_secrets(derive_scram_secrets("pencil", 4096, RFC7677_SALT))
    assert step == Challenge(RFC7677_SERVER_FIRST)
    assert mech.respond(RFC7677_CLIENT_FINAL) == Success("user", RFC7677_SERVER_FINAL)


def test_scram_rfc_7677_vector_wrong_password_fails_at_proof() -> None:
    mech = ScramSha256Mechanism(server_nonce=RFC7677_SERVER_NONCE)
    mech.start(RFC7677_CLIENT_FIRST)
    mech.provide_scram_secrets(derive_scram_secrets("pencils", 4096, RFC7677_SALT))
    step = mech.respond(RFC7677_CLIENT_FINAL)
    assert isinstance(step, Failure) and step.reason is FailureReason.INVALID_CREDENTIALS


def test_scram_without_initial_response_asks_with_empty_challenge() -> None:
    mech = ScramSha256Mechanism()
    assert mech.start(None) == Challenge(b"")
    assert mech.respond(b"n,,n=user,r=abc") == NeedScramSecrets("user")


def _run_scramp_client(password_on_server: str | None, password_on_client: str) -> object:
    client = scramp.ScramClient(["SCRAM-SHA-256"], "alice@example.com", password_on_client)
    mech = ScramSha256Mechanism()
    step = mech.start(client.get_client_first().encode())
    assert step == NeedScramSecrets("alice@example.com")
    secrets_ = derive_scram_secrets(password_on_server) if password_on_server else None
    step = mech.provide_scram_secrets(secrets_)
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    step = mech.respond(client.get_client_final().encode())
    if isinstance(step, Success):
        assert step.final_data is not None
        client.set_server_final(step.final_data.decode())  # raises if the signature is wrong
    return step


def test_scram_full_exchange_with_scramp_client() -> None:
    step = _run_scramp_client("s3cret", "s3cret")
    assert isinstance(step, Success) and step.username == "alice@example.com"
    assert step.final_data is not None and step.final_data.startswith(b"v=")


def test_scram_wrong_password_and_unknown_user_look_alike() -> None:
    wrong = _run_scramp_client("s3cret", "guess")
    unknown = _run_scramp_client(None, "guess")
    assert wrong == unknown == Failure(FailureReason.INVALID_CREDENTIALS, "invalid proof")


class Rfc5802Client:
    """The client side of RFC 5802 section 3, written out here because scramp's client cannot
    send an authzid: GNU SASL clients (gsasl, mutt) send "n,a=<user>,n=<user>,r=..."."""

    def __init__(self, username: str, password: str, authzid: str, nonce: str = "cNonce") -> None:
        self.password = password
        self.gs2_header = f"n,a={authzid}," if authzid else "n,,"
        self.nonce = nonce
        self.bare = f"n={username},r={nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        return (self.gs2_header + self.bare).encode()

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(a.split("=", 1) for a in server_first.decode().split(","))
        assert attrs["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac(
            "sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        # c= carries the whole gs2 header, authzid included (RFC 5802 section 7).
        c = base64.b64encode(self.gs2_header.encode()).decode()
        without_proof = f"c={c},r={attrs['r']}"
        auth_message = f"{self.bare},{server_first.decode()},{without_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(k ^ s for k, s in zip(client_key, signature, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.server_signature = hmac.digest(server_key, auth_message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


@pytest.mark.parametrize(
    "authzid",
    [
        "alice@example.test",  # what gsasl and mutt send
        "Alice@Example.TEST",  # login names compare lower-case (normalize_login)
        "",
    ],
)
def test_scram_authzid_equal_to_user_succeeds(authzid: str) -> None:
    client = Rfc5802Client("alice@example.test", "s3cret", authzid)
    mech = ScramSha256Mechanism()
    assert mech.start(client.first()) == NeedScramSecrets("alice@example.test")
    step = mech.provide_scram_secrets(derive_scram_secrets("s3cret"))
    assert isinstance(step, Challenge)
    step = mech.respond(client.final(step.data))
    expected_v = b"v=" + base64.b64encode(client.server_signature)
    assert step == Success("alice@example.test", expected_v)


def test_scram_authzid_equal_to_user_with_wrong_password_fails_at_proof() -> None:
    client = Rfc5802Client("alice@example.test", "guess", "alice@example.test")
    mech = ScramSha256Mechanism()
    mech.start(client.first())
    step = mech.provide_scram_secrets(derive_scram_secrets("s3cret"))
    assert isinstance(step, Challenge)
    assert mech.respond(client.final(step.data)) == Failure(
        FailureReason.INVALID_CREDENTIALS, "invalid proof"
    )


def test_scram_gs2_header_with_authzid_is_bound_by_c() -> None:
    # The client signed c= for "n,,": sending the header with an authzid must not verify.
    client = Rfc5802Client("alice@example.test", "s3cret", "")
    mech = ScramSha256Mechanism()
    mech.start(b"n,a=alice@example.test," + client.bare.encode())
    step = mech.provide_scram_secrets(derive_scram_secrets("s3cret"))
    assert isinstance(step, Challenge)
    step = mech.respond(client.final(step.data))
    assert isinstance(step, Failure) and step.reason is FailureReason.MALFORMED


@pytest.mark.parametrize(
    "client_first",
    [
        b"n,a=admin,n=user,r=abc",  # no proxy auth
        b"n,a=user=2Cx,n=user,r=abc",  # escaped authzid "user,x" is someone else
        b"y,a=bob@example.test,n=alice@example.test,r=abc",
    ],
)
def test_scram_authzid_other_than_user_is_refused(client_first: bytes) -> None:
    step = ScramSha256Mechanism().start(client_first)
    assert step == Failure(FailureReason.AUTHZ_REFUSED, "authzid differs from authcid")


def test_decoy_salt_is_stable_per_name() -> None:
    assert decoy_scram_secrets("x@y").salt == decoy_scram_secrets("x@y").salt
    assert decoy_scram_secrets("x@y").salt != decoy_scram_secrets("z@y").salt


@pytest.mark.parametrize(
    "client_first",
    [
        b"p=tls-server-end-point,,n=user,r=abc",  # channel binding demanded, not offered
        b"n,a=,n=user,r=abc",  # authzid present but empty (saslname is 1*char)
        b"n,a=bad=name,n=user,r=abc",  # "=" not followed by 2C or 3D
        b"n,x=admin,n=user,r=abc",  # the gs2 header's middle part must be "a="
        b"n,,r=abc",  # no user name
        b"garbage",
        b"n,,n=user,r=abc\xff",
    ],
)
def test_scram_malformed_client_first(client_first: bytes) -> None:
    step = ScramSha256Mechanism().start(client_first)
    assert isinstance(step, Failure) and step.reason is FailureReason.MALFORMED


def test_scram_nonce_mismatch_in_client_final() -> None:
    mech = ScramSha256Mechanism(server_nonce="srv")
    mech.start(b"n,,n=user,r=cli")
    mech.provide_scram_secrets(derive_scram_secrets("pw"))
    step = mech.respond(b"c=biws,r=cliOTHER,p=AAAA")
    assert isinstance(step, Failure) and step.reason is FailureReason.MALFORMED


def test_scram_out_of_order_calls_are_bugs() -> None:
    mech = ScramSha256Mechanism()
    with pytest.raises(MechanismError):
        mech.provide_scram_secrets(None)
    mech.start(b"n,,n=user,r=abc")
    with pytest.raises(MechanismError):
        mech.respond(b"c=biws")
    with pytest.raises(MechanismError):
        mech.password_checked(True)


# ---- PLAIN (RFC 4616) --------------------------------------------------------------------


def test_plain_with_initial_response() -> None:
    mech = PlainMechanism()
    assert mech.start(b"\x00tim\x00tanstaaftanstaaf") == NeedPassword("tim", "", "tanstaaftanstaaf")
    assert mech.password_checked(True) == Success("tim")


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    mech = PlainMechanism()
    assert mech.start(None) == Challenge(b"")
    assert mech.respond(b"Ursel\x00Kurt\x00xipj3plmq") == Failure(
        FailureReason.AUTHZ_REFUSED, "authzid differs from authcid"
    )


def test_plain_authzid_equal_to_authcid_is_accepted() -> None:
    step = PlainMechanism().start(b"Kurt\x00kurt\x00pw")
    assert step == NeedPassword("kurt", "Kurt", "pw")


def test_plain_wrong_password() -> None:
    mech = PlainMechanism()
    mech.start(b"\x00tim\x00x")
    assert mech.password_checked(False) == Failure(FailureReason.INVALID_CREDENTIALS)


@pytest.mark.parametrize(
    "message",
    [
        b"timtanstaaf",  # no NUL
        b"\x00timtanstaaf",  # one NUL
        b"\x00tim\x00tan\x00staaf",  # three NULs
        b"\x00\x00pw",  # empty authcid
        b"\x00tim\x00",  # empty password
        b"\x00t\xffm\x00pw",  # not UTF-8
        b"",
    ],
)
def test_plain_malformed(message: bytes) -> None:
    step = PlainMechanism().start(message)
    assert isinstance(step, Failure) and step.reason is FailureReason.MALFORMED


# ---- LOGIN (draft-murchison-sasl-login) ---------------------------------------------------


def test_login_challenges() -> None:
    mech = LoginMechanism()
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.respond(b"alice@example.com") == Challenge(b"Password:")
    assert mech.respond(b"pw with spaces") == NeedPassword(
        "alice@example.com", "", "pw with spaces"
    )
    assert mech.password_checked(True) == Success("alice@example.com")


def test_login_user_name_as_initial_response() -> None:
    mech = LoginMechanism()
    assert mech.start(b"alice@example.com") == Challenge(b"Password:")


@pytest.mark.parametrize("username", [b"", b"a\xffb", b"a\x00b"])
def test_login_bad_user_name(username: bytes) -> None:
    mech = LoginMechanism()
    mech.start(None)
    step = mech.respond(username)
    assert isinstance(step, Failure) and step.reason is FailureReason.MALFORMED


# ---- wire helpers and the factory ---------------------------------------------------------


def test_decode_response() -> None:
    assert decode_response(b"*") is CANCELLED
    assert decode_response(b"=", initial=True) == b""
    assert decode_response(b"=") is None  # "=" is special only as an initial response
    assert decode_response(b"") == b""
    assert decode_response(b"AGZvbwBiYXI=") == b"\x00foo\x00bar"
    assert decode_response(b"not base64!") is None
    assert decode_response(b"AGZvbwBiYXI") is None  # missing padding
    assert encode_challenge(b"Username:") == b"VXNlcm5hbWU6"


def test_create_mechanism() -> None:
    assert isinstance(create_mechanism("plain"), PlainMechanism)
    assert isinstance(create_mechanism("LOGIN"), LoginMechanism)
    assert isinstance(create_mechanism("SCRAM-SHA-256"), ScramSha256Mechanism)
    assert create_mechanism("CRAM-MD5") is None
    assert create_mechanism("SCRAM-SHA-256-PLUS") is None
