"""Download clients with their own ideas of UIDL and deletion: fetchmail and getmail6.

Each client hands every message to an MDA that writes one file per message, so a test can
count what was fetched and compare it with what the server stored. Both clients write LF line
ends and add their own trace fields at the top; a fetched file must end with the stored message
(less the Return-Path line, which the clients rewrite) in LF form.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mailclients import (
    ALICE,
    BOB,
    STRICT_AUTH_CONFIG,
    deliver,
    numbered_message,
    pop3_count,
    pop3_messages,
    pop3_session,
    require_program,
    run,
    running_server,
    self_signed_cert,
)
from tests.support.server import PASSWORD, PostarServer


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostarServer]:
    """Passwords only over TLS: a client that logs in here must have used STLS or TLS."""
    with running_server(tmp_path_factory.mktemp("strict"), STRICT_AUTH_CONFIG) as server:
        yield server


def _as_fetched(stored: bytes) -> bytes:
    """The stored message as an MDA receives it: LF line ends, without the Return-Path line
    (fetchmail and getmail write their own first)."""
    assert stored.startswith(b"Return-Path: ")
    rest = stored[stored.index(b"\r\n") + 2 :]
    return rest.replace(b"\r\n", b"\n")


def _mda_command(outdir: Path) -> str:
    """A shell command that stores its standard input as a new file in outdir."""
    return f'cat > "$(mktemp {shlex.quote(str(outdir))}/msg.XXXXXXXX)"'


def _fetched(outdir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(outdir.iterdir(), key=lambda p: p.stat().st_mtime_ns)]


def _assert_same_messages(fetched: list[bytes], stored: list[bytes]) -> None:
    """Every stored message was fetched exactly once, byte for byte (apart from the trace the
    client added at the top)."""
    assert len(fetched) == len(stored)
    for original in stored:
        matches = [f for f in fetched if f.endswith(_as_fetched(original))]
        assert len(matches) == 1, original[:300]


# ---- fetchmail --------------------------------------------------------------------------------
class Fetchmail:
    """A private fetchmail: its rc file, HOME (for .fetchids and the lock) and output folder."""

    def __init__(self, root: Path) -> None:
        require_program("fetchmail")
        self.home = root / "home"
        self.out = root / "out"
        self.home.mkdir(parents=True)
        self.out.mkdir()
        self.rc = self.home / "fetchmailrc"

    def configure(
        self,
        port: int,
        *,
        user: str = ALICE,
        host: str = "localhost",
        options: str = "",
        cafile: Path | None = None,
    ) -> None:
        # "localhost" matches a DNS name in the server's self-signed certificate, so with the
        # certificate as sslcertfile fetchmail verifies the chain and the name for real.
        trust = f"sslcertfile {shlex.quote(str(cafile))}" if cafile else ""
        self.rc.write_text(
            "set no syslog\n"
            f"poll {host} protocol pop3 port {port} uidl\n"
            f'  user "{user}" password "{PASSWORD}"\n'
            f"  {options} {trust}\n"
            f"  mda '{_mda_command(self.out)}'\n"
        )
        # fetchmail refuses an rc file that others could read (it holds a password).
        self.rc.chmod(0o600)

    def run(self, *args: str) -> tuple[int, str]:
        done = run(["fetchmail", "--nosyslog", "-v", "-f", str(self.rc), *args], home=self.home)
        return done.returncode, done.stdout + done.stderr


@pytest.fixture
def fetchmail(tmp_path: Path) -> Fetchmail:
    return Fetchmail(tmp_path / "fetchmail")


# fetchmail's exit codes (fetchmail(1), "EXIT CODES").
FETCHMAIL_GOT_MAIL = 0
FETCHMAIL_NO_MAIL = 1


def test_fetchmail_downloads_and_deletes(postar: PostarServer, fetchmail: Fetchmail) -> None:
    for n in range(1, 4):
        deliver(postar, numbered_message(n, "fetchmail delete"))
    stored = pop3_messages(postar)
    fetchmail.configure(postar.ports["pop3"], cafile=self_signed_cert(postar))
    code, log = fetchmail.run()
    assert code == FETCHMAIL_GOT_MAIL, log
    _assert_same_messages(_fetched(fetchmail.out), stored)
    assert "flushed" in log and "not flushed" not in log
    assert pop3_count(postar) == 0


def test_fetchmail_keep_and_uidl_fetch_only_new(postar: PostarServer, fetchmail: Fetchmail) -> None:
    for n in range(1, 3):
        deliver(postar, numbered_message(n, "fetchmail keep"))
    fetchmail.configure(postar.ports["pop3"], options="keep", cafile=self_signed_cert(postar))
    code, log = fetchmail.run()
    assert code == FETCHMAIL_GOT_MAIL, log
    assert len(_fetched(fetchmail.out)) == 2
    assert pop3_count(postar) == 2  # --keep left them

    deliver(postar, numbered_message(3, "fetchmail keep"))
    code, log = fetchmail.run()
    assert code == FETCHMAIL_GOT_MAIL, log
    fetched = _fetched(fetchmail.out)
    assert len(fetched) == 3
    new = [f for f in fetched if b"Subject: fetchmail keep 3\n" in f]
    assert len(new) == 1
    # The UIDs fetchmail remembers are the server's UIDL values.
    with pop3_session(postar) as pop:
        uids = {line.split()[1].decode() for line in pop.uidl()[1]}
    remembered = (fetchmail.home / ".fetchids").read_text()
    assert all(uid in remembered for uid in uids)

    code, log = fetchmail.run()
    assert code == FETCHMAIL_NO_MAIL, log
    assert len(_fetched(fetchmail.out)) == 3
    assert pop3_count(postar) == 3


def test_fetchmail_uses_stls_where_passwords_need_tls(
    strict: PostarServer, fetchmail: Fetchmail
) -> None:
    deliver(strict, numbered_message(1, "fetchmail stls"), [BOB])
    fetchmail.configure(strict.ports["pop3"], user=BOB, cafile=self_signed_cert(strict))
    code, log = fetchmail.run()
    assert code == FETCHMAIL_GOT_MAIL, log
    assert "POP3> STLS" in log
    [message] = _fetched(fetchmail.out)
    assert b"Subject: fetchmail stls 1\n" in message
    assert pop3_count(strict, BOB, stls=True) == 0


@pytest.mark.parametrize("verify", [True, False], ids=["sslcertfile", "no-sslcertck"])
def test_fetchmail_ssl_to_pop3s(strict: PostarServer, fetchmail: Fetchmail, verify: bool) -> None:
    deliver(strict, numbered_message(2, "fetchmail ssl"), [BOB])
    if verify:
        fetchmail.configure(
            strict.ports["pop3s"], user=BOB, options="ssl", cafile=self_signed_cert(strict)
        )
    else:
        # Certificate checks off, against the bare address the certificate's DNS names miss.
        fetchmail.configure(strict.ports["pop3s"], user=BOB, host="127.0.0.1", options="ssl")
        code, log = fetchmail.run("--ssl", "--sslcertck")
        assert code != FETCHMAIL_GOT_MAIL, "an unverifiable certificate must fail with sslcertck"
        fetchmail.configure(
            strict.ports["pop3s"], user=BOB, host="127.0.0.1", options="ssl no sslcertck"
        )
    code, log = fetchmail.run()
    assert code == FETCHMAIL_GOT_MAIL, log
    assert "STLS" not in log  # TLS from the first byte
    [message] = _fetched(fetchmail.out)
    assert b"Subject: fetchmail ssl 2\n" in message


# ---- getmail6 ---------------------------------------------------------------------------------
class Getmail:
    def __init__(self, root: Path) -> None:
        require_program("getmail")
        self.state = root / "getmail"  # --getmaildir: where getmail keeps its oldmail files
        self.out = root / "out"
        self.state.mkdir(parents=True)
        self.out.mkdir()
        self.rc = root / "getmailrc"

    def configure(self, retriever: str, port: int, *, options: str, extra: str = "") -> None:
        self.rc.write_text(
            "[retriever]\n"
            f"type = {retriever}\n"
            f"server = 127.0.0.1\nport = {port}\n"
            f"username = {ALICE}\npassword = {PASSWORD}\n"
            f"{extra}\n"
            "[destination]\n"
            # MDA_external: getmail's Maildir and Mboxrd destinations refuse to run as root.
            "type = MDA_external\npath = /bin/sh\n"
            f"arguments = ('-c', {_mda_command(self.out)!r})\n"
            "allow_root_commands = true\n\n"
            "[options]\nverbose = 2\n"
            f"{options}\n"
        )

    def run(self) -> str:
        done = run(["getmail", "--getmaildir", str(self.state), "--rcfile", str(self.rc)])
        log = done.stdout + done.stderr
        assert done.returncode == 0, log
        return log

    def remembered(self) -> str:
        return "".join(p.read_text() for p in self.state.glob("oldmail-*"))


@pytest.fixture
def getmail(tmp_path: Path) -> Getmail:
    return Getmail(tmp_path / "getmail")


def test_getmail_pop3_delete(postar: PostarServer, getmail: Getmail) -> None:
    for n in range(1, 4):
        deliver(postar, numbered_message(n, "getmail delete"))
    stored = pop3_messages(postar)
    getmail.configure("SimplePOP3Retriever", postar.ports["pop3"], options="delete = true")
    log = getmail.run()
    assert "3 messages" in log
    _assert_same_messages(_fetched(getmail.out), stored)
    assert pop3_count(postar) == 0


def test_getmail_leaves_mail_and_fetches_only_new(postar: PostarServer, getmail: Getmail) -> None:
    for n in range(1, 3):
        deliver(postar, numbered_message(n, "getmail keep"))
    getmail.configure(
        "SimplePOP3Retriever", postar.ports["pop3"], options="delete = false\nread_all = false"
    )
    getmail.run()
    assert len(_fetched(getmail.out)) == 2
    deliver(postar, numbered_message(3, "getmail keep"))
    getmail.run()
    fetched = _fetched(getmail.out)
    assert len(fetched) == 3
    assert len([f for f in fetched if b"Subject: getmail keep 3\n" in f]) == 1
    # Its memory is our UIDL, which stays valid across sessions.
    with pop3_session(postar) as pop:
        uids = [line.split()[1].decode() for line in pop.uidl()[1]]
    assert len(uids) == 3 and all(uid in getmail.remembered() for uid in uids)
    getmail.run()
    assert len(_fetched(getmail.out)) == 3
    assert pop3_count(postar) == 3


@pytest.mark.parametrize("check", [True, False], ids=["ca_certs", "no-check"])
def test_getmail_pop3_ssl(strict: PostarServer, getmail: Getmail, check: bool) -> None:
    deliver(strict, numbered_message(1, "getmail ssl"), [ALICE])
    stored = pop3_messages(strict, ALICE, stls=True)
    extra = f"ca_certs = {self_signed_cert(strict)}" if check else ""
    getmail.configure(
        "SimplePOP3SSLRetriever", strict.ports["pop3s"], options="delete = true", extra=extra
    )
    getmail.run()
    _assert_same_messages(_fetched(getmail.out), stored)
    assert pop3_count(strict, ALICE, stls=True) == 0
