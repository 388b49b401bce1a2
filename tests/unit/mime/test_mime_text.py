"""Search text extraction and Content-Transfer-Encoding decoding."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postar.mime.encoding import (
    UnknownEncoding,
    decode_base64,
    decode_body,
    strip_line_end_space,
)
from postar.mime.parser import parse_message
from postar.mime.text import MAX_BODY_TEXT, html_to_text

# --- decode_body ---------------------------------------------------------------------------


def test_base64_with_line_breaks_and_junk() -> None:
    assert decode_body(b"SGVs\r\nbG8s\r\n IHdv*cmxk\r\n", "BASE64") == b"Hello, world"


def test_base64_missing_padding_and_lone_sextet() -> None:
    assert decode_base64(b"SGVsbG8") == b"Hello"
    assert decode_base64(b"SGVsbG8hQ") == b"Hello!"  # "Q" alone cannot make an octet


def test_base64_concatenated_chunks() -> None:
    # Two separately encoded pieces, "A" and "BC", glued together.
    assert decode_base64(b"QQ==QkM=") == b"ABC"


def test_base64_empty_and_only_padding() -> None:
    assert decode_base64(b"") == b""
    assert decode_base64(b"====\r\n") == b""


def test_quoted_printable() -> None:
    data = b"caf=C3=A9 soft=\r\nbreak trailing   \r\nbad =ZZ escape=\nend"
    assert (
        decode_body(data, "quoted-printable")
        == b"caf\xc3\xa9 softbreak trailing\r\nbad =ZZ escapeend"
    )


def test_quoted_printable_soft_break_with_padding() -> None:
    # RFC 2045 6.7 rule 3: white space after the "=" of a soft break was added in transport.
    assert decode_body(b"a= \r\nb", "quoted-printable") == b"ab"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b"a", b"="]), max_size=40))
def test_line_end_space_rule_of_rfc_2045(parts: list[bytes]) -> None:
    # RFC 2045 6.7 rule 3, as the regular expression it used to be: blanks before CRLF, LF or
    # the end go; others (before a bare CR, inside a line) stay.
    data = b"".join(parts)
    assert strip_line_end_space(data) == re.sub(rb"[ \t]+(?=\r?\n|\Z)", b"", data)


def test_long_blank_runs_inside_quoted_printable_lines() -> None:
    run = b" " * 50_000
    data = b"a" + run + b"b\r\nc" + run + b"\r\n"
    assert decode_body(data, "quoted-printable") == b"a" + run + b"b\r\nc\r\n"


@pytest.mark.parametrize("encoding", ["7bit", "8BIT", "binary", ""])
def test_identity_encodings(encoding: str) -> None:
    assert decode_body(b"\x00\xff=41", encoding) == b"\x00\xff=41"


def test_unknown_encoding_raises_for_imap_unknown_cte() -> None:
    with pytest.raises(UnknownEncoding):
        decode_body(b"begin 644 x\r\n", "x-uuencode")


# --- HTML -----------------------------------------------------------------------------------


def test_html_to_text() -> None:
    markup = (
        "<html><head><style>p {color: red}</style><script>var x = '<p>';</script></head>"
        "<body><!-- hidden --><p>Fish &amp; chips</p><div>caf&eacute;&nbsp;now</div>"
        "a < b and <br>c</body></html>"
    )
    assert html_to_text(markup) == "Fish & chips\ncafé now\na < b and\nc"


def test_html_unterminated_script_and_comment() -> None:
    assert html_to_text("keep<script>drop everything") == "keep"
    assert html_to_text("keep<!-- drop everything") == "keep"


# --- search text from parse_message -----------------------------------------------------------


def test_headers_are_decoded() -> None:
    raw = b"Subject: =?iso-8859-1?q?caf=E9?=\r\nFrom: =?utf-8?b?SsO2cmFu?= <j@x.test>\r\n\r\n"
    parsed = parse_message(raw)
    assert parsed.search_headers == "Subject: café\nFrom: Jöran <j@x.test>"


def test_base64_latin1_html_part() -> None:
    raw = (
        b"Content-Type: text/html; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"PHA+Q2Fm6TwvcD4=\r\n"  # <p>Caf\xe9</p>
    )
    assert parse_message(raw).search_body == "Café"


def test_html_meta_charset() -> None:
    raw = (
        b"Content-Type: text/html\r\n\r\n"
        b'<html><head><meta charset="koi8-r"></head><body>\xf0\xd2\xc9\xd7\xc5\xd4</body></html>'
    )
    assert parse_message(raw).search_body == "Привет"


def test_bad_charset_falls_back() -> None:
    raw = b"Content-Type: text/plain; charset=x-no-such\r\n\r\ncaf\xe9"
    assert parse_message(raw).search_body == "café"


def test_qp_utf8_with_crlf_normalised() -> None:
    raw = (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"=E2=82=AC 5\r\nnext\r\n"
    )
    assert parse_message(raw).search_body == "€ 5\nnext\n"


def test_non_text_parts_are_not_indexed() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n\r\nBINARYDATA\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nwords\r\n--b--\r\n"
    )
    assert parse_message(raw).search_body == "words"


def test_body_text_is_bounded() -> None:
    raw = b"Content-Type: text/plain\r\n\r\n" + b"0123456789\r\n" * 200_000
    parsed = parse_message(raw)
    assert len(parsed.search_body) == MAX_BODY_TEXT
    assert parsed.search_body.startswith("0123456789\n0123456789\n")


def test_budget_is_shared_between_parts() -> None:
    part = b"--b\r\n\r\n" + b"x" * (MAX_BODY_TEXT - 10) + b"\r\n"
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part * 3 + b"--b--\r\n"
    parsed = parse_message(raw)
    assert len(parsed.search_body) <= MAX_BODY_TEXT
    assert parsed.search_body.count("\n") == 1  # the second part was cut, the third not read
