"""Hostile SMTP clients against a real server, over raw sockets.

Each test checks four things: the abuser gets a clear protocol error or a clean close; another
session still completes a transaction; the server's resident memory stays under a stated bound;
nothing half-received shows up in a mailbox (POP3 STAT). `running_server` also fails the test
if the server's log holds a traceback or SIGTERM does not stop it cleanly.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer
from tests.support.wire import (
    ALICE,
    BOB,
    Closed,
    Reply,
    Sender,
    SMTPWire,
    all_closed,
    assert_no_traceback,
    deliver,
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
# RSS growth allowed for one abusive session. A server that buffered the abuser's input would
# grow by at least the amount sent (10 MB and more below), plus Python's overhead.
MEMORY_BOUND_KB = 30 * 1024


def _transaction(client: SMTPWire, rcpts: list[str]) -> None:
    assert client.cmd("MAIL FROM:<sender@remote.test>").code == 250
    for rcpt in rcpts:
        reply = client.cmd(f"RCPT TO:<{rcpt}>")
        assert reply.code == 250, reply
    reply = client.cmd("DATA")
    assert reply.code == 354, reply


def _closes(client: SMTPWire, timeout: float = 10.0) -> list[Reply]:
    """Replies until EOF; fails if the server keeps the connection open past `timeout`."""
    got: list[Reply] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            got.append(client.reply())
        except Closed:
            return got
        except TimeoutError:
            break
    raise AssertionError(f"server did not close the connection; replies so far {got}")


def _close_count(server: PostarServer) -> int:
    return server.log().count("conn.close ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostarServer]:
    """One default-configured server for the tests below that need no special limits.

    Sharing it is part of the test: each abuse runs against a server that already survived the
    ones before it. Mailbox checks compare counts before and after, or look for the test's own
    unique marker.
    """
    with running_server(tmp_path_factory.mktemp("abuse-smtp")) as srv:
        yield srv


# ---- over-long lines ---------------------------------------------------------------------------


def test_ten_megabyte_line_without_newline(server: PostarServer) -> None:
    alice_before = stat(server, ALICE)
    client = SMTPWire.open(server.ports["smtp"])
    rss_before = server.rss_kb()
    sent = send_bulk(client, 5 * MB, b"A" * 65536)
    # Halfway through the flood another client must get its mail through.
    other_session_works(server)
    sent += send_bulk(client, 5 * MB, b"A" * 65536)
    growth = server.rss_kb() - rss_before
    try:
        client.send(b"\r\n")
        reply = client.reply()
    except (Closed, BrokenPipeError, ConnectionResetError):
        reply = None  # a close is an acceptable answer to 10 MB of garbage
    if reply is not None:
        # RFC 5321 4.5.3.1.4 / 4.2.2: "500 line too long", then the session goes on.
        assert reply.code == 500, reply
        assert sent == 10 * MB
        assert client.cmd("NOOP").code == 250
    print(f"10 MB SMTP line: rss growth {growth} KB")
    assert growth < MEMORY_BOUND_KB
    assert stat(server, ALICE) == alice_before
    other_session_works(server)


# ---- command floods ----------------------------------------------------------------------------


def _noop_flood(server: PostarServer, count: int) -> tuple[int, Reply, int]:
    """Pipeline `count` NOOPs; returns (250 replies before the end, the final reply, rss growth)."""
    client = SMTPWire.open(server.ports["smtp"], ehlo=False)
    rss_before = server.rss_kb()
    # A thread sends while this one reads: neither side's socket buffer can fill and stall.
    sender = Sender(client, b"NOOP\r\n" * count)
    sender.start()
    # A client slow to read: when the server hangs up, its last replies are still queued and
    # the client's NOOPs unread. A plain close() then resets the connection and loses the 421.
    time.sleep(0.5)
    ok = 0
    while True:
        reply = client.reply()
        if reply.code != 250:
            break
        ok += 1
    assert client.at_eof(), "the server must hang up after its 421"
    sender.join(timeout=30)
    assert not sender.is_alive()
    growth = server.rss_kb() - rss_before
    client.close()
    return ok, reply, growth


def test_command_flood_ends_at_default_limit(server: PostarServer) -> None:
    limit = 10000  # LimitsConfig.commands_per_session's default
    ok, final, growth = _noop_flood(server, 50_000)
    assert final.code == 421, final
    assert ok == limit
    print(f"50,000 pipelined NOOPs: {ok} answered, then {final.lines[0]!r}; rss +{growth} KB")
    assert growth < MEMORY_BOUND_KB
    other_session_works(server)


def test_command_flood_ends_at_configured_limit(tmp_path: Path) -> None:
    with running_server(tmp_path, "[limits]\ncommands_per_session = 40\n") as server:
        ok, final, _growth = _noop_flood(server, 500)
        assert (ok, final.code) == (40, 421), final
        assert final.lines[0].startswith("421 4.7.0")
        # The limit is per session: a new connection starts from zero.
        ok, final, _growth = _noop_flood(server, 41)
        assert (ok, final.code) == (40, 421)
        other_session_works(server)


# ---- DATA that never ends, or never fits -----------------------------------------------------


def test_data_that_stops_arriving_hits_idle_timeout(tmp_path: Path) -> None:
    idle = 2.0
    with running_server(tmp_path, f"[limits]\nsmtp_idle_timeout = {idle}\n") as server:
        client = SMTPWire.open(server.ports["smtp"])
        _transaction(client, [ALICE])
        client.send(b"Subject: never ends\r\n\r\n")
        # Trickle for longer than the idle timeout: the timeout is per wait, not per DATA.
        started = time.monotonic()
        while time.monotonic() - started < idle * 1.5:
            client.send(b"x" * 1000 + b"\r\n")
            time.sleep(0.2)
        assert client.nothing_pending(0.1), "the trickling session must still be open"
        last_byte = time.monotonic()
        replies = _closes(client, timeout=idle + 8)
        waited = time.monotonic() - last_byte
        assert idle * 0.75 <= waited <= idle + 8, waited
        # A goodbye is optional on timeout; if one comes it is RFC 5321 421 (4.4.2).
        assert all(r.code == 421 for r in replies), replies
        other_session_works(server)
        assert stat(server, ALICE) == 0


def test_data_beyond_message_size(tmp_path: Path) -> None:
    limit = 1 * MB
    with running_server(tmp_path, f"[limits]\nmessage_size = {limit}\n") as server:
        client = SMTPWire.open(server.ports["smtp"])
        rss_before = server.rss_kb()
        _transaction(client, [ALICE])
        lines = (b"y" * 78 + b"\r\n") * 800  # whole lines, so the end marker starts one
        sent = send_bulk(client, 512 * len(lines), lines)
        assert sent == 512 * len(lines)
        client.send(b".\r\n")
        reply = client.reply()
        growth = server.rss_kb() - rss_before
        # RFC 1870 section 6.2 / RFC 5321 4.5.3.1.10: 552 after the end of the data.
        assert reply.code == 552, reply
        print(f"31 MB DATA over a 1 MB limit: rss growth {growth} KB")
        assert growth < MEMORY_BOUND_KB
        # The session continues: the next message, under the limit, is delivered.
        marker, body = unique_message("fits", size=limit // 2)
        _transaction(client, [ALICE])
        client.send(body + b".\r\n")
        assert client.reply().code == 250
        assert client.cmd("QUIT").code == 221
        messages = fetch_all(server, ALICE)
        assert len(messages) == 1
        assert marker.encode() in messages[0]
        assert messages[0].endswith(body)
        other_session_works(server)


# ---- a client that vanishes mid-DATA ----------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "how"),
    [
        (b"half a body, then FIN\r\nmore", "close"),
        (b"half a body, then RST\r\n", "reset"),
        (b"everything but the end marker's last LF\r\n.\r", "close"),
        (b"everything but the end marker's CRLF\r\n.", "close"),
    ],
)
def test_client_gone_mid_data(server: PostarServer, tail: bytes, how: str) -> None:
    alice_before = stat(server, ALICE)
    marker, body = unique_message("cut-off", size=100_000)
    client = SMTPWire.open(server.ports["smtp"])
    _transaction(client, [ALICE])
    closes = _close_count(server)
    client.send(body + tail)
    time.sleep(0.2)  # let the server read it all before the connection goes
    if how == "reset":
        client.reset()
    else:
        client.close()
    assert wait_until(lambda: _close_count(server) > closes), "server never saw the close"
    other_session_works(server)
    messages = fetch_all(server, ALICE)
    assert len(messages) == alice_before
    assert not any(marker.encode() in m for m in messages)


# ---- invalid UTF-8 and NUL --------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"EHLO \xff\xfe",
        b"NO\x00OP",
        b"\xc3\x28",
        b"\x00\x00\x00",
        b"MAIL FROM:<a\x00b@remote.test>",
        b"HELO host\x00name",
        b"\xef\xbb\xbfEHLO bom.test",
    ],
)
def test_bad_bytes_in_commands(server: PostarServer, line: bytes) -> None:
    client = SMTPWire.open(server.ports["smtp"], ehlo=False)
    reply = client.cmd(line)
    # RFC 5321 4.2.2 / 4.5.3.1.4: a line that is no command at all is a syntax error (500).
    assert reply.code == 500, reply
    # The session is still in a sane state: a proper transaction works on it.
    assert client.cmd("EHLO client.test").code == 250
    marker, body = unique_message("after-bad-bytes")
    _transaction(client, [BOB])
    client.send(body + b".\r\n")
    assert client.reply().code == 250
    assert sum(marker.encode() in m for m in fetch_all(server, BOB)) == 1
    assert_no_traceback(server)


def test_bad_bytes_in_commands_inside_a_transaction(server: PostarServer) -> None:
    client = SMTPWire.open(server.ports["smtp"])
    assert client.cmd("MAIL FROM:<sender@remote.test>").code == 250
    for line in (b"RCPT TO:<\xff\xfe@example.test>", b"RCPT TO:<alice\x00@example.test>"):
        reply = client.cmd(line)
        assert 500 <= reply.code <= 553, reply
    # The transaction survives its bad lines: a good recipient still gets the message.
    assert client.cmd(f"RCPT TO:<{ALICE}>").code == 250
    assert client.cmd("DATA").code == 354
    marker, body = unique_message("bad-rcpt-lines")
    client.send(body + b".\r\n")
    assert client.reply().code == 250
    assert sum(marker.encode() in m for m in fetch_all(server, ALICE)) == 1


@pytest.mark.parametrize(
    "content",
    [
        b"Subject: caf\xe9 \xff\xfe\r\nX-Nul: a\x00b\r\n\r\nbody \xc3\x28 \x00\x00 end\r\n",
        b"Subject: \x00\r\n\r\n\x00" * 3 + b"\r\n",
        b"\xff\xfe\xfd: not a header\r\n\r\n\x80\x81\r\n",
        b'Content-Type: multipart/mixed; boundary="\xff\x00"\r\n\r\n--\xff\x00\r\n'
        b'Content-Type: text/plain; charset="\x00"\r\n\r\n\xff\r\n--\xff\x00--\r\n',
    ],
)
def test_bad_bytes_in_message_content(server: PostarServer, content: bytes) -> None:
    alice_before = stat(server, ALICE)
    # A unique last line tells this test's message from the others in the shared mailbox.
    marker = unique_message("bad-content")[0]
    content += f"{marker}\r\n".encode()
    client = SMTPWire.open(server.ports["smtp"])
    _transaction(client, [ALICE])
    client.send(content + b".\r\n")
    reply = client.reply()
    # Accepted or refused, but a clear answer either way, and no traceback.
    assert reply.code == 250 or 550 <= reply.code <= 554, reply
    assert client.cmd("NOOP").code == 250
    messages = fetch_all(server, ALICE)
    mine = [m for m in messages if marker.encode() in m]
    if reply.code == 250:
        assert len(messages) == alice_before + 1 and len(mine) == 1
        # Stored as received: the bytes a client downloads are the bytes that came in.
        assert mine[0].endswith(content)
    else:
        assert len(messages) == alice_before and mine == []
    assert_no_traceback(server)
    other_session_works(server)


# ---- too many recipients ----------------------------------------------------------------------


def test_thousand_recipients(server: PostarServer) -> None:
    limit = 100  # LimitsConfig.recipients_per_message's default
    # Distinct addresses that all resolve (plus-addressing): the first `limit` reach alice,
    # the rest name bob, so any recipient past the limit that slipped in would show.
    rcpts = [f"alice+{i}@{DOMAIN}" for i in range(limit)]
    rcpts += [f"bob+{i}@{DOMAIN}" for i in range(1000 - limit)]
    alice_before, bob_before = stat(server, ALICE), stat(server, BOB)
    client = SMTPWire.open(server.ports["smtp"])
    rss_before = server.rss_kb()
    assert client.cmd("MAIL FROM:<sender@remote.test>").code == 250
    sender = Sender(client, b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in rcpts))
    sender.start()  # RFC 2920: pipelined, replies read while the commands go out
    codes = [client.reply() for _ in rcpts]
    sender.join(timeout=30)
    assert [r.code for r in codes[:limit]] == [250] * limit
    # RFC 5321 4.5.3.1.10: 452 for recipients past the server's limit.
    assert {r.lines[0][:9] for r in codes[limit:]} == {"452 4.5.3"}
    marker, body = unique_message("many-rcpts")
    assert client.cmd("DATA").code == 354
    client.send(body + b".\r\n")
    assert client.reply().code == 250
    assert client.cmd("QUIT").code == 221
    growth = server.rss_kb() - rss_before
    assert growth < MEMORY_BOUND_KB
    alice = fetch_all(server, ALICE)
    # One account behind a hundred addresses gets one copy, not a hundred.
    assert len(alice) == alice_before + 1
    assert sum(marker.encode() in m for m in alice) == 1
    assert stat(server, BOB) == bob_before


# ---- password guessing -------------------------------------------------------------------------

AUTH_CONFIG = """
[auth]
failures_before_delay = 2
failure_delay = 0.4
failures_before_lockout = 5
lockout_seconds = 3
"""


def _auth(server: PostarServer, password: str, user: str = ALICE) -> tuple[Reply, float]:
    """AUTH PLAIN on a new submission connection; returns the reply and how long it took."""
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    with SMTPWire.open(server.ports["submission"]) as client:
        started = time.monotonic()
        reply = client.cmd(f"AUTH PLAIN {token}")
        return reply, time.monotonic() - started


def _guess_until_locked(server: PostarServer) -> list[float]:
    times = []
    for _ in range(5):  # failures_before_lockout
        reply, took = _auth(server, "wrong password")
        assert reply.code == 535, reply
        times.append(took)
    return times


def test_password_guessing_is_throttled_then_locked_out(tmp_path: Path) -> None:
    with running_server(tmp_path, AUTH_CONFIG) as server:
        times = _guess_until_locked(server)
        print("SMTP AUTH failure answer times:", [f"{t:.2f}" for t in times])
        # Failures 3, 4 and 5 come after failures_before_delay=2: 0.4 s, 0.8 s, 1.2 s more.
        for i, extra in ((2, 0.4), (3, 0.8), (4, 1.2)):
            assert times[i] >= extra * 0.9, times
        assert times[4] > times[0] + 0.6, times
        # Locked out: even the right password is refused (RFC 4954 454 4.7.0), quickly.
        reply, _took = _auth(server, PASSWORD)
        assert reply.code == 454 and reply.lines[0].startswith("454 4.7.0"), reply
        # A flood of guesses during the lockout costs neither time nor memory.
        rss_before = server.rss_kb()
        token = base64.b64encode(f"\0{ALICE}\0guess".encode()).decode()
        with SMTPWire.open(server.ports["submission"]) as client:
            for _ in range(15):  # under errors_per_session: 454 is not a 5xx
                assert client.cmd(f"AUTH PLAIN {token}").code == 454
        assert server.rss_kb() - rss_before < MEMORY_BOUND_KB
        # Other sessions are not blocked: receiving mail needs no login. (Reading it from this
        # address must wait: the lockout is per IP as well as per account.)
        witness = deliver(server, BOB, tag="during-lockout")
        # The lockout ends after lockout_seconds.
        time.sleep(3.2)
        reply, _took = _auth(server, PASSWORD)
        assert reply.code == 235, reply
        assert any(witness.encode() in m for m in fetch_all(server, BOB))
        # Locked out again, then a fresh server run (throttling state lives in memory) lets
        # the right password in at once.
        _guess_until_locked(server)
        assert _auth(server, PASSWORD)[0].code == 454
        assert server.stop() == 0
        server.start()
        reply, _took = _auth(server, PASSWORD)
        assert reply.code == 235, reply


@pytest.mark.parametrize(
    ("mechanism", "answers", "expected"),
    [
        ("PLAIN", [b"*"], "501 5.0.0"),  # RFC 4954 section 4: "*" cancels
        ("LOGIN", [b"*"], "501 5.0.0"),
        ("LOGIN", [base64.b64encode(ALICE.encode()), b"*"], "501 5.0.0"),  # after one answer
        ("PLAIN", [b"not base64!"], "501 5.5.2"),
        ("PLAIN !!!", [], "501 5.5.2"),  # a bad initial response
        ("PLAIN =", [], "501 5.5.2"),  # "=": present but empty, not a PLAIN message
        ("SCRAM-SHA-256", [b"*"], "501 5.0.0"),
    ],
)
def test_auth_exchange_cancelled_or_garbled(
    server: PostarServer, mechanism: str, answers: list[bytes], expected: str
) -> None:
    """The client ends the SASL exchange itself: one 501, and the session goes on (it used to
    end in a traceback, the 501 never sent)."""
    with SMTPWire.open(server.ports["submission"]) as client:
        reply = client.cmd(f"AUTH {mechanism}")
        for answer in answers:
            assert reply.code == 334, reply
            reply = client.cmd(answer.decode())
        assert reply.lines[0].startswith(expected), reply
        assert client.cmd("NOOP").code == 250
        token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
        assert client.cmd(f"AUTH PLAIN {token}").code == 235
    assert wait_until(lambda: all_closed(server))
    assert_no_traceback(server)


# ---- STARTTLS command injection -----------------------------------------------------------------


def test_starttls_injection(server: PostarServer) -> None:
    alice_before = stat(server, ALICE)
    client = SMTPWire.open(server.ports["smtp"])
    # CVE-2011-0411: commands pipelined behind STARTTLS, in the same packet, must die with
    # the plaintext session; otherwise a MITM could prepend commands to the TLS session.
    client.send(b"STARTTLS\r\nEHLO evil.test\r\nMAIL FROM:<evil@x.test>\r\n")
    reply = client.reply()
    assert reply.code == 220, reply
    client.wrap_tls()
    # A fresh session (RFC 3207 4.2): no EHLO, no MAIL. Had the injected lines run, the
    # first reply here would be their 250s and this RCPT would be accepted.
    reply = client.cmd(f"RCPT TO:<{ALICE}>")
    assert reply.code == 503, reply
    reply = client.cmd("MAIL FROM:<sender@remote.test>")
    assert reply.code == 503, reply
    assert client.nothing_pending()
    # And the TLS session works normally.
    assert client.cmd("EHLO client.test").code == 250
    marker, body = unique_message("over-tls")
    _transaction(client, [ALICE])
    client.send(body + b".\r\n")
    assert client.reply().code == 250
    assert client.cmd("QUIT").code == 221
    messages = fetch_all(server, ALICE)
    assert len(messages) == alice_before + 1
    mine = [m for m in messages if marker.encode() in m]
    assert len(mine) == 1 and b"evil" not in mine[0]


# ---- SMTP smuggling --------------------------------------------------------------------------


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"])
def test_smtp_smuggling(server: PostarServer, fake_end: bytes) -> None:
    alice_before, bob_before = stat(server, ALICE), stat(server, BOB)
    carrier = unique_message("carrier")[0].encode()
    hidden = unique_message("smuggled")[0].encode()
    smuggled = (
        b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\n" + hidden + b"\r\n"
    )
    client = SMTPWire.open(server.ports["smtp"])
    # One packet: a message whose body holds a fake end marker and a second transaction.
    client.send(
        b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
        b"Subject: carrier\r\n\r\n" + carrier + fake_end + smuggled + b".\r\nQUIT\r\n"
    )
    replies = _closes(client)
    assert [r.code for r in replies] == [250, 250, 354, 250, 221], replies
    alice = fetch_all(server, ALICE)
    assert len(alice) == alice_before + 1
    mine = [m for m in alice if carrier in m]
    assert len(mine) == 1
    # The smuggled transaction is text inside the one message, not a second message.
    assert hidden in mine[0] and b"RCPT TO:<bob@example.test>" in mine[0]
    bob = fetch_all(server, BOB)
    assert len(bob) == bob_before and not any(hidden in m for m in bob)


def test_smtp_smuggling_with_bare_newlines_rejected(tmp_path: Path) -> None:
    with running_server(tmp_path, '[smtp]\nbare_newlines = "reject"\n') as server:
        client = SMTPWire.open(server.ports["smtp"])
        _transaction(client, [ALICE])
        client.send(
            b"Subject: carrier\r\n\r\ntext\n.\nMAIL FROM:<ceo@example.test>\n"
            b"RCPT TO:<bob@example.test>\nDATA\nsmuggled\r\n.\r\n"
        )
        reply = client.reply()
        assert reply.lines[0].startswith("550 5.6.0"), reply
        assert client.cmd("NOOP").code == 250
        assert stat(server, ALICE) == 0 and stat(server, BOB) == 0


# ---- connection limits ---------------------------------------------------------------------------


def test_connections_per_ip(tmp_path: Path) -> None:
    with running_server(tmp_path, "[limits]\nconnections_per_ip = 5\n") as server:
        port = server.ports["smtp"]
        # The harness's readiness probes count against the limit until the server sees them go.
        assert wait_until(lambda: all_closed(server))
        clients = [SMTPWire.open(port, ehlo=False) for _ in range(5)]
        sixth = SMTPWire(port)
        reply = sixth.reply()
        assert reply.code == 421, reply
        assert sixth.at_eof()
        sixth.close()
        # The open sessions are unaffected.
        assert all(c.cmd("NOOP").code == 250 for c in clients)
        for client in clients[:2]:
            assert client.cmd("QUIT").code == 221
            client.close()

        def admitted() -> bool:
            with SMTPWire(port) as probe:
                return probe.reply().code == 220

        # Slots are freed when the server has seen the closes.
        assert wait_until(admitted, timeout=5)
        for client in clients[2:]:
            client.close()
        assert wait_until(lambda: all_closed(server))
        other_session_works(server)
