"""The state table (RFC 9051 section 3 and 6): one place rejects commands out of state."""

from __future__ import annotations

import pytest

from postar.imap import commands as c
from postar.imap.response import ResponseEncoder, Status, Tagged
from postar.imap.state import ALLOWED, State, admit, after, allowed
from postar.imap.testing import command

ANY = [b"CAPABILITY", b"NOOP", b"LOGOUT", b"ID NIL"]
NOT_AUTH_ONLY = [b"STARTTLS", b"AUTHENTICATE PLAIN", b"LOGIN a b"]
AUTH = [b"SELECT INBOX", b"EXAMINE INBOX", b"CREATE x", b"DELETE x", b"RENAME x y",
        b"SUBSCRIBE x", b"UNSUBSCRIBE x", b'LIST "" %', b'LSUB "" %', b"NAMESPACE",
        b"STATUS x (MESSAGES)", b"APPEND x {1+}\r\nz", b"IDLE", b"GETQUOTA x",
        b"GETQUOTAROOT x", b"SETQUOTA x ()", b"COMPRESS DEFLATE"]  # fmt: skip
SELECTED_ONLY = [b"CHECK", b"CLOSE", b"UNSELECT", b"EXPUNGE", b"UID EXPUNGE 1", b"SEARCH ALL",
                 b"FETCH 1 FLAGS", b"STORE 1 FLAGS ()", b"COPY 1 x", b"MOVE 1 x",
                 b"SORT (DATE) UTF-8 ALL", b"THREAD REFERENCES UTF-8 ALL",
                 b"UID FETCH 1 UID"]  # fmt: skip


def cmd(text: bytes) -> c.Command:
    return command(b"t " + text + b"\r\n")


@pytest.mark.parametrize("text", ANY + NOT_AUTH_ONLY + AUTH + SELECTED_ONLY + [b"ENABLE X"])
def test_table(text: bytes) -> None:
    command_ = cmd(text)
    expected = {
        State.NOT_AUTHENTICATED: text in ANY or text in NOT_AUTH_ONLY,
        State.AUTHENTICATED: text in ANY or text in AUTH or text == b"ENABLE X",
        State.SELECTED: text in ANY or text in AUTH or text in SELECTED_ONLY,
        State.LOGOUT: False,
    }
    for state, ok in expected.items():
        assert allowed(state, command_) is ok, state


def test_every_command_class_is_allowed_somewhere() -> None:
    placed = set().union(*ALLOWED.values())
    assert placed == set(c.ALL_COMMANDS)


def test_rejection_is_a_tagged_bad() -> None:
    rejection = admit(State.NOT_AUTHENTICATED, cmd(b"SELECT INBOX"))
    assert rejection == Tagged("t", Status.BAD, "SELECT not allowed in not authenticated state")
    assert ResponseEncoder().encode(rejection) == (
        b"t BAD SELECT not allowed in not authenticated state\r\n"
    )
    assert admit(State.SELECTED, cmd(b"FETCH 1 FLAGS")) is None


def test_transitions() -> None:
    na, auth, sel = State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED
    assert after(na, cmd(b"LOGIN a b"), ok=True) is auth
    assert after(na, cmd(b"LOGIN a b"), ok=False) is na
    assert after(auth, cmd(b"SELECT INBOX"), ok=True) is sel
    # RFC 9051 6.3.2: a failed SELECT in selected state leaves no mailbox selected.
    assert after(sel, cmd(b"EXAMINE nosuch"), ok=False) is auth
    assert after(sel, cmd(b"CLOSE"), ok=True) is auth
    assert after(sel, cmd(b"UNSELECT"), ok=True) is auth
    assert after(sel, cmd(b"LOGOUT"), ok=True) is State.LOGOUT
    assert after(sel, cmd(b"NOOP"), ok=True) is sel
