"""SMTP in with real clients (swaks, smtplib), checked by reading the mailbox back over POP3.

swaks is the judge for the wire: STARTTLS, implicit TLS, AUTH PLAIN/LOGIN, PIPELINING, custom
DATA. Replies are read from its transcript; what was stored is read with poplib.
"""

from __future__ import annotations

import base64
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mailclients import (
    ALICE,
    BOB,
    SOCKET_TIMEOUT,
    STRICT_AUTH_CONFIG,
    client_lines,
    client_tls_context,
    crlf,
    pop3_count,
    pop3_messages,
    require_program,
    run,
    running_server,
    self_signed_cert,
    server_replies,
    stored_bodies,
    strip_trace,
    swaks,
)
from tests.support.server import DOMAIN, PASSWORD, PostarServer

SENDER = "sender@remote.test"
FOREIGN = "someone@foreign.test"
SIZE_LIMIT = 100_000


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostarServer]:
    """Plaintext passwords refused without TLS even from loopback."""
    with running_server(tmp_path_factory.mktemp("strict"), STRICT_AUTH_CONFIG) as server:
        yield server


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostarServer]:
    """A server that takes messages of at most SIZE_LIMIT bytes."""
    config = f"[limits]\nmessage_size = {SIZE_LIMIT}\n"
    with running_server(tmp_path_factory.mktemp("small"), config) as server:
        yield server


def _auth_args(mechanism: str, password: str = PASSWORD) -> list[str]:
    return ["--auth", mechanism, "--auth-user", ALICE, "--auth-password", password]


def _with_protocol(raw: bytes) -> str:
    """The "with" clause of our one Received field (RFC 3848: ESMTP, ESMTPS, ESMTPSA...)."""
    fields, _body = strip_trace(raw)
    found = [f for f in fields if f.lower().startswith(b"received:")]
    assert len(found) == 1, fields
    match = re.search(rb"\swith\s+(\S+)\s", found[0])
    assert match, found[0]
    return match.group(1).decode()


def _last_reply_codes(transcript: str) -> list[str]:
    return [line[:3] for line in server_replies(transcript)]


# ---- transports -----------------------------------------------------------------------------
def test_swaks_plain_to_port_smtp(postar: PostarServer) -> None:
    done = swaks(postar, "smtp", "--from", SENDER, "--to", ALICE, "--header", "Subject: plain")
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(r.startswith("250 2.0.0") for r in server_replies(done.stdout))
    [raw] = pop3_messages(postar)
    assert b"\r\nSubject: plain\r\n" in raw
    assert b"X-Mailer: swaks" in raw
    assert raw.startswith(f"Return-Path: <{SENDER}>\r\n".encode())
    assert _with_protocol(raw) == "ESMTP"


def test_swaks_starttls(postar: PostarServer) -> None:
    done = swaks(postar, "smtp", "--tls", "--from", SENDER, "--to", ALICE)
    assert done.returncode == 0, done.stdout + done.stderr
    # The commands after STARTTLS travel inside TLS: swaks marks them "~>".
    assert "STARTTLS" in client_lines(done.stdout)
    assert " ~> MAIL FROM:<sender@remote.test>" in done.stdout
    assert "TLS started" in done.stdout
    [raw] = pop3_messages(postar)
    assert _with_protocol(raw) == "ESMTPS"


def test_swaks_implicit_tls_on_submissions(postar: PostarServer) -> None:
    done = swaks(
        postar, "submissions", "--tlsc", *_auth_args("PLAIN"), "--from", ALICE, "--to", BOB
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The greeting itself came over TLS.
    assert "<~  220 " in done.stdout
    assert "235 2.7.0" in "\n".join(server_replies(done.stdout))
    [raw] = pop3_messages(postar, BOB)
    assert _with_protocol(raw) == "ESMTPSA"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_auth_after_starttls_on_submission(strict: PostarServer, mechanism: str) -> None:
    # Without TLS the strict server does not offer the plaintext mechanisms at all...
    refused = swaks(strict, "submission", *_auth_args(mechanism), "--from", ALICE, "--to", BOB)
    assert refused.returncode != 0
    assert "Auth not attempted, requested type not available" in refused.stdout + refused.stderr
    ehlo_auth = [r for r in server_replies(refused.stdout) if r.startswith("250-AUTH")]
    assert ehlo_auth and mechanism not in ehlo_auth[0].split()
    # ...and after STARTTLS the same login succeeds and the message is taken.
    before = pop3_count(strict, BOB, stls=True)
    done = swaks(
        strict, "submission", "--tls", *_auth_args(mechanism), "--from", ALICE, "--to", BOB
    )
    assert done.returncode == 0, done.stdout + done.stderr
    replies = server_replies(done.stdout)
    assert any(r.startswith("235 ") for r in replies), replies
    assert f"AUTH {mechanism}" in " ".join(client_lines(done.stdout))
    assert pop3_count(strict, BOB, stls=True) == before + 1


def test_plaintext_auth_command_refused_without_tls(strict: PostarServer) -> None:
    """A client that sends AUTH PLAIN anyway, unadvertised, over plaintext is refused."""
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    with smtplib.SMTP("127.0.0.1", strict.ports["submission"], timeout=SOCKET_TIMEOUT) as smtp:
        smtp.ehlo()
        code, _msg = smtp.docmd("AUTH", f"PLAIN {token}")
        assert code in (504, 538), code  # RFC 4954: unknown-here mechanism or encryption required
        code, _msg = smtp.docmd("MAIL", f"FROM:<{ALICE}>")
        assert code == 530
        # After STARTTLS the very same credentials work.
        smtp.starttls(context=client_tls_context(strict))
        smtp.ehlo()
        code, _msg = smtp.docmd("AUTH", f"PLAIN {token}")
        assert code == 235


def test_swaks_pipelining(postar: PostarServer) -> None:
    done = swaks(postar, "smtp", "--pipeline", "--from", SENDER, "--to", f"{ALICE},{BOB}")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [ln.strip() for ln in done.stdout.splitlines()]
    # PIPELINING (RFC 2920): MAIL, both RCPTs and DATA leave before the first reply arrives.
    mail_sent = lines.index(f"-> MAIL FROM:<{SENDER}>")
    data_sent = lines.index("-> DATA")
    first_reply = next(i for i, ln in enumerate(lines) if ln.startswith("<-  250 2.1.0"))
    assert mail_sent < data_sent < first_reply
    assert len(pop3_messages(postar, ALICE)) == 1
    assert len(pop3_messages(postar, BOB)) == 1


def test_swaks_custom_data_with_leading_dots(postar: PostarServer, tmp_path: Path) -> None:
    message = (
        b"From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: dots\r\n\r\n"
        b"first line\r\n.leading dot\r\n..two dots\r\n.\r\n. \r\nlast line\r\n"
    )
    path = tmp_path / "dots.eml"
    # swaks always ends the data with CRLF "." CRLF, so a file's own last CRLF would become
    # an extra empty line: the file leaves it off and swaks supplies it.
    path.write_bytes(message.removesuffix(b"\r\n"))
    done = swaks(postar, "smtp", "--from", SENDER, "--to", ALICE, "--data", f"@{path}")
    assert done.returncode == 0, done.stdout + done.stderr
    # swaks dot-stuffs on the wire; the server must take the stuffing off again.
    assert "..leading dot" in done.stdout
    [raw] = pop3_messages(postar)
    _trace, body = strip_trace(raw)
    assert body == message


# ---- refusals -------------------------------------------------------------------------------
def test_unknown_recipient_550_511(postar: PostarServer) -> None:
    done = swaks(postar, "smtp", "--from", SENDER, "--to", f"nobody@{DOMAIN}")
    assert done.returncode != 0
    assert any(r.startswith("550 5.1.1") for r in server_replies(done.stdout)), done.stdout
    assert pop3_count(postar) == 0


def test_relay_without_auth_refused(postar: PostarServer) -> None:
    done = swaks(postar, "smtp", "--from", SENDER, "--to", FOREIGN)
    assert done.returncode != 0
    refusals = [r for r in server_replies(done.stdout) if r[:1] == "5"]
    assert refusals and refusals[0][4:9] == "5.7.1", done.stdout
    assert f"RCPT TO:<{FOREIGN}>" in client_lines(done.stdout)


def test_relay_with_auth_accepted_and_not_delivered_locally(postar: PostarServer) -> None:
    done = swaks(
        postar, "submission", "--tls", *_auth_args("PLAIN"), "--from", ALICE, "--to", FOREIGN
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert server_replies(done.stdout)[-2].startswith("250 2.0.0")
    # Queued for the outbound queue, not stored in any local mailbox.
    assert pop3_count(postar, ALICE) == 0
    assert pop3_count(postar, BOB) == 0
    # It waits in the durable outbound queue (the test server's DNS is unreachable).
    assert FOREIGN in postar.cli("queue", "list")


def test_recipient_domain_without_an_a_label_form_refused_501(postar: PostarServer) -> None:
    # SMTPUTF8 lets a U-label domain through the syntax check; one IDNA cannot encode (60
    # characters, but an A-label over 63 octets) can be neither local nor routed. Even for
    # an authenticated sender, who may relay, the answer comes at RCPT, not as a bounce.
    bad = "user@" + "ü" * 40 + "x" * 20 + ".example"
    with smtplib.SMTP("127.0.0.1", postar.ports["smtp"], timeout=30) as client:
        client.ehlo("client.test")
        client.login(ALICE, PASSWORD)  # loopback: plain-text AUTH allowed without TLS
        assert client.mail(ALICE, ["SMTPUTF8"])[0] == 250
        code, text = client.rcpt(bad)
        assert (code, text[:5]) == (501, b"5.1.3"), text
    assert bad not in postar.cli("queue", "list")


def test_submission_without_auth_refused_530(postar: PostarServer) -> None:
    done = swaks(postar, "submission", "--tls", "--from", ALICE, "--to", BOB)
    assert done.returncode != 0
    assert any(r.startswith("530 5.7.0") for r in server_replies(done.stdout)), done.stdout
    assert pop3_count(postar, BOB) == 0


def test_wrong_password_535(postar: PostarServer) -> None:
    done = swaks(
        postar, "submission", "--tls", *_auth_args("PLAIN", "not the password"),
        "--from", ALICE, "--to", BOB,
    )  # fmt: skip
    assert done.returncode != 0
    assert any(r.startswith("535 5.7.8") for r in server_replies(done.stdout)), done.stdout
    assert pop3_count(postar, BOB) == 0


def test_declared_size_over_limit_refused_at_mail(small: PostarServer) -> None:
    with smtplib.SMTP("127.0.0.1", small.ports["smtp"], timeout=SOCKET_TIMEOUT) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("size") and int(smtp.esmtp_features["size"]) == SIZE_LIMIT
        code, _msg = smtp.mail(SENDER, [f"SIZE={SIZE_LIMIT + 1}"])
        assert code == 552
        code, _msg = smtp.mail(SENDER, [f"SIZE={SIZE_LIMIT - 1000}"])
        assert code == 250


def test_oversized_data_refused(small: PostarServer, tmp_path: Path) -> None:
    before = pop3_count(small, BOB)
    big = tmp_path / "big.txt"
    big.write_bytes((b"x" * 76 + b"\r\n") * (SIZE_LIMIT // 78 + 10))
    done = swaks(small, "smtp", "--from", SENDER, "--to", BOB, "--body", f"@{big}")
    assert done.returncode != 0
    codes = _last_reply_codes(done.stdout)
    assert "354" in codes and codes[codes.index("354") + 1] == "552", done.stdout
    # The session goes on after the refusal (the data was read to its end), and nothing of
    # the refused message was stored.
    with smtplib.SMTP("127.0.0.1", small.ports["smtp"], timeout=SOCKET_TIMEOUT) as smtp:
        smtp.ehlo()
        smtp.mail(SENDER)
        smtp.rcpt(BOB)
        code, _msg = smtp.data(big.read_bytes())
        assert code == 552
        assert smtp.noop()[0] == 250
        smtp.sendmail(SENDER, [BOB], b"Subject: small\r\n\r\nfits\r\n")
    bodies = pop3_messages(small, BOB)
    assert len(bodies) == before + 1
    assert bodies[-1].endswith(b"Subject: small\r\n\r\nfits\r\n")


# ---- routing set up through the CLI -----------------------------------------------------------
def test_alias_to_two_users_stores_one_blob(postar: PostarServer) -> None:
    postar.cli("alias", "add", f"team@{DOMAIN}", ALICE, BOB)
    assert f"team@{DOMAIN} -> {ALICE}, {BOB}" in postar.cli("alias", "list")
    bodies_before = stored_bodies(postar.data_dir)
    done = swaks(postar, "smtp", "--from", SENDER, "--to", f"team@{DOMAIN}",
                 "--header", "Subject: to the team")  # fmt: skip
    assert done.returncode == 0, done.stdout
    [for_alice] = pop3_messages(postar, ALICE)
    [for_bob] = pop3_messages(postar, BOB)
    assert b"Subject: to the team" in for_alice
    # One delivery, one blob: both mailboxes hold the very same bytes.
    assert for_alice == for_bob
    assert stored_bodies(postar.data_dir) == bodies_before + 1


def test_plus_addressing_reaches_the_account(postar: PostarServer) -> None:
    done = swaks(postar, "smtp", "--from", SENDER, "--to", f"alice+news@{DOMAIN}")
    assert done.returncode == 0, done.stdout
    [raw] = pop3_messages(postar, ALICE)
    assert f"for <alice+news@{DOMAIN}>".encode() in raw
    assert pop3_count(postar, BOB) == 0


def test_catch_all_set_and_cleared(postar: PostarServer) -> None:
    stranger = f"whoever@{DOMAIN}"
    refused = swaks(postar, "smtp", "--from", SENDER, "--to", stranger)
    assert any(r.startswith("550 5.1.1") for r in server_replies(refused.stdout))

    postar.cli("domain", "catch-all", DOMAIN, BOB)
    assert f"{DOMAIN}  catch-all={BOB}" in postar.cli("domain", "list")
    done = swaks(postar, "smtp", "--from", SENDER, "--to", stranger)
    assert done.returncode == 0, done.stdout
    [raw] = pop3_messages(postar, BOB)
    assert f"for <{stranger}>".encode() in raw
    assert pop3_count(postar, ALICE) == 0  # a real account still gets only its own mail

    postar.cli("domain", "catch-all", DOMAIN)
    refused = swaks(postar, "smtp", "--from", SENDER, "--to", stranger)
    assert any(r.startswith("550 5.1.1") for r in server_replies(refused.stdout))
    assert pop3_count(postar, BOB) == 1


def test_removed_alias_is_unknown_again(postar: PostarServer) -> None:
    postar.cli("alias", "add", f"info@{DOMAIN}", ALICE)
    assert swaks(postar, "smtp", "--from", SENDER, "--to", f"info@{DOMAIN}").returncode == 0
    postar.cli("alias", "remove", f"info@{DOMAIN}")
    assert f"info@{DOMAIN}" not in postar.cli("alias", "list")
    refused = swaks(postar, "smtp", "--from", SENDER, "--to", f"info@{DOMAIN}")
    assert any(r.startswith("550 5.1.1") for r in server_replies(refused.stdout))
    assert pop3_count(postar, ALICE) == 1


# ---- smtplib ----------------------------------------------------------------------------------
def test_smtplib_login_needs_starttls_on_strict_server(strict: PostarServer) -> None:
    message = b"Subject: smtplib starttls\r\n\r\nover STARTTLS\r\n"
    with smtplib.SMTP("127.0.0.1", strict.ports["submission"], timeout=SOCKET_TIMEOUT) as smtp:
        smtp.ehlo("client.remote.test")
        # Only SCRAM is offered in the clear, which smtplib does not speak.
        with pytest.raises(smtplib.SMTPException):
            smtp.login(ALICE, PASSWORD)
        smtp.starttls(context=client_tls_context(strict))
        smtp.ehlo("client.remote.test")
        assert not smtp.has_extn("starttls")  # RFC 3207 4.2: not offered twice
        smtp.login(ALICE, PASSWORD)
        assert smtp.sendmail(ALICE, [BOB], message) == {}
    bodies = pop3_messages(strict, BOB, stls=True)
    assert any(b.endswith(message) and _with_protocol(b) == "ESMTPSA" for b in bodies)


def test_smtplib_smtp_ssl(strict: PostarServer) -> None:
    message = b"Subject: smtplib ssl\r\n\r\nover implicit TLS\r\n"
    with smtplib.SMTP_SSL(
        "127.0.0.1", strict.ports["submissions"], timeout=SOCKET_TIMEOUT,
        context=client_tls_context(strict),
    ) as smtp:  # fmt: skip
        smtp.ehlo("client.remote.test")
        assert "PLAIN" in smtp.esmtp_features["auth"].split()
        smtp.login(ALICE, PASSWORD)
        assert smtp.sendmail(ALICE, [BOB, FOREIGN], message) == {}
    bodies = pop3_messages(strict, BOB, stls=True)
    assert any(b.endswith(message) for b in bodies)


def test_smtplib_plain_smtp_multiple_recipients(postar: PostarServer) -> None:
    message = b"Subject: two at once\r\n\r\nhello both\r\n"
    with smtplib.SMTP("127.0.0.1", postar.ports["smtp"], timeout=SOCKET_TIMEOUT) as smtp:
        refused = smtp.sendmail(SENDER, [ALICE, f"nobody@{DOMAIN}", BOB], message)
        # A refused recipient does not sink the others (RFC 5321 3.3).
        assert list(refused) == [f"nobody@{DOMAIN}"] and refused[f"nobody@{DOMAIN}"][0] == 550
    for user in (ALICE, BOB):
        [raw] = pop3_messages(postar, user)
        assert strip_trace(raw)[1] == message


# ---- msmtp ------------------------------------------------------------------------------------
def _msmtp(
    server: PostarServer, tmp_path: Path, tls: str, message: bytes, auth: str = "on"
) -> tuple[int, str]:
    """msmtp as a sendmail replacement: config file, TLS mode, AUTH, message on stdin."""
    require_program("msmtp")
    port = server.ports["submissions" if tls == "implicit" else "submission"]
    rc = tmp_path / f"msmtprc-{tls}"
    rc.write_text(
        f"account default\nhost 127.0.0.1\nport {port}\nfrom {ALICE}\n"
        f"auth {auth}\nuser {ALICE}\npassword {PASSWORD}\n"
        f"tls {'off' if tls == 'none' else 'on'}\n"
        f"tls_starttls {'on' if tls == 'starttls' else 'off'}\n"
        f"tls_trust_file {self_signed_cert(server)}\ntimeout 15\n"
    )
    rc.chmod(0o600)  # msmtp refuses a config file with a password that others can read
    done = run(["msmtp", "-C", str(rc), BOB], input_bytes=message)
    return done.returncode, done.stderr


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_msmtp_submission(strict: PostarServer, tmp_path: Path, tls: str) -> None:
    # A Unix file: LF line ends and a line starting with a dot; msmtp puts it on the wire.
    message = f"Subject: msmtp {tls}\nFrom: {ALICE}\n\nhello\n.a dot line\nbye\n".encode()
    code, log = _msmtp(strict, tmp_path, tls, message)
    assert code == 0, log
    bodies = [strip_trace(raw)[1] for raw in pop3_messages(strict, BOB, stls=True)]
    # msmtp adds Date and Message-ID in front; the rest arrives as a CRLF copy of the file.
    assert any(body.endswith(b"\r\n" + crlf(message)) for body in bodies)


def test_msmtp_plain_auth_without_tls_refused(strict: PostarServer, tmp_path: Path) -> None:
    # SCRAM may log in without TLS (no password crosses the wire); PLAIN may not.
    code, log = _msmtp(strict, tmp_path, "none", b"Subject: never\n\nnever\n", auth="plain")
    assert code != 0
    assert "PLAIN" in log, log
    code, log = _msmtp(strict, tmp_path, "none", b"Subject: scram\n\nscram\n", auth="scram-sha-256")
    assert code == 0, log


def test_malformed_address_header_is_delivered_not_hung(postar: PostarServer) -> None:
    # A ")" outside a comment in To: once sent the address parser into an endless loop at
    # delivery: the client never got its reply and the worker was lost to every session.
    message = (
        b"From: Bob ) <bob@example.net>\r\nTo: a) b, ) <alice@example.test>\r\n"
        b"Subject: stray parenthesis\r\n\r\nbody\r\n"
    )
    with smtplib.SMTP("127.0.0.1", postar.ports["smtp"], timeout=SOCKET_TIMEOUT) as smtp:
        smtp.sendmail(SENDER, [ALICE], message)
    [raw] = pop3_messages(postar, ALICE)
    assert raw.endswith(message)
