"""`[smtp] workers = 2` against real server processes and real clients.

The serving process (the owner) accepts every SMTP connection and hands it to a worker
process (postar.workers); these tests check from outside what that must not change: mail
accepted is mail delivered, IMAP IDLE hears of it at once, connection limits and login
throttles are the whole server's, and no worker outlives its server.

Which process serves a connection is read from /proc: the server-side socket of a client
connection (local port = the server's, remote port = the client's) is found in
/proc/net/tcp and its inode in some process's /proc/PID/fd.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import os
import signal
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import DOMAIN, PASSWORD, PostarServer
from tests.support.wire import (
    LineClient,
    SMTPWire,
    assert_no_traceback,
    fetch_all,
    unique_message,
)

pytestmark = pytest.mark.integration

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
ROLES = ("smtp", "submission", "imap", "pop3")
WORKERS = "[smtp]\nworkers = 2\n"
WORKER_MODULE = "postar.workers.worker"
TIMEOUT = 15.0

ServerFactory = Callable[..., PostarServer]


# ---- processes and sockets, from /proc --------------------------------------------------------
def _is_worker(pid: int) -> bool:
    """A live (not zombie) worker process: the cmdline of a zombie is empty."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return WORKER_MODULE.encode() in cmdline


def worker_pids(server: PostarServer) -> list[int]:
    return sorted(pid for pid in server.pids()[1:] if _is_worker(pid))


def _established_inodes(port: int, client_port: int | None = None) -> set[str]:
    """Inodes of the ESTABLISHED IPv4 sockets whose local port is `port` (and whose remote
    port is `client_port`, if given): the server side of client connections."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state != "01" or int(local.split(":")[1], 16) != port:
            continue
        if client_port is not None and int(remote.split(":")[1], 16) != client_port:
            continue
        inodes.add(inode)
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def connections_by_pid(server: PostarServer, role: str = "smtp") -> dict[int, int]:
    """For the server and each of its workers: how many client connections of `role` it
    holds a descriptor of."""
    established = _established_inodes(server.ports[role])
    return {pid: len(_socket_inodes(pid) & established) for pid in server.pids()}


def serving_pid(server: PostarServer, client: socket.socket | None, role: str = "smtp") -> int:
    """The one process holding the server side of this client's connection."""
    assert client is not None, "not connected"
    wanted = _established_inodes(server.ports[role], client.getsockname()[1])
    holders: list[int] = []
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        holders = [pid for pid in server.pids() if _socket_inodes(pid) & wanted]
        if len(holders) == 1:
            return holders[0]
        time.sleep(0.02)  # handed over but not yet received: in flight in the channel
    raise AssertionError(f"connection held by {holders}, expected exactly one process")


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


# ---- the servers -----------------------------------------------------------------------------
@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Starts servers with two SMTP workers, alice and bob; at the end every one of them is
    stopped, and any worker process left over is killed (by its pid) and fails the test."""
    servers: list[PostarServer] = []
    seen_workers: set[int] = set()

    def start(extra_config: str = "") -> PostarServer:
        root = tmp_path / f"server{len(servers)}"
        root.mkdir()
        server = PostarServer(root, roles=ROLES, extra_config=WORKERS + extra_config)
        servers.append(server)
        server.add_domain(DOMAIN)
        server.add_user(ALICE)
        server.add_user(BOB)
        server.start()
        # Ready: both workers have opened the store (until then connections wait for them).
        wait_for(lambda: server.log().count("smtp worker ready") >= 2, TIMEOUT, "two workers ready")
        seen_workers.update(worker_pids(server))
        return server

    yield start
    leftovers: list[int] = []
    for server in servers:
        if server.proc is not None:
            seen_workers.update(worker_pids(server))
            code = server.stop()
            assert code == 0, f"server exited with {code}:\n{server.log()[-3000:]}"
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not any(_is_worker(p) for p in seen_workers), 15.0, "workers gone")
    for pid in seen_workers:
        if _is_worker(pid):
            leftovers.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"worker processes outlived their server: {leftovers}"


def _imap(server: PostarServer) -> imaplib.IMAP4:
    return imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=TIMEOUT)


def inbox_count(server: PostarServer, user: str = ALICE) -> int:
    imap = _imap(server)
    try:
        imap.login(user, PASSWORD)
        typ, data = imap.status("INBOX", "(MESSAGES)")
        assert typ == "OK", data
        text = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
        return int(text.rsplit("MESSAGES", 1)[1].strip(" )"))
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


# ---- delivery --------------------------------------------------------------------------------
def test_concurrent_mail_is_spread_over_two_workers_and_all_arrives(
    start_server: ServerFactory,
) -> None:
    server = start_server()
    assert server.proc is not None
    workers = worker_pids(server)
    assert len(workers) == 2, f"children running {WORKER_MODULE}: {workers}"
    connected = threading.Barrier(11, timeout=TIMEOUT)
    counted = threading.Barrier(11, timeout=TIMEOUT)
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp:
                smtp.ehlo()  # answered by whichever process serves the connection
                connected.wait()
                counted.wait()  # the sessions stay open until the main thread has looked
                for i in range(4):
                    _, body = unique_message(f"c{n}m{i}")
                    assert smtp.sendmail("sender@remote.test", [ALICE], body) == {}
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    try:
        connected.wait()
        wait_for(
            lambda: sum(connections_by_pid(server).values()) == 10,
            5.0,
            "ten connections held by the server's processes",
        )
        held = connections_by_pid(server)
        # The owner keeps no copy of what it handed over, and each connection goes to the
        # worker with the fewest: ten open sessions split five and five.
        assert held == {server.proc.pid: 0, workers[0]: 5, workers[1]: 5}, held
        counted.wait()
    except BaseException:
        connected.abort()  # let the client threads end now instead of at their timeout
        counted.abort()
        raise
    finally:
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert inbox_count(server) == 40
    assert worker_pids(server) == workers  # nobody died on the way


def _read_until(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {marker!r} within {timeout}s; got {data!r}")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"EOF before {marker!r}; got {data!r}")
        data += chunk
    return data


def test_idle_on_the_owner_hears_mail_a_worker_accepted(start_server: ServerFactory) -> None:
    server = start_server()
    workers = worker_pids(server)
    # imaplib has IDLE only from 3.14: speak it by hand.
    with socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=10) as imap:
        _read_until(imap, b"\r\n")
        imap.sendall(f'a1 LOGIN {ALICE} "{PASSWORD}"\r\na2 SELECT INBOX\r\n'.encode())
        _read_until(imap, b"a2 OK")
        imap.sendall(b"a3 IDLE\r\n")
        _read_until(imap, b"+ ")
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp:
            assert serving_pid(server, smtp.sock) in workers
            _, body = unique_message("idle")
            assert smtp.sendmail("sender@remote.test", [ALICE], body) == {}
            accepted = time.monotonic()  # the 250 has arrived
            data = _read_until(imap, b"EXISTS", timeout=5.0)
            latency = time.monotonic() - accepted
        assert b"* 1 EXISTS" in data
        assert latency < 1.0, f"IDLE woke {latency:.3f}s after the worker's 250"
        imap.sendall(b"DONE\r\n")
        assert b"a3 OK" in _read_until(imap, b"a3 ")


def test_a_killed_worker_is_replaced_and_no_accepted_mail_is_lost(
    start_server: ServerFactory,
) -> None:
    server = start_server()
    workers = worker_pids(server)
    victim_client = smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT)
    victim_client.ehlo()
    victim = serving_pid(server, victim_client.sock)
    assert victim in workers

    accepted: list[str] = []  # markers of messages answered 250
    refused: list[str] = []
    stop = threading.Event()

    def send_one(tag: str) -> None:
        marker, body = unique_message(tag)
        try:
            with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as smtp:
                if smtp.sendmail("sender@remote.test", [ALICE], body) == {}:
                    accepted.append(marker)
                    return
        except (smtplib.SMTPException, OSError) as exc:
            refused.append(f"{tag}: {exc!r}")
            return
        refused.append(tag)

    def keep_sending() -> None:
        n = 0
        while not stop.is_set():
            send_one(f"during{n}")
            n += 1
            time.sleep(0.02)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        time.sleep(0.3)
        killed_at = len(accepted)
        os.kill(victim, signal.SIGKILL)
        # Its connections go with it: the client sees the connection end, not a hang.
        # (A read timeout would be an OSError too: only a real end of connection counts.)
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            victim_client.noop()
            victim_client.noop()
        wait_for(lambda: "smtp worker exited" in server.log(), 5.0, "'smtp worker exited' log")
        wait_for(
            lambda: len(worker_pids(server)) == 2 and victim not in worker_pids(server),
            5.0,
            "a new worker in place of the killed one",
        )
        replacement = (set(worker_pids(server)) - set(workers)).pop()
        restarted_at = len(accepted)
        time.sleep(1.0)
    finally:
        stop.set()
        sender.join(timeout=60)
        victim_client.close()
    assert not sender.is_alive()
    # The survivor (or the owner) took the mail while the replacement was starting.
    assert restarted_at > killed_at, "no mail accepted between the kill and the restart"
    assert len(accepted) > restarted_at, "no mail accepted after the restart"
    # At most the connections handed to the victim as it died may fail; none after.
    assert len(refused) <= 3, refused

    # The replacement takes connections: two sessions open at once land on both workers.
    with (
        smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as one,
        smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as two,
    ):
        one.ehlo()
        two.ehlo()
        assert {serving_pid(server, one.sock), serving_pid(server, two.sock)} == set(
            worker_pids(server)
        )
        assert replacement in worker_pids(server)
        for smtp, tag in ((one, "after-a"), (two, "after-b")):
            marker, body = unique_message(tag)
            assert smtp.sendmail("sender@remote.test", [ALICE], body) == {}
            accepted.append(marker)

    stored = b"\n".join(fetch_all(server, ALICE))
    missing = [m for m in accepted if m.encode() not in stored]
    assert not missing, f"answered 250 but not in the mailbox: {missing}"
    assert_no_traceback(server)


# ---- login throttling across processes ----------------------------------------------------
THROTTLE = "[auth]\nfailures_before_lockout = 3\nfailures_before_delay = 100\n"
# Worker -> owner: the failure's record is sent before the 535 is written, but the owner
# reads its channel on its own loop. Polling with logins would change what is measured (a
# success clears the account's record, a failure adds one in the owner), so a fixed pause.
PROPAGATION = 0.5


def _auth_plain(smtp: smtplib.SMTP, user: str, password: str) -> int:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    code, _ = smtp.docmd("AUTH", f"PLAIN {token}")
    return code


def _submission_sessions(server: PostarServer, count: int) -> list[smtplib.SMTP]:
    """`count` submission sessions open at once, so the owner spreads them over the workers."""
    sessions = []
    for _ in range(count):
        smtp = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=TIMEOUT)
        sessions.append(smtp)
        code, _ = smtp.ehlo()
        assert code == 250
        assert smtp.has_extn("auth"), "AUTH not offered on loopback without TLS"
    return sessions


def test_smtp_auth_failures_on_several_workers_lock_out_imap(
    start_server: ServerFactory,
) -> None:
    server = start_server(THROTTLE)
    imap = _imap(server)
    assert imap.login(ALICE, PASSWORD)[0] == "OK"  # before: the password works
    imap.logout()
    sessions = _submission_sessions(server, 3)
    try:
        served_by = {serving_pid(server, s.sock, "submission") for s in sessions}
        assert served_by == set(worker_pids(server)), "the failures did not reach both workers"
        # One failure per connection: no worker alone sees the three of the lockout.
        for smtp in sessions:
            assert _auth_plain(smtp, ALICE, "wrong password") == 535
    finally:
        for smtp in sessions:
            smtp.close()
    time.sleep(PROPAGATION)
    imap = _imap(server)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
            imap.login(ALICE, PASSWORD)  # the right password, refused: locked out
    finally:
        imap.shutdown()


def test_imap_failures_lock_out_smtp_auth_on_every_worker(start_server: ServerFactory) -> None:
    server = start_server(THROTTLE)
    for _ in range(3):
        imap = _imap(server)
        try:
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                imap.login(ALICE, "wrong password")
        finally:
            imap.shutdown()
    # Owner -> workers: the records go down each worker's channel before any connection
    # handed over after them, so no pause is needed here.
    sessions = _submission_sessions(server, 4)
    try:
        served_by = {serving_pid(server, s.sock, "submission") for s in sessions}
        assert served_by == set(worker_pids(server))
        codes = [_auth_plain(smtp, ALICE, PASSWORD) for smtp in sessions]
    finally:
        for smtp in sessions:
            smtp.close()
    # 454 4.7.0 is the lockout's answer (a 535 would also refuse, but say "wrong password").
    assert codes == [454] * 4, codes


# ---- limits ----------------------------------------------------------------------------------
def _banner(client: LineClient) -> bytes:
    line = client.line()
    while line.startswith(b"220-"):
        line = client.line()
    return line


def test_the_per_ip_limit_counts_connections_on_every_worker(
    start_server: ServerFactory,
) -> None:
    server = start_server("[limits]\nconnections_per_ip = 3\n")
    port = server.ports["smtp"]
    held: list[LineClient] = []
    try:
        # The harness's readiness probes may still hold a slot for a moment (their end is
        # reported by a worker): retry until three connections are in at once.
        deadline = time.monotonic() + 5.0
        while True:
            held = [LineClient(port) for _ in range(3)]
            banners = [_banner(c) for c in held]
            if all(b.startswith(b"220 ") for b in banners):
                break
            for c in held:
                c.close()
            held = []
            assert time.monotonic() < deadline, f"never three 220s at once: {banners}"
            time.sleep(0.1)
        assert len({serving_pid(server, c.sock) for c in held}) == 2  # both workers count
        with LineClient(port) as fourth:
            assert _banner(fourth).startswith(b"421 ")
            assert fourth.at_eof(5.0), "the refused connection was left open"
        held.pop().close()
        # The slot comes back once the worker reports the session's end.
        got = b""
        deadline = time.monotonic() + 5.0
        while not got.startswith(b"220 "):
            assert time.monotonic() < deadline, f"no 220 after a slot was freed: {got!r}"
            with LineClient(port) as again:
                got = _banner(again)
            if not got.startswith(b"220 "):
                time.sleep(0.05)
    finally:
        for c in held:
            c.close()


def test_a_proxied_connection_keeps_its_client_address_in_a_worker(
    start_server: ServerFactory,
) -> None:
    # The owner reads the PROXY header; the worker that gets the socket must see the client
    # the proxy spoke for (the Received header names it), and the owner counts that client.
    server = start_server(
        '[proxy_protocol]\nroles = ["smtp"]\ntrusted_networks = ["127.0.0.1/32"]\n'
        "[limits]\nconnections_per_ip = 1\n"
    )
    port = server.ports["smtp"]
    marker, body = unique_message("proxied")
    with SMTPWire(port) as client:
        client.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n")
        assert client.reply().code == 220
        assert serving_pid(server, client.sock) in worker_pids(server)
        # A second connection for the same proxied client is over its limit of one.
        with LineClient(port) as second:
            second.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 40001 25\r\n")
            assert _banner(second).startswith(b"421 ")
        assert client.cmd("EHLO client.test").code == 250
        assert client.cmd("MAIL FROM:<x@remote.test>").code == 250
        assert client.cmd(f"RCPT TO:<{ALICE}>").code == 250
        assert client.cmd("DATA").code == 354
        reply = client.cmd(body + b".")
        assert reply.code == 250, reply
    [stored] = [m for m in fetch_all(server, ALICE) if marker.encode() in m]
    received = stored.split(b"\r\n\r\n", 1)[0]
    assert b"203.0.113.7" in received, received[:600]


# ---- stopping --------------------------------------------------------------------------------
def test_sigterm_stops_the_workers_too(start_server: ServerFactory) -> None:
    server = start_server()
    workers = worker_pids(server)
    assert len(workers) == 2
    assert server.stop() == 0
    wait_for(lambda: not any(_is_worker(p) for p in workers), 5.0, f"workers {workers} gone")
    assert "smtp worker killed at stop" not in server.log()  # they ended by themselves
    assert "smtp worker exited" not in server.log()  # and were not taken for a crash
    assert_no_traceback(server)


def test_workers_of_a_killed_owner_exit_by_themselves(start_server: ServerFactory) -> None:
    server = start_server()
    workers = worker_pids(server)
    assert len(workers) == 2
    server.kill()  # SIGKILL of the owner only: nobody tells the workers anything
    wait_for(lambda: not any(_is_worker(p) for p in workers), 15.0, f"workers {workers} gone")
