"""Random walks through the POP3 core: it never raises, and every command gets one status line."""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postar.pop3 import POP3Settings
from tests.unit.pop3.pop3_harness import CLEAR_SETTINGS, TLS_SETTINGS, FakeGlue

KEYWORDS = ["USER", "PASS", "AUTH", "STLS", "CAPA", "QUIT", "STAT", "LIST", "UIDL",
            "RETR", "TOP", "DELE", "RSET", "NOOP", "APOP", "XYZZY", ""]  # fmt: skip
ARGS = st.one_of(
    st.sampled_from(
        [
            "mrose",
            "secret",
            "1",
            "2",
            "3",
            "0",
            "-1",
            "x",
            "PLAIN",
            "LOGIN",
            base64.b64encode(b"\0mrose\0secret").decode(),
            "*",
            "=",
        ]
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12),
)
COMMAND = st.builds(
    lambda kw, args, lower: (kw.lower() if lower else kw) + "".join(" " + a for a in args),
    st.sampled_from(KEYWORDS),
    st.lists(ARGS, max_size=3),
    st.booleans(),
)
SETTINGS = st.sampled_from(
    [
        TLS_SETTINGS,
        CLEAR_SETTINGS,
        POP3Settings(plaintext_allowed=True, max_errors=5, line_length=40),
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(SETTINGS, st.lists(COMMAND, max_size=25), st.integers(1, 9))
def test_every_command_gets_a_status_line(
    pop3_settings: POP3Settings, commands: list[str], chunk_size: int
) -> None:
    glue = FakeGlue(pop3_settings, chunk_size=chunk_size)
    glue.feed([])
    for command in commands:
        if glue.closed is not None:
            break
        out = glue.feed([command.encode() + b"\r\n"])
        # One status line per command; "+ " only as an AUTH challenge (RFC 5034 section 4).
        assert out.startswith((b"+OK", b"-ERR", b"+ ")), (command, out)
        assert out.endswith(b"\r\n")
    assert glue.commits == [] or glue.closed == "quit"


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=30), max_size=20), st.booleans())
def test_arbitrary_bytes_never_raise(pieces: list[bytes], eof: bool) -> None:
    glue = FakeGlue(POP3Settings(plaintext_allowed=True, stls_available=True, line_length=32))
    out = glue.feed([b"USER mrose\r\nPASS secret\r\n", *pieces], eof=eof)
    assert out.endswith(b"\r\n")
    if eof:
        assert glue.closed is not None
    # Only QUIT commits; a dropped connection never does.
    if glue.closed == "eof":
        assert glue.commits == []
