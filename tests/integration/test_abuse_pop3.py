"""Hostile POP3 clients against a real server, over raw sockets.

As for SMTP (test_abuse_smtp.py): a clear "-ERR" or a clean close for the abuser, other
sessions still working, server memory under a stated bound, and nothing deleted or half-changed
in the maildrop unless a QUIT committed it (RFC 1939 section 6). `running_server` fails the test
on a traceback in the server log or an unclean stop.

Failed logins are throttled per client IP, and every test connects from 127.0.0.1, so the shared
server below never sees a wrong password; the password-guessing test has a server of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import PASSWORD, PostarServer
from tests.support.wire import (
    ALICE,
    BOB,
    Closed,
    POP3Wire,
    Sender,
    all_closed,
    assert_no_traceback,
    deliver,
    deliver_message,
    fetch_all,
    other_session_works,
    running_server,
    send_bulk,
    stat,
    unique_message,
    wait_until,
)

pytestmark = pytest.mark.integration

MB = 1024 * 1024
# RSS growth allowed for one abusive session (a server buffering the input would grow by more
# than the 10 MB sent).
MEMORY_BOUND_KB = 30 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostarServer]:
    """A default-configured server shared by the tests that need no special limits; alice's
    maildrop holds three messages, which no test here may delete."""
    with running_server(tmp_path_factory.mktemp("abuse-pop3")) as srv:
        for _ in range(3):
            deliver(srv, ALICE, tag="resident")
        yield srv


def _untouched(server: PostarServer, expected: int = 3) -> None:
    assert stat(server, ALICE) == expected


def _status_until_close(client: POP3Wire, timeout: float = 10.0) -> list[bytes]:
    """Status lines until EOF; fails if the server keeps the connection open past `timeout`."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            got.append(client.status())
        except Closed:
            return got
        except TimeoutError:
            break
    raise AssertionError(f"server did not close the connection; lines so far {got}")


# ---- over-long lines ---------------------------------------------------------------------------


@pytest.mark.parametrize("logged_in", [False, True], ids=["authorization", "transaction"])
def test_ten_megabyte_line_without_newline(server: PostarServer, logged_in: bool) -> None:
    client = POP3Wire.open(server.ports["pop3"])
    if logged_in:
        client.login()
        assert client.cmd("DELE 1").startswith(b"+OK")  # never committed: no QUIT follows
    rss_before = server.rss_kb()
    sent = send_bulk(client, 5 * MB, b"A" * 65536)
    other_session_works(server)  # during the flood
    sent += send_bulk(client, 5 * MB, b"A" * 65536)
    growth = server.rss_kb() - rss_before
    try:
        client.send(b"\r\n")
        status = client.status()
    except (Closed, BrokenPipeError, ConnectionResetError):
        status = None  # closing on 10 MB of garbage is a fine answer too
    if status is not None:
        assert status.startswith(b"-ERR"), status
        assert sent == 10 * MB
        assert client.cmd("NOOP" if logged_in else "CAPA").startswith(b"+OK")
    client.close()
    print(f"10 MB POP3 line: rss growth {growth} KB")
    assert growth < MEMORY_BOUND_KB
    # The dropped session released alice's maildrop and deleted nothing.
    assert wait_until(lambda: all_closed(server))
    _untouched(server)
    other_session_works(server)


# ---- command floods ----------------------------------------------------------------------------


def _noop_flood(server: PostarServer, count: int) -> tuple[int, bytes, int]:
    """Log in, pipeline `count` NOOPs; returns (+OK answers, the final line, rss growth)."""
    client = POP3Wire.open(server.ports["pop3"])
    client.login()
    assert client.cmd("DELE 1").startswith(b"+OK")  # must not be committed by the hang-up
    rss_before = server.rss_kb()
    sender = Sender(client, b"NOOP\r\n" * count)
    sender.start()
    time.sleep(0.5)  # read slowly, so the server hangs up with input still unread
    ok = 0
    while True:
        line = client.status()
        if not line.startswith(b"+OK"):
            break
        ok += 1
    assert client.at_eof(), "the server must hang up after its -ERR"
    sender.join(timeout=30)
    assert not sender.is_alive()
    growth = server.rss_kb() - rss_before
    client.close()
    return ok, line, growth


def test_command_flood_ends_at_default_limit(server: PostarServer) -> None:
    limit = 10000  # LimitsConfig.commands_per_session's default
    ok, final, growth = _noop_flood(server, 50_000)
    # USER, PASS and DELE were three of the session's commands.
    assert ok == limit - 3, (ok, final)
    assert final.startswith(b"-ERR"), final
    print(f"50,000 pipelined POP3 NOOPs: {ok} answered, then {final!r}; rss +{growth} KB")
    assert growth < MEMORY_BOUND_KB
    assert wait_until(lambda: all_closed(server))
    _untouched(server)  # RFC 1939 section 6: no QUIT, no UPDATE state, nothing deleted


def test_command_flood_ends_at_configured_limit(tmp_path: Path) -> None:
    with running_server(tmp_path, "[limits]\ncommands_per_session = 40\n") as server:
        deliver(server, ALICE)
        ok, final, _growth = _noop_flood(server, 500)
        assert ok == 40 - 3 and final.startswith(b"-ERR"), (ok, final)
        # Per session: the next one starts from zero and finds its maildrop unlocked.
        ok, final, _growth = _noop_flood(server, 38)
        assert ok == 37 and final.startswith(b"-ERR"), (ok, final)
        _untouched(server, 1)
        other_session_works(server)


# ---- invalid UTF-8 and NUL --------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"USER \xff\xfe",
        b"\xc3\x28",
        b"\x00\x00\x00",
        b"CAPA\x00",
        b"NO\x00OP",
        b"AUTH PLAIN \xff\x00",
        b"\xef\xbb\xbfUSER bom",
    ],
)
def test_bad_bytes_in_commands(server: PostarServer, line: bytes) -> None:
    client = POP3Wire.open(server.ports["pop3"])
    status = client.cmd(line)
    assert status.startswith(b"-ERR"), status
    # The session goes on as if the line had never come.
    assert client.cmd("CAPA").startswith(b"+OK")
    while client.line() != b".":
        pass
    client.login()
    assert client.cmd("STAT").startswith(b"+OK 3 ")
    assert client.cmd("QUIT").startswith(b"+OK")
    assert_no_traceback(server)


@pytest.mark.parametrize(
    "line",
    [b"DELE 1\x00", b"DELE \xff", b"RETR 1\xff", b"DELE 1\x002", b"\x00DELE 1", b"TOP 1 \x00"],
)
def test_bad_bytes_in_transaction_commands(server: PostarServer, line: bytes) -> None:
    client = POP3Wire.open(server.ports["pop3"])
    client.login()
    status = client.cmd(line)
    assert status.startswith(b"-ERR"), status
    # The garbled DELE deleted nothing: QUIT commits no deletion.
    assert client.cmd("STAT").startswith(b"+OK 3 ")
    assert client.cmd("QUIT").startswith(b"+OK")
    _untouched(server)
    assert_no_traceback(server)


# ---- idle and vanished clients -----------------------------------------------------------------


def test_client_gone_after_dele_deletes_nothing(server: PostarServer) -> None:
    client = POP3Wire.open(server.ports["pop3"])
    client.login()
    for i in (1, 2, 3):
        assert client.cmd(f"DELE {i}").startswith(b"+OK")
    client.reset()
    # The maildrop lock is released and nothing was deleted (RFC 1939 section 6).
    assert wait_until(lambda: all_closed(server))
    _untouched(server)


def test_client_gone_mid_retr(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        marker = deliver(server, ALICE, tag="small")
        # A big message, so RETR is still streaming when the client goes away.
        big, body = unique_message("big", size=8 * MB)
        deliver_message(server, ALICE, body)
        client = POP3Wire.open(server.ports["pop3"])
        client.login()
        client.send(b"RETR 2\r\n")
        assert client.status().startswith(b"+OK")
        got = 0
        while got < 256 * 1024:
            got += len(client.sock.recv(65536))
        client.reset()
        assert wait_until(lambda: all_closed(server))
        messages = fetch_all(server, ALICE)
        assert len(messages) == 2
        assert marker.encode() in messages[0] and messages[1].endswith(body)
        assert big.encode() in messages[1]


def test_idle_timeout_deletes_nothing(tmp_path: Path) -> None:
    idle = 2.0
    with running_server(tmp_path, f"[limits]\npop3_idle_timeout = {idle}\n") as server:
        deliver(server, ALICE)
        client = POP3Wire.open(server.ports["pop3"])
        client.login()
        assert client.cmd("DELE 1").startswith(b"+OK")
        went_quiet = time.monotonic()
        lines = _status_until_close(client, timeout=idle + 8)
        waited = time.monotonic() - went_quiet
        assert idle * 0.75 <= waited <= idle + 8, waited
        # RFC 1939 section 3: an autologout timer ends the session without UPDATE.
        assert all(line.startswith(b"-ERR") for line in lines), lines
        _untouched(server, 1)
        other_session_works(server)


# ---- password guessing -------------------------------------------------------------------------

AUTH_CONFIG = """
[auth]
failures_before_delay = 2
failure_delay = 0.4
failures_before_lockout = 5
lockout_seconds = 3
"""


def _login(server: PostarServer, password: str, user: str = ALICE) -> tuple[bytes, float]:
    """USER/PASS on a new connection; returns PASS's status line and how long it took."""
    with POP3Wire.open(server.ports["pop3"]) as client:
        assert client.cmd(f"USER {user}").startswith(b"+OK")
        started = time.monotonic()
        status = client.cmd(f"PASS {password}")
        took = time.monotonic() - started
        if status.startswith(b"+OK"):
            client.cmd("QUIT")
        return status, took


def _guess_until_locked(server: PostarServer) -> list[float]:
    times = []
    for _ in range(5):  # failures_before_lockout
        status, took = _login(server, "wrong password")
        assert status.startswith(b"-ERR [AUTH]"), status
        times.append(took)
    return times


def test_password_guessing_is_throttled_then_locked_out(tmp_path: Path) -> None:
    with running_server(tmp_path, AUTH_CONFIG) as server:
        times = _guess_until_locked(server)
        print("POP3 PASS failure answer times:", [f"{t:.2f}" for t in times])
        for i, extra in ((2, 0.4), (3, 0.8), (4, 1.2)):
            assert times[i] >= extra * 0.9, times
        assert times[4] > times[0] + 0.6, times
        # Locked out (RFC 3206 SYS/TEMP): the right password is refused too.
        status, _took = _login(server, PASSWORD)
        assert status.startswith(b"-ERR [SYS/TEMP]"), status
        # Guessing on during the lockout costs the server no memory to speak of.
        rss_before = server.rss_kb()
        with POP3Wire.open(server.ports["pop3"]) as client:
            for i in range(9):  # two errors per round, under errors_per_session=20
                assert client.cmd(f"USER guess{i}@example.test").startswith(b"+OK")
                assert client.cmd("PASS guess").startswith(b"-ERR [SYS/TEMP]")
        assert server.rss_kb() - rss_before < MEMORY_BOUND_KB
        # Mail keeps flowing in meanwhile.
        witness = deliver(server, BOB, tag="during-lockout")
        time.sleep(3.2)  # lockout_seconds
        status, _took = _login(server, PASSWORD)
        assert status.startswith(b"+OK"), status
        assert any(witness.encode() in m for m in fetch_all(server, BOB))
        # Locked out again; a fresh server run starts with no throttling state.
        _guess_until_locked(server)
        assert _login(server, PASSWORD)[0].startswith(b"-ERR [SYS/TEMP]")
        assert server.stop() == 0
        server.start()
        status, _took = _login(server, PASSWORD)
        assert status.startswith(b"+OK"), status


# ---- STLS command injection --------------------------------------------------------------------


def test_stls_injection(server: PostarServer) -> None:
    client = POP3Wire.open(server.ports["pop3"])
    # RFC 2595 section 4 / CVE-2011-0411: the USER pipelined behind STLS in one packet must be
    # dropped with the plaintext session.
    client.send(f"STLS\r\nUSER {ALICE}\r\n".encode())
    assert client.status().startswith(b"+OK")
    client.wrap_tls()
    # Had the injected USER survived, this PASS would log in.
    status = client.cmd(f"PASS {PASSWORD}")
    assert status.startswith(b"-ERR"), status
    assert client.nothing_pending()
    client.login()
    assert client.cmd("STAT").startswith(b"+OK 3 ")
    assert client.cmd("QUIT").startswith(b"+OK")


# ---- connection limits ---------------------------------------------------------------------------


def test_connections_per_ip(tmp_path: Path) -> None:
    with running_server(tmp_path, "[limits]\nconnections_per_ip = 5\n") as server:
        port = server.ports["pop3"]
        assert wait_until(lambda: all_closed(server))  # the harness's readiness probes
        clients = [POP3Wire.open(port) for _ in range(5)]
        sixth = POP3Wire(port)
        status = sixth.status()
        assert status.startswith(b"-ERR"), status
        assert sixth.at_eof()
        sixth.close()
        assert all(c.cmd("CAPA").startswith(b"+OK") for c in clients)
        for client in clients[:2]:
            client.close()

        def admitted() -> bool:
            with POP3Wire(port) as probe:
                return probe.status().startswith(b"+OK")

        assert wait_until(admitted, timeout=5)
        for client in clients[2:]:
            client.close()
        assert wait_until(lambda: all_closed(server))
        other_session_works(server)
