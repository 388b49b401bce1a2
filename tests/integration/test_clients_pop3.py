"""POP3 out (and SMTP in) with curl and Python's poplib: listing, retrieval, deletion semantics,
UIDL stability, STLS and implicit TLS, and the refusal of plaintext passwords without TLS."""

from __future__ import annotations

import poplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mailclients import (
    ALICE,
    BOB,
    SOCKET_TIMEOUT,
    STRICT_AUTH_CONFIG,
    client_tls_context,
    deliver,
    numbered_message,
    pop3_messages,
    pop3_session,
    raw_of,
    require_program,
    run,
    running_server,
    self_signed_cert,
    strip_trace,
)
from tests.support.server import PASSWORD, PostarServer


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostarServer]:
    with running_server(tmp_path_factory.mktemp("strict"), STRICT_AUTH_CONFIG) as server:
        yield server


def _uidl_map(pop: poplib.POP3) -> dict[int, str]:
    _resp, lines, _octets = pop.uidl()
    out = {}
    for line in lines:
        number, uid = line.decode().split()
        out[int(number)] = uid
    return out


def _subjects(server: PostarServer, user: str = ALICE) -> list[str]:
    out = []
    for raw in pop3_messages(server, user):
        for line in raw.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
    return out


def _login_when_free(server: PostarServer, user: str = ALICE) -> poplib.POP3:
    """Log in, waiting while an earlier (dropped) session still holds the maildrop: the
    server releases it when it notices the dead connection, which may take a moment."""
    deadline = time.monotonic() + 10
    while True:
        pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=SOCKET_TIMEOUT)
        pop.user(user)
        try:
            pop.pass_(PASSWORD)
            return pop
        except poplib.error_proto as exc:
            pop.close()
            if b"[IN-USE]" not in exc.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---- poplib -----------------------------------------------------------------------------------
def test_poplib_list_uidl_top_retr(postar: PostarServer) -> None:
    messages = [numbered_message(n) for n in range(1, 4)]
    for message in messages:
        deliver(postar, message)
    with pop3_session(postar) as pop:
        count, total = pop.stat()
        assert count == 3
        _resp, listing, _octets = pop.list()
        sizes = [int(line.split()[1]) for line in listing]
        assert sum(sizes) == total
        uids = _uidl_map(pop)
        assert sorted(uids) == [1, 2, 3] and len(set(uids.values())) == 3
        for n, message in enumerate(messages, start=1):
            raw = raw_of(pop.retr(n)[1])
            assert len(raw) == sizes[n - 1]  # LIST counts the octets RETR sends (RFC 1939)
            assert strip_trace(raw)[1] == message
            # TOP n 0: the header and the blank line that ends it, no body.
            header = raw_of(pop.top(n, 0)[1])
            assert header == raw[: raw.index(b"\r\n\r\n") + 4]
            first_line = raw_of(pop.top(n, 1)[1])
            assert first_line == header + f"body of message {n}\r\n".encode()


def test_dele_then_quit_deletes(postar: PostarServer) -> None:
    for n in range(1, 4):
        deliver(postar, numbered_message(n))
    with pop3_session(postar) as pop:
        pop.dele(2)
        # A message marked deleted is gone from LIST and refused by RETR (RFC 1939 section 5).
        assert [line.split()[0] for line in pop.list()[1]] == [b"1", b"3"]
        with pytest.raises(poplib.error_proto):
            pop.retr(2)
    assert _subjects(postar) == ["message 1", "message 3"]


def test_dele_then_rset_keeps(postar: PostarServer) -> None:
    for n in range(1, 3):
        deliver(postar, numbered_message(n))
    with pop3_session(postar) as pop:
        pop.dele(1)
        pop.dele(2)
        assert pop.stat()[0] == 0
        pop.rset()
        assert pop.stat()[0] == 2
    assert _subjects(postar) == ["message 1", "message 2"]


def test_dropped_connection_after_dele_deletes_nothing(postar: PostarServer) -> None:
    for n in range(1, 3):
        deliver(postar, numbered_message(n))
    pop = poplib.POP3("127.0.0.1", postar.ports["pop3"], timeout=SOCKET_TIMEOUT)
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    pop.dele(1)
    pop.dele(2)
    # No QUIT: the session never reaches the UPDATE state (RFC 1939 section 6).
    pop.sock.shutdown(socket.SHUT_RDWR)
    pop.close()
    again = _login_when_free(postar)
    try:
        assert again.stat()[0] == 2
    finally:
        again.quit()


def test_second_session_on_a_maildrop_is_in_use(postar: PostarServer) -> None:
    deliver(postar, numbered_message(1))
    with pop3_session(postar):
        other = poplib.POP3("127.0.0.1", postar.ports["pop3"], timeout=SOCKET_TIMEOUT)
        other.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            other.pass_(PASSWORD)
        other.close()
    with pop3_session(postar) as pop:
        assert pop.stat()[0] == 1


def test_uidl_stable_across_sessions_and_deletions(postar: PostarServer) -> None:
    for n in range(1, 5):
        deliver(postar, numbered_message(n))
    with pop3_session(postar) as pop:
        first = _uidl_map(pop)
        by_subject = {n: first[n] for n in first}
    with pop3_session(postar) as pop:
        assert _uidl_map(pop) == first
        pop.dele(1)
        pop.dele(3)
    deliver(postar, numbered_message(5))
    with pop3_session(postar) as pop:
        now = _uidl_map(pop)
        # Messages 2 and 4 are now numbers 1 and 2 with the same unique ids; message 5 gets
        # an id no earlier message had (RFC 1939 section 7: never reused).
        assert now[1] == by_subject[2] and now[2] == by_subject[4]
        assert now[3] not in first.values()
        for number, subject in ((1, "message 2"), (2, "message 4"), (3, "message 5")):
            assert f"Subject: {subject}".encode() in raw_of(pop.top(number, 0)[1])


def test_poplib_plaintext_refused_until_stls(strict: PostarServer) -> None:
    deliver(strict, numbered_message(1), [BOB])
    pop = poplib.POP3("127.0.0.1", strict.ports["pop3"], timeout=SOCKET_TIMEOUT)
    try:
        capa = pop.capa()
        assert "STLS" in capa and "USER" not in capa
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            pop.user(BOB)
        pop.stls(context=client_tls_context(strict))
        assert "USER" in pop.capa()
        pop.user(BOB)
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 1
    finally:
        pop.quit()


def test_poplib_pop3_ssl(strict: PostarServer) -> None:
    pop = poplib.POP3_SSL(
        "127.0.0.1", strict.ports["pop3s"], timeout=SOCKET_TIMEOUT,
        context=client_tls_context(strict),
    )  # fmt: skip
    try:
        assert "STLS" not in pop.capa()  # already encrypted (RFC 2595 section 4)
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        uids = _uidl_map(pop)
        assert len(uids) == pop.stat()[0]
    finally:
        pop.quit()


# ---- curl -------------------------------------------------------------------------------------
def _curl(*args: str) -> str:
    require_program("curl")
    done = run(["curl", "-sS", "--max-time", "20", *args])
    assert done.returncode == 0, f"curl {args}: {done.returncode} {done.stderr}"
    return done.stdout


def test_curl_smtp_upload(postar: PostarServer, tmp_path: Path) -> None:
    message = (
        b"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: by curl\r\n\r\n"
        b"hello\r\n.a dot line\r\nbye\r\n"
    )
    path = tmp_path / "message.eml"
    path.write_bytes(message)
    _curl(
        f"smtp://127.0.0.1:{postar.ports['smtp']}/client.remote.test",
        "--mail-from", "sender@remote.test", "--mail-rcpt", ALICE, "-T", str(path),
    )  # fmt: skip
    [raw] = pop3_messages(postar)
    assert strip_trace(raw)[1] == message


def test_curl_smtp_submission_with_starttls_and_login(strict: PostarServer, tmp_path: Path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(b"Subject: submitted by curl\r\n\r\nhi\r\n")
    _curl(
        f"smtp://127.0.0.1:{strict.ports['submission']}", "--ssl-reqd",
        "--cacert", str(self_signed_cert(strict)), "-u", f"{ALICE}:{PASSWORD}",
        "--mail-from", ALICE, "--mail-rcpt", BOB, "-T", str(path),
    )  # fmt: skip
    raws = pop3_messages(strict, BOB, stls=True)
    assert any(raw.endswith(b"Subject: submitted by curl\r\n\r\nhi\r\n") for raw in raws)


def test_curl_pop3_list_and_retrieve(postar: PostarServer) -> None:
    deliver(postar, numbered_message(1))
    deliver(postar, b"Subject: dots\r\n\r\n.one dot\r\n..two dots\r\nend\r\n")
    base = f"pop3://127.0.0.1:{postar.ports['pop3']}"
    user = ["-u", f"{ALICE}:{PASSWORD}"]
    with pop3_session(postar) as pop:
        listing = b"".join(line + b"\r\n" for line in pop.list()[1]).decode()
        expected = [raw_of(pop.retr(n)[1]) for n in (1, 2)]
    assert _curl(f"{base}/", *user) == listing
    require_program("curl")
    for n in (1, 2):
        done = run(["curl", "-sS", "--max-time", "20", f"{base}/{n}", *user])
        assert done.returncode == 0, done.stderr
        # curl removes the dot-stuffing itself; what it prints is the message.
        assert done.stdout.encode() == expected[n - 1]


def test_curl_pop3_stls(strict: PostarServer) -> None:
    deliver(strict, numbered_message(7, "curl stls"), [BOB])
    require_program("curl")
    base = f"pop3://127.0.0.1:{strict.ports['pop3']}/"
    user = ["-u", f"{BOB}:{PASSWORD}"]
    # Without TLS the strict server refuses the password: curl reports "Login denied" (67).
    plain = run(["curl", "-sS", "--max-time", "20", base, *user])
    assert plain.returncode == 67, plain.stderr
    # With STLS, the self-signed certificate is refused unless trusted (60)...
    untrusted = run(["curl", "-sS", "--max-time", "20", "--ssl-reqd", base, *user])
    assert untrusted.returncode == 60, untrusted.stderr
    # ...and accepted with --insecure or the server's certificate as CA.
    for trust in (["--insecure"], ["--cacert", str(self_signed_cert(strict))]):
        listing = _curl("--ssl-reqd", *trust, base, *user)
        last = len(listing.splitlines())  # the module's server is shared: ours is the newest
        assert last >= 1
        message = _curl("--ssl-reqd", *trust, f"{base}{last}", *user)
        assert "Subject: curl stls 7\r\n" in message


def test_curl_pop3s(strict: PostarServer) -> None:
    deliver(strict, numbered_message(8, "curl pop3s"), [ALICE])
    base = f"pop3s://127.0.0.1:{strict.ports['pop3s']}/"
    user = ["-u", f"{ALICE}:{PASSWORD}"]
    listing = _curl("--insecure", base, *user)
    count = len(listing.splitlines())
    assert count >= 1
    message = _curl("--cacert", str(self_signed_cert(strict)), f"{base}{count}", *user)
    assert "Subject: curl pop3s 8\r\n" in message
