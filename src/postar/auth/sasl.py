"""SASL server mechanisms (RFC 4422), sans-I/O, shared by SMTP, IMAP and POP3.

A mechanism turns the client's decoded responses into steps; it never touches a socket, the
store or a clock. The caller (normally authenticator.Authenticator) drives it:

    mech = create_mechanism("PLAIN")
    step = mech.start(initial_response)          # bytes, or None when the client sent none
    while True:
        match step:
            case Challenge(data):      step = mech.respond(<client's next response>)
            case NeedPassword(...):    step = mech.password_checked(<verify it>)
            case NeedScramSecrets(u):  step = mech.provide_scram_secrets(<account's secrets>)
            case Success() | Failure(): break

Invariants:
- Payloads here are decoded bytes; base64 and the "*" cancel line belong to the wire helpers
  at the bottom of this module (RFC 4954 section 4, RFC 9051 section 6.2.2, RFC 5034 section 4).
- Proxy authentication is not offered: an authorization identity other than the
  authentication identity fails with AUTHZ_REFUSED (RFC 4422 section 3.4.1 lets us refuse);
  one equal to it (after normalize_login) is accepted, as GNU SASL clients send it.
- SCRAM never reveals whether an account exists: an unknown account (or one without a SCRAM
  verifier) gets a decoy salt derived from its name, and the exchange fails at the proof
  like a wrong password (RFC 5802 section 9 asks for this).
- Channel binding is not offered: SCRAM-SHA-256 only, a "p=" gs2 flag is refused.
"""

from __future__ import annotations

import abc
import base64
import binascii
import enum
import hmac
import secrets
from dataclasses import dataclass

from postar.auth import scram
from postar.auth.passwords import SCRAM_DEFAULT_ITERATIONS, SCRAM_SALT_BYTES
from postar.store.model import ScramSecrets

PLAIN = "PLAIN"
LOGIN = "LOGIN"
SCRAM_SHA_256 = "SCRAM-SHA-256"

# Mechanisms that carry the password itself: offered only over TLS or from loopback.
PLAINTEXT_MECHANISMS = frozenset({PLAIN, LOGIN})
# Advertised strongest first: clients that pick the first one they know pick SCRAM.
ALL_MECHANISMS = (SCRAM_SHA_256, PLAIN, LOGIN)


class FailureReason(enum.Enum):
    """Why an exchange failed; protocols map each to their own reply (see authenticator)."""

    INVALID_CREDENTIALS = "invalid-credentials"  # unknown user, wrong password, bad proof
    MALFORMED = "malformed"  # the client's data broke the mechanism's grammar
    CANCELLED = "cancelled"  # the client sent "*" or went away
    AUTHZ_REFUSED = "authz-refused"  # authzid differs from authcid (no proxy auth)
    UNSUPPORTED_MECHANISM = "unsupported-mechanism"
    ENCRYPTION_REQUIRED = "encryption-required"  # plaintext mechanism without TLS
    DISABLED = "disabled"  # right password, account disabled
    LOCKED_OUT = "locked-out"  # too many failures: come back later
    TEMPORARY = "temporary"  # our side failed (store unavailable)


@dataclass(frozen=True)
class Challenge:
    data: bytes  # decoded; the caller base64-encodes it for the wire


@dataclass(frozen=True)
class NeedPassword:
    authcid: str
    authzid: str  # "" when the client sent none
    password: str


@dataclass(frozen=True)
class NeedScramSecrets:
    username: str  # SASLprep'ed, unescaped (RFC 5802 section 5.1 "n=")


@dataclass(frozen=True)
class Success:
    username: str
    final_data: bytes | None = None  # additional data with success (SCRAM's "v=")


@dataclass(frozen=True)
class Failure:
    reason: FailureReason
    detail: str = ""  # for logs only: never sent to the client, never contains secrets


Step = Challenge | NeedPassword | NeedScramSecrets | Success | Failure


class MechanismError(Exception):
    """The caller drove a mechanism out of order: a bug in the glue, not the client's fault."""


class Mechanism(abc.ABC):
    name: str

    @abc.abstractmethod
    def start(self, initial_response: bytes | None) -> Step:
        """Begin; initial_response is the decoded RFC 4422 section 4 initial response."""

    @abc.abstractmethod
    def respond(self, data: bytes) -> Step:
        """The client's (decoded) answer to the last Challenge."""

    def password_checked(self, valid: bool) -> Step:
        """After NeedPassword: whether the password (and account) checked out."""
        raise MechanismError(f"{self.name} does not ask for a password check")

    def provide_scram_secrets(self, secrets_: ScramSecrets | None) -> Step:
        """After NeedScramSecrets: the account's verifier, or None if there is none."""
        raise MechanismError(f"{self.name} does not ask for SCRAM secrets")


def normalize_login(name: str) -> str:
    """Login names are account addresses, stored lower-case (model.Account.address)."""
    return name.strip().lower()


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _PasswordMechanism(Mechanism):
    """Shared tail of PLAIN and LOGIN: one NeedPassword, then success or failure."""

    def __init__(self) -> None:
        self._authcid: str | None = None
        self._done = False

    def _need_password(self, authzid: str, authcid: str, password: str) -> Step:
        if not authcid or not password:
            return self._fail(FailureReason.MALFORMED, "empty identity or password")
        # Addresses compare case-insensitively (accounts are stored lower-case).
        if authzid and authzid.lower() != authcid.lower():
            return self._fail(FailureReason.AUTHZ_REFUSED, "authzid differs from authcid")
        self._authcid = authcid
        return NeedPassword(authcid=authcid, authzid=authzid, password=password)

    def _fail(self, reason: FailureReason, detail: str) -> Failure:
        self._done = True
        return Failure(reason, detail)

    def password_checked(self, valid: bool) -> Step:
        if self._authcid is None or self._done:
            raise MechanismError("password_checked() without a pending NeedPassword")
        self._done = True
        if valid:
            return Success(self._authcid)
        return Failure(FailureReason.INVALID_CREDENTIALS)


class PlainMechanism(_PasswordMechanism):
    """RFC 4616: message = [authzid] UTF8NUL authcid UTF8NUL passwd."""

    name = PLAIN

    def __init__(self) -> None:
        super().__init__()
        self._started = False

    def start(self, initial_response: bytes | None) -> Step:
        if self._started:
            raise MechanismError("start() called twice")
        self._started = True
        if initial_response is None:
            # RFC 4616 section 2: the server sends an empty challenge, the client answers.
            return Challenge(b"")
        return self.respond(initial_response)

    def respond(self, data: bytes) -> Step:
        if self._done or self._authcid is not None:
            raise MechanismError("PLAIN takes exactly one message")
        parts = data.split(b"\x00")
        if len(parts) != 3:
            return self._fail(FailureReason.MALFORMED, "PLAIN needs exactly two NULs")
        texts = [_utf8(p) for p in parts]
        authzid, authcid, password = texts
        if authzid is None or authcid is None or password is None:
            return self._fail(FailureReason.MALFORMED, "PLAIN message is not UTF-8")
        return self._need_password(authzid, authcid, password)


class LoginMechanism(_PasswordMechanism):
    """draft-murchison-sasl-login-00: challenges "Username:" then "Password:".

    The draft lets the client send the user name as initial response (some clients do)."""

    name = LOGIN

    def __init__(self) -> None:
        super().__init__()
        self._username: str | None = None
        self._started = False

    def start(self, initial_response: bytes | None) -> Step:
        if self._started:
            raise MechanismError("start() called twice")
        self._started = True
        if initial_response is None or initial_response == b"":
            return Challenge(b"Username:")
        return self.respond(initial_response)

    def respond(self, data: bytes) -> Step:
        if self._done or self._authcid is not None:
            raise MechanismError("LOGIN exchange already finished")
        text = _utf8(data)
        if text is None or "\x00" in text:
            return self._fail(FailureReason.MALFORMED, "LOGIN data is not a UTF-8 string")
        if self._username is None:
            if not text:
                return self._fail(FailureReason.MALFORMED, "empty user name")
            self._username = text
            return Challenge(b"Password:")
        return self._need_password("", self._username, text)


# A per-process key for decoy salts: stable for one name within a process, so asking twice
# for an unknown account gives the same salt, as it would for a real one.
_DECOY_KEY = secrets.token_bytes(32)


def decoy_scram_secrets(username: str) -> ScramSecrets:
    """A verifier nobody knows the password of, with a salt that looks like a real one."""
    salt = hmac.digest(_DECOY_KEY, b"salt:" + username.encode("utf-8"), "sha256")
    return ScramSecrets(
        salt=salt[:SCRAM_SALT_BYTES],
        iterations=SCRAM_DEFAULT_ITERATIONS,
        stored_key=secrets.token_bytes(32),
        server_key=secrets.token_bytes(32),
    )


class _ScramStage(enum.Enum):
    INITIAL = enum.auto()
    WANT_CLIENT_FIRST = enum.auto()
    WANT_SECRETS = enum.auto()
    WANT_CLIENT_FINAL = enum.auto()
    DONE = enum.auto()


class ScramSha256Mechanism(Mechanism):
    """RFC 7677 SCRAM-SHA-256; the RFC 5802 grammar and proof are in postar.auth.scram.

    The client-first message names the user; we hand back NeedScramSecrets because the store
    is asynchronous, and answer with server-first once the caller provides the verifier."""

    name = SCRAM_SHA_256

    def __init__(self, server_nonce: str | None = None) -> None:
        # server_nonce only for RFC test vectors; a random one otherwise (RFC 5802 section 5.1).
        self._server_nonce = server_nonce or secrets.token_urlsafe(24)
        self._stage = _ScramStage.INITIAL
        self._client_first: scram.ClientFirst | None = None
        self._server_first = ""
        self._verifier: ScramSecrets | None = None

    def _fail(self, reason: FailureReason, detail: str) -> Failure:
        self._stage = _ScramStage.DONE
        return Failure(reason, detail)

    def start(self, initial_response: bytes | None) -> Step:
        if self._stage is not _ScramStage.INITIAL:
            raise MechanismError("start() called twice")
        self._stage = _ScramStage.WANT_CLIENT_FIRST
        if initial_response is None:
            # RFC 4422 section 5: no initial response, so an empty challenge asks for it.
            return Challenge(b"")
        return self.respond(initial_response)

    def respond(self, data: bytes) -> Step:
        if self._stage is _ScramStage.WANT_CLIENT_FIRST:
            return self._client_first_message(data)
        if self._stage is _ScramStage.WANT_CLIENT_FINAL:
            return self._client_final_message(data)
        raise MechanismError(f"respond() in stage {self._stage.name}")

    def _client_first_message(self, data: bytes) -> Step:
        text = _utf8(data)
        if text is None:
            return self._fail(FailureReason.MALFORMED, "client-first is not UTF-8")
        try:
            first = scram.parse_client_first(text)
        except scram.ScramError as exc:
            return self._fail(FailureReason.MALFORMED, f"client-first: {exc}")
        # RFC 5802 section 5.1 lets the server refuse an authzid it does not authorize. One
        # equal to the user (as GNU SASL clients always send) asks for no more than the
        # user's own rights, so it is accepted; any other would be proxy auth, which we refuse.
        if first.authzid and normalize_login(first.authzid) != normalize_login(first.username):
            return self._fail(FailureReason.AUTHZ_REFUSED, "authzid differs from authcid")
        self._client_first = first
        self._stage = _ScramStage.WANT_SECRETS
        return NeedScramSecrets(first.username)

    def provide_scram_secrets(self, secrets_: ScramSecrets | None) -> Step:
        if self._stage is not _ScramStage.WANT_SECRETS or self._client_first is None:
            raise MechanismError("provide_scram_secrets() without a pending NeedScramSecrets")
        first = self._client_first
        verifier = secrets_ if secrets_ is not None else decoy_scram_secrets(first.username)
        unusable = scram.check_verifier(verifier)
        if unusable is not None:
            return self._fail(FailureReason.TEMPORARY, f"stored verifier unusable: {unusable}")
        self._verifier = verifier
        self._server_first = scram.server_first_message(
            first.client_nonce + self._server_nonce, verifier
        )
        self._stage = _ScramStage.WANT_CLIENT_FINAL
        return Challenge(self._server_first.encode("ascii"))

    def _client_final_message(self, data: bytes) -> Step:
        assert self._client_first is not None and self._verifier is not None
        text = _utf8(data)
        if text is None:
            return self._fail(FailureReason.MALFORMED, "client-final is not UTF-8")
        try:
            final = scram.parse_client_final(text)
            server_final = scram.server_final_message(
                self._client_first, self._server_first, final, self._server_nonce, self._verifier
            )
        except scram.ScramProofError:
            # A wrong password and an unknown account (decoy verifier) both end here.
            return self._fail(FailureReason.INVALID_CREDENTIALS, "invalid proof")
        except scram.ScramError as exc:
            return self._fail(FailureReason.MALFORMED, f"client-final: {exc}")
        self._stage = _ScramStage.DONE
        return Success(self._client_first.username, server_final.encode("ascii"))


def create_mechanism(name: str) -> Mechanism | None:
    """A fresh mechanism for one exchange, or None if we do not implement `name`."""
    match name.upper():
        case "PLAIN":
            return PlainMechanism()
        case "LOGIN":
            return LoginMechanism()
        case "SCRAM-SHA-256":
            return ScramSha256Mechanism()
    return None


# ---- wire form, common to SMTP (RFC 4954), IMAP (RFC 9051 6.2.2) and POP3 (RFC 5034) ------


class Cancelled:
    """The client answered a challenge with "*" (RFC 4422 section 3.5: abort)."""


CANCELLED = Cancelled()


def encode_challenge(data: bytes) -> bytes:
    """Base64 for "334 " / "+ " lines; an empty challenge is an empty string."""
    return base64.b64encode(data)


def decode_response(line: bytes, *, initial: bool = False) -> bytes | Cancelled | None:
    """The client's base64 line (CRLF stripped): bytes, CANCELLED for "*", None if not base64.

    For an initial response (initial=True), "=" means a present but empty response
    (RFC 4954 section 4, RFC 4959 section 3, RFC 5034 section 4)."""
    line = line.strip(b" \t")
    if line == b"*":
        return CANCELLED
    if initial and line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        return None
