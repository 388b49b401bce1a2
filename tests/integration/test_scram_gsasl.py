"""GNU SASL's command-line client logs in with SCRAM-SHA-256 over IMAP and SMTP submission.

gsasl (like Debian's mutt, which uses the same library) always sends an authorization identity
equal to the user: "n,a=alice@example.test,n=alice@example.test,r=...". RFC 5802 section 5.1
allows it, and the gs2 header carrying it is bound into the proof through "c=".

Skip or fail: without gsasl the tests skip, unless CI is set, in which case scripts/test should
have installed it and its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer

pytestmark = pytest.mark.integration

ALICE = f"alice@{DOMAIN}"


def require_gsasl() -> str:
    path = shutil.which("gsasl")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("gsasl is not installed (scripts/test installs it); CI must run this test")
    pytest.skip("gsasl is not installed (apt-get install gsasl)")


def run_gsasl(
    protocol: str, port: int, authzid: str, password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    """One gsasl login; --verbose puts the whole dialogue on stdout for the assertions."""
    return subprocess.run(
        [
            require_gsasl(), "--client", f"--{protocol}", f"--connect=127.0.0.1:{port}",
            "--mechanism=SCRAM-SHA-256", f"--authentication-id={ALICE}",
            f"--authorization-id={authzid}", f"--password={password}",
            # Loopback without TLS: SCRAM is offered there, and STARTTLS would need a CA.
            "--no-starttls", "--verbose",
        ],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize(("protocol", "role"), [("imap", "imap"), ("smtp", "submission")])
def test_gsasl_scram_with_authzid_equal_to_user(
    postar: PostarServer, protocol: str, role: str
) -> None:
    result = run_gsasl(protocol, postar.ports[role], authzid=ALICE)
    dialogue = result.stdout + result.stderr
    assert result.returncode == 0, dialogue
    success = ". OK [CAPABILITY" if protocol == "imap" else "235 2.7.0"
    assert success in dialogue, dialogue


def test_gsasl_scram_with_another_authzid_is_refused(postar: PostarServer) -> None:
    # No proxy authentication: alice may not act as bob (RFC 4422 section 3.4.1).
    result = run_gsasl("imap", postar.ports["imap"], authzid=f"bob@{DOMAIN}")
    dialogue = result.stdout + result.stderr
    assert result.returncode != 0, dialogue
    assert "NO [AUTHORIZATIONFAILED]" in dialogue, dialogue


def test_gsasl_scram_with_wrong_password_fails(postar: PostarServer) -> None:
    result = run_gsasl("imap", postar.ports["imap"], authzid=ALICE, password="guess")
    dialogue = result.stdout + result.stderr
    assert result.returncode != 0, dialogue
    assert "NO [AUTHENTICATIONFAILED]" in dialogue, dialogue
