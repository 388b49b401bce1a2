"""mime.dotlines: whether any line of a body starts with "." (SMTP/POP3 dot-stuffing)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postar.mime.dotlines import has_dot_lines

BODIES = st.binary(max_size=300) | st.text(alphabet=".\r\na", max_size=80).map(str.encode)


@given(BODIES)
def test_has_dot_lines_matches_a_line_by_line_model(data: bytes) -> None:
    # A line starts at the beginning and after every LF (a bare LF too, RFC 1939 section 3).
    assert has_dot_lines(data) == any(line.startswith(b".") for line in data.split(b"\n"))


def test_cases() -> None:
    assert not has_dot_lines(b"")
    assert has_dot_lines(b".")
    assert has_dot_lines(b"a\r\n.b\r\n")
    assert has_dot_lines(b"a\n.")
    assert not has_dot_lines(b"a.b\r\n \r\n.".replace(b"\r\n.", b"\r\n "))
