"""The `postar` command's contract, with a real server running beside it: management commands
take effect on the live server, backup/restore carries the mail over, SIGTERM is a clean stop,
and the first run without a configuration gives a server one can log in to."""

from __future__ import annotations

import os
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.mailclients import (
    ALICE,
    BOB,
    SOCKET_TIMEOUT,
    deliver,
    numbered_message,
    pop3_count,
    pop3_messages,
    pop3_session,
    swaks,
)
from tests.support.server import DOMAIN, PostarServer, wait_for_port

OTHER = "other.test"


def _cli_fails(server: PostarServer, *args: str, input_text: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "postar", "--config", str(server.config_path), *args],
        input=input_text.encode() if input_text is not None else None,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode != 0, f"postar {' '.join(args)} should have failed"
    return result.stderr.decode()


def _login_refused(server: PostarServer, user: str, password: str) -> bool:
    pop = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=SOCKET_TIMEOUT)
    try:
        pop.user(user)
        pop.pass_(password)
    except poplib.error_proto:
        return True
    finally:
        pop.close()
    return False


def _rcpt_reply(server: PostarServer, rcpt: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=SOCKET_TIMEOUT) as smtp:
        smtp.ehlo("client.remote.test")
        smtp.mail("sender@remote.test")
        return smtp.rcpt(rcpt)


# ---- domains, users, aliases on a live server ----------------------------------------------
def test_domain_add_list_remove(postar: PostarServer) -> None:
    carol = f"carol@{OTHER}"
    assert _rcpt_reply(postar, carol)[0] == 554  # not ours: relay refused
    assert f"domain {OTHER} added" in postar.cli("domain", "add", OTHER)
    assert "exists" in _cli_fails(postar, "domain", "add", OTHER)
    names = postar.cli("domain", "list").split()
    assert DOMAIN in names and OTHER in names
    # Ours now, but nobody lives there yet.
    assert _rcpt_reply(postar, carol)[0] == 550
    postar.add_user(carol)
    assert _rcpt_reply(postar, carol)[0] == 250
    # A domain with accounts cannot be removed out from under them.
    assert "still has" in _cli_fails(postar, "domain", "remove", OTHER)
    postar.cli("user", "remove", carol)
    assert f"domain {OTHER} removed" in postar.cli("domain", "remove", OTHER)
    assert OTHER not in postar.cli("domain", "list").split()
    assert _rcpt_reply(postar, carol)[0] == 554


def test_user_add_list_passwd_remove(postar: PostarServer) -> None:
    carol = f"carol@{DOMAIN}"
    postar.cli("user", "add", carol, "--password-stdin", input_text="first secret\n")
    assert "already" in _cli_fails(
        postar, "user", "add", carol, "--password-stdin", input_text="x\n"
    )
    assert "does not exist" in _cli_fails(
        postar, "user", "add", "dave@nowhere.test", "--password-stdin", input_text="x\n"
    )
    # A password never comes from a pipe without --password-stdin.
    assert "--password-stdin" in _cli_fails(postar, "user", "add", "erin@example.test")

    deliver(postar, numbered_message(1), [carol])
    listing = postar.cli("user", "list")
    carol_line = next(line for line in listing.splitlines() if line.startswith(carol + " "))
    used = int(re.search(r"used=(\d+)", carol_line).group(1))  # type: ignore[union-attr]
    assert used == sum(len(m) for m in pop3_messages(postar, carol, "first secret"))
    assert ALICE in listing and BOB in listing

    postar.cli("user", "passwd", carol, "--password-stdin", input_text="second secret\n")
    assert _login_refused(postar, carol, "first secret")
    assert pop3_count(postar, carol, "second secret") == 1

    postar.cli("user", "remove", carol)
    assert carol not in postar.cli("user", "list")
    assert _login_refused(postar, carol, "second secret")
    assert _rcpt_reply(postar, carol)[0] == 550
    assert "no account" in _cli_fails(
        postar, "user", "passwd", carol, "--password-stdin", input_text="x\n"
    )


def test_alias_add_list_remove(postar: PostarServer) -> None:
    team = f"team@{DOMAIN}"
    out = postar.cli("alias", "add", team, ALICE, BOB)
    assert f"alias {team} -> {ALICE}, {BOB}" in out
    assert f"{team} -> {ALICE}, {BOB}" in postar.cli("alias", "list")
    assert _cli_fails(postar, "alias", "add", ALICE, BOB)  # an account's address is taken
    deliver(postar, b"Subject: team news\r\n\r\nhello team\r\n", [team])
    assert pop3_count(postar, ALICE) == 1 and pop3_count(postar, BOB) == 1
    postar.cli("alias", "remove", team)
    assert team not in postar.cli("alias", "list")
    assert _rcpt_reply(postar, team)[0] == 550


# ---- backup and restore -------------------------------------------------------------------------
def test_backup_while_running_and_restore_into_a_fresh_server(
    postar: PostarServer, tmp_path: Path
) -> None:
    for n in range(1, 4):
        deliver(postar, numbered_message(n, "backed up"))
    deliver(postar, numbered_message(4, "backed up"), [BOB])
    postar.cli("alias", "add", f"team@{DOMAIN}", ALICE, BOB)
    with pop3_session(postar) as pop:
        before = [line.split()[1] for line in pop.uidl()[1]]
    alice_before = pop3_messages(postar, ALICE)

    backup = tmp_path / "backup"
    assert "backup written" in postar.cli("backup", str(backup))
    assert "not empty" in _cli_fails(postar, "backup", str(backup))
    # Mail taken after the backup is not in it.
    deliver(postar, numbered_message(5, "after the backup"))

    (tmp_path / "fresh").mkdir()
    fresh = PostarServer(tmp_path / "fresh")
    # A running server's data directory is never restored over.
    assert "in use" in _cli_fails(
        _config_for_data_dir(postar, tmp_path / "probe"), "restore", str(backup), "--force"
    )
    assert "restored" in fresh.cli("restore", str(backup))
    fresh.start()
    try:
        assert pop3_messages(fresh, ALICE) == alice_before
        with pop3_session(fresh) as pop:
            assert [line.split()[1] for line in pop.uidl()[1]] == before
        assert len(pop3_messages(fresh, BOB)) == 1
        assert f"team@{DOMAIN} -> {ALICE}, {BOB}" in fresh.cli("alias", "list")
        # The restored server takes new mail as well.
        done = swaks(fresh, "smtp", "--from", "sender@remote.test", "--to", f"team@{DOMAIN}")
        assert done.returncode == 0, done.stdout
        assert pop3_count(fresh, BOB) == 2
    finally:
        assert fresh.stop() == 0


def _config_for_data_dir(server: PostarServer, root: Path) -> PostarServer:
    """A PostarServer handle whose configuration points at server's (live) data directory."""
    root.mkdir()
    probe = PostarServer(root)
    text = probe.config_path.read_text().replace(str(probe.data_dir), str(server.data_dir))
    probe.config_path.write_text(text)
    return probe


# ---- the process ---------------------------------------------------------------------------
def test_sigterm_ends_serve_with_exit_code_0(tmp_path: Path) -> None:
    server = PostarServer(tmp_path, roles=("smtp", "pop3"))
    server.add_domain(DOMAIN)
    server.add_user(ALICE)
    server.start()
    assert server.proc is not None
    # An idle SMTP session is told why it is being closed (RFC 5321 3.8: 421).
    idle = socket.create_connection(("127.0.0.1", server.ports["smtp"]), timeout=SOCKET_TIMEOUT)
    reader = idle.makefile("rb")
    assert reader.readline().startswith(b"220 ")
    deliver(server, numbered_message(1))
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=30)
    assert code == 0, server.log()[-3000:]
    assert time.monotonic() - started < 15
    assert reader.readline().startswith(b"421 ")
    idle.close()
    server.proc = None
    # What was acknowledged before the stop is there after a restart.
    server.start()
    try:
        assert pop3_count(server) == 1
    finally:
        assert server.stop() == 0


def _first_run_ports() -> dict[str, int]:
    from postar.app import SERVED_ROLES
    from postar.bootstrap import PORT_OFFSET
    from postar.config import ROLE_STANDARD_PORT

    return {role: ROLE_STANDARD_PORT[role] + PORT_OFFSET for role in SERVED_ROLES}


def _busy_ports(ports: dict[str, int]) -> list[int]:
    busy = []
    for port in ports.values():
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def test_first_run_without_config(tmp_path: Path) -> None:
    expected_ports = _first_run_ports()
    busy = _busy_ports(expected_ports)
    if busy:
        pytest.skip(f"first-run ports (standard + 10000) busy on this machine: {busy}")
    env = {k: v for k, v in os.environ.items() if k != "POSTAR_CONFIG"}
    env["PYTHONUNBUFFERED"] = "1"
    stdout_path = tmp_path / "stdout.txt"
    with open(stdout_path, "wb") as out, open(tmp_path / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "postar", "serve"],
            cwd=tmp_path,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while "Try: " not in text:  # the last line of the first-run settings
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, f"no settings printed: {text!r}"
            time.sleep(0.1)
            text = stdout_path.read_text()
        password = re.search(r"password (\S+)", text).group(1)  # type: ignore[union-attr]
        printed = {int(p) for p in re.findall(r"port (\d+)", text)}
        assert printed == set(expected_ports.values()), text
        assert "postmaster@example.test" in text

        data = tmp_path / "postar-data"
        assert (data / "postar.toml").is_file()
        credentials = data / "initial-credentials"
        assert credentials.read_text().split() == ["postmaster@example.test", password]
        assert credentials.stat().st_mode & 0o077 == 0  # the password is for the owner only

        for port in expected_ports.values():
            wait_for_port(port, proc=proc)
        with smtplib.SMTP("127.0.0.1", expected_ports["smtp"], timeout=SOCKET_TIMEOUT) as smtp:
            smtp.sendmail(
                "sender@remote.test", ["postmaster@example.test"], b"Subject: hi\r\n\r\nhi\r\n"
            )
        pop = poplib.POP3("127.0.0.1", expected_ports["pop3"], timeout=SOCKET_TIMEOUT)
        pop.user("postmaster@example.test")
        pop.pass_(password)
        assert pop.stat()[0] == 1
        pop.quit()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0

    # Without --config, later commands find the configuration the first run wrote.
    second = subprocess.run(
        [sys.executable, "-m", "postar", "user", "list"],
        cwd=tmp_path, env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert b"postmaster@example.test" in second.stdout
