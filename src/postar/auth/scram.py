"""SCRAM-SHA-256 server side (RFC 5802, RFC 7677): message grammar and proof check, sans-I/O.

sasl.ScramSha256Mechanism drives these functions; nothing here touches a socket, the store or
a clock. We do this ourselves rather than through scramp's server because scramp refuses any
authorization identity in the gs2 header, and GNU SASL clients (gsasl, Debian's mutt) always
send one equal to the user ("n,a=alice@example.test,n=alice@example.test,r=...").

Invariants:
- Every refusal of the client's data is a ScramError; its text is for logs, never for the
  client, and never contains a secret.
- The gs2 header is kept exactly as received: client-final's "c=" must be its base64
  (RFC 5802 section 7, cbind-input for the "n" and "y" flags), authzid included.
- Channel binding is not offered: a "p=" gs2 flag is refused (section 6; no -PLUS mechanism).
- Proof comparison is constant-time (hmac.compare_digest).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from scramp.utils import ScramException, saslprep  # type: ignore[import-untyped]

from postar.auth.passwords import SCRAM_MIN_ITERATIONS
from postar.store.model import ScramSecrets

# The shortest salt we hand out from a stored verifier; shorter ones mean a broken store
# (scramp, which wrote and checked these before, refused them too).
SCRAM_MIN_SALT_BYTES = 12

_HASH = "sha256"
_HASH_BYTES = hashlib.sha256().digest_size

# RFC 5802 section 7: printable = %x21-2B / %x2D-7E (no comma); value-safe-char excludes
# NUL, "=" and ","; an attribute is a single ALPHA.
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_SASLNAME = re.compile(r"(?:[^\x00=,]|=2C|=3D)+")
_EXTENSION = re.compile(r"[A-Za-z]=[^\x00,]+")


class ScramError(Exception):
    """The client's message breaks RFC 5802; the text is for logs only."""


class ScramProofError(ScramError):
    """Well-formed messages, but the ClientProof does not match the stored verifier."""


@dataclass(frozen=True)
class ClientFirst:
    gs2_header: str  # e.g. "n,," or "n,a=alice@example.test,": as sent, for the "c=" check
    authzid: str  # unescaped and SASLprep'ed; "" when the client sent none
    username: str  # unescaped and SASLprep'ed (section 5.1 "n=")
    client_nonce: str
    bare: str  # client-first-message-bare, the first part of AuthMessage


@dataclass(frozen=True)
class ClientFinal:
    channel_binding: bytes  # "c=", decoded
    nonce: str  # "r=", client nonce + server nonce
    without_proof: str  # client-final-message-without-proof, the last part of AuthMessage
    proof: bytes  # "p=", decoded


def _saslname(value: str, what: str) -> str:
    """Unescape "=2C"/"=3D" and SASLprep a saslname (RFC 5802 section 5.1, "n=" and "a=")."""
    if not _SASLNAME.fullmatch(value):
        raise ScramError(f"{what} is not a valid saslname")
    unescaped = value.replace("=2C", ",").replace("=3D", "=")
    try:
        prepared: str = saslprep(unescaped)
    except ScramException as exc:
        raise ScramError(f"{what} fails SASLprep: {exc}") from exc
    if not prepared:
        raise ScramError(f"{what} is empty after SASLprep")
    return prepared


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ScramError(f"{what} is not base64") from exc


def _check_extensions(attributes: list[str]) -> None:
    # RFC 5802 section 7: extensions = attr-val *("," attr-val); unknown ones are ignored.
    for attribute in attributes:
        if not _EXTENSION.fullmatch(attribute):
            raise ScramError("malformed attribute")


def parse_client_first(text: str) -> ClientFirst:
    """client-first-message = gs2-header client-first-message-bare (RFC 5802 section 7)."""
    parts = text.split(",")
    if len(parts) < 4:
        raise ScramError("client-first needs a gs2 header, n= and r=")
    cbind_flag, authzid_attr = parts[0], parts[1]
    if cbind_flag.startswith("p="):
        # Section 6: the client demands channel binding; we advertise no -PLUS mechanism.
        raise ScramError("channel binding demanded, not offered")
    if cbind_flag not in ("n", "y"):
        raise ScramError("bad gs2-cbind-flag")
    authzid = ""
    if authzid_attr:
        if not authzid_attr.startswith("a="):
            raise ScramError("gs2 header: authzid must be a=")
        authzid = _saslname(authzid_attr[2:], "authzid")
    gs2_header = f"{cbind_flag},{authzid_attr},"
    bare_parts = parts[2:]
    if bare_parts[0].startswith("m="):
        # Section 5.1: "m" is reserved; a server that does not know its extension MUST fail.
        raise ScramError("mandatory extension m= not supported")
    username_attr, nonce_attr = bare_parts[0], bare_parts[1]
    if not username_attr.startswith("n="):
        raise ScramError("client-first without a user name")
    if not nonce_attr.startswith("r=") or not _PRINTABLE.fullmatch(nonce_attr[2:]):
        raise ScramError("client-first without a valid nonce")
    _check_extensions(bare_parts[2:])
    return ClientFirst(
        gs2_header=gs2_header,
        authzid=authzid,
        username=_saslname(username_attr[2:], "user name"),
        client_nonce=nonce_attr[2:],
        bare=",".join(bare_parts),
    )


def parse_client_final(text: str) -> ClientFinal:
    """client-final-message = channel-binding "," nonce ["," extensions] "," proof."""
    parts = text.split(",")
    if len(parts) < 3:
        raise ScramError("client-final needs c=, r= and p=")
    cbind_attr, nonce_attr, proof_attr = parts[0], parts[1], parts[-1]
    if not cbind_attr.startswith("c="):
        raise ScramError("client-final without c=")
    if not nonce_attr.startswith("r=") or not _PRINTABLE.fullmatch(nonce_attr[2:]):
        raise ScramError("client-final without a valid nonce")
    if not proof_attr.startswith("p="):
        raise ScramError("client-final does not end with p=")
    _check_extensions(parts[2:-1])
    return ClientFinal(
        channel_binding=_b64(cbind_attr[2:], "c="),
        nonce=nonce_attr[2:],
        without_proof=",".join(parts[:-1]),
        proof=_b64(proof_attr[2:], "p="),
    )


def check_verifier(verifier: ScramSecrets) -> str | None:
    """Why a stored verifier cannot be used, or None when it can."""
    if len(verifier.salt) < SCRAM_MIN_SALT_BYTES:
        return f"salt shorter than {SCRAM_MIN_SALT_BYTES} bytes"
    # RFC 7677 section 4: at least 4096 iterations.
    if verifier.iterations < SCRAM_MIN_ITERATIONS:
        return f"fewer than {SCRAM_MIN_ITERATIONS} iterations"
    if len(verifier.stored_key) != _HASH_BYTES or len(verifier.server_key) != _HASH_BYTES:
        return "keys are not SHA-256 sized"
    return None


def server_first_message(nonce: str, verifier: ScramSecrets) -> str:
    """server-first-message = nonce "," salt "," iteration-count (RFC 5802 section 7)."""
    salt = base64.b64encode(verifier.salt).decode("ascii")
    return f"r={nonce},s={salt},i={verifier.iterations}"


def server_final_message(
    first: ClientFirst,
    server_first: str,
    final: ClientFinal,
    server_nonce: str,
    verifier: ScramSecrets,
) -> str:
    """Check client-final against the exchange so far; "v=" ServerSignature if it holds.

    Raises ScramError for a broken exchange, ScramProofError for a wrong password."""
    # RFC 5802 section 7: with the "n" or "y" flag, cbind-input is the gs2 header itself,
    # authzid included, so a header changed in transit fails here.
    if not hmac.compare_digest(final.channel_binding, first.gs2_header.encode("utf-8")):
        raise ScramError("c= does not match the gs2 header")
    # Section 5.1: "r=" must be exactly the nonce of server-first.
    if final.nonce != first.client_nonce + server_nonce:
        raise ScramError("nonce does not match")
    # Section 3: AuthMessage = client-first-message-bare + "," + server-first-message + ","
    #            + client-final-message-without-proof.
    auth_message = f"{first.bare},{server_first},{final.without_proof}".encode()
    # Section 3: ClientSignature = HMAC(StoredKey, AuthMessage);
    # ClientKey = ClientProof XOR ClientSignature; the proof holds iff H(ClientKey) == StoredKey.
    client_signature = hmac.digest(verifier.stored_key, auth_message, _HASH)
    if len(final.proof) != len(client_signature):
        raise ScramProofError("proof has the wrong length")
    client_key = bytes(p ^ s for p, s in zip(final.proof, client_signature, strict=True))
    if not hmac.compare_digest(hashlib.sha256(client_key).digest(), verifier.stored_key):
        raise ScramProofError("invalid proof")
    # Section 3: ServerSignature = HMAC(ServerKey, AuthMessage), sent as "v=" (mutual auth).
    server_signature = hmac.digest(verifier.server_key, auth_message, _HASH)
    return "v=" + base64.b64encode(server_signature).decode("ascii")
