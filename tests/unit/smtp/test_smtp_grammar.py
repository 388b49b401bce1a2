"""Paths (RFC 5321 4.1.2), ESMTP parameters and xtext (RFC 3461), replies (RFC 5321 4.2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postar.smtp import replies
from postar.smtp.address import (
    Mailbox,
    PathSyntaxError,
    parse_forward_path,
    parse_reverse_path,
    split_path,
)
from postar.smtp.errors import ClientError
from postar.smtp.params import (
    Extensions,
    parse_mail_params,
    parse_rcpt_params,
    xtext_decode,
    xtext_encode,
)
from postar.smtp.replies import Reply

EXT = Extensions(
    max_message_size=1000, eightbitmime=True, smtputf8=True, dsn=True, auth=True, chunking=True
)


@pytest.mark.parametrize(
    ("path", "mailbox"),
    [
        ("<user@example.org>", Mailbox("user", "example.org")),
        ("<first.last+tag@sub.example.org>", Mailbox("first.last+tag", "sub.example.org")),
        ("<@a.example,@b.example:user@c.example>", Mailbox("user", "c.example")),
        ('<"with space"@example.org>', Mailbox("with space", "example.org")),
        ('<"q\\"uote\\\\"@example.org>', Mailbox('q"uote\\', "example.org")),
        ('<"a@b>c"@example.org>', Mailbox("a@b>c", "example.org")),
        ("<user@[192.0.2.1]>", Mailbox("user", "[192.0.2.1]")),
        ("<user@[IPv6:2001:db8::1]>", Mailbox("user", "[IPv6:2001:db8::1]")),
        ("<user@[x-tag:anything]>", Mailbox("user", "[x-tag:anything]")),
    ],
)
def test_valid_paths(path: str, mailbox: Mailbox) -> None:
    assert parse_forward_path(path) == mailbox
    assert parse_reverse_path(path) == mailbox


@pytest.mark.parametrize(
    "path",
    [
        "<>x",
        "<user>",
        "<user@>",
        "<@example.org>",
        "<.user@example.org>",
        "<us..er@example.org>",
        "<user.@example.org>",
        "<user@-example.org>",
        "<user@exa_mple.org>",
        "<user@example..org>",
        "<user@[300.1.1.1]>",
        "<user@[IPv6:zz::1]>",
        '<"unterminated@example.org>',
        "<a b@example.org>",
        "<@bad_route:user@example.org>",
        "<δ@example.org>",  # UTF-8 only with SMTPUTF8
        "user@example.org",
    ],
)
def test_invalid_paths(path: str) -> None:
    with pytest.raises(PathSyntaxError):
        parse_forward_path(path)


def test_null_reverse_path_and_postmaster() -> None:
    assert parse_reverse_path("<>") is None
    assert parse_forward_path("<postmaster>").is_postmaster
    with pytest.raises(PathSyntaxError):
        parse_reverse_path("<postmaster>")


def test_utf8_paths_need_utf8() -> None:
    box = parse_forward_path("<δοκιμή@παράδειγμα.δοκιμή>", utf8=True)
    assert box.is_utf8
    assert str(box) == "δοκιμή@παράδειγμα.δοκιμή"


def test_split_path_finds_the_end_of_a_quoted_path() -> None:
    assert split_path('<"a> b"@example.org> SIZE=10') == ('<"a> b"@example.org>', "SIZE=10")
    assert split_path("<a@example.org>") == ("<a@example.org>", "")
    with pytest.raises(PathSyntaxError):
        split_path("<a@example.org>SIZE=10")


def test_mailbox_str_quotes_only_when_needed() -> None:
    assert str(Mailbox("plain.user", "example.org")) == "plain.user@example.org"
    assert str(Mailbox("with space", "example.org")) == '"with space"@example.org'
    assert str(Mailbox('q"', "example.org")) == '"q\\""@example.org'


@given(st.text(max_size=30))
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    assert encoded.isascii() and "=" not in encoded and " " not in encoded
    assert xtext_decode(encoded) == text


@pytest.mark.parametrize("bad", ["a+2", "a+zz", "a+2b", "a=b", "a b", "caf\u00e9"])
def test_xtext_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        xtext_decode(bad)


def test_mail_params() -> None:
    params = parse_mail_params("size=500 body=8bitmime RET=full ENVID=a+2Bb AUTH=<>", EXT)
    assert (params.size, params.body, params.ret, params.envid, params.auth) == (
        500,
        "8BITMIME",
        "FULL",
        "a+b",
        "<>",
    )
    assert parse_mail_params("", EXT) == type(params)()


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("SIZE=1001", replies.MESSAGE_TOO_BIG),
        ("SIZE=abc", replies.SYNTAX_ERROR_IN_PARAMETERS),
        ("SIZE", replies.SYNTAX_ERROR_IN_PARAMETERS),
        ("BODY=BINARYMIME", replies.PARAMETER_NOT_IMPLEMENTED),
        ("BODY=9BIT", replies.SYNTAX_ERROR_IN_PARAMETERS),
        ("SMTPUTF8=yes", replies.SYNTAX_ERROR_IN_PARAMETERS),
        ("RET=SOME", replies.SYNTAX_ERROR_IN_PARAMETERS),
        ("ENVID=" + "x" * 101, replies.SYNTAX_ERROR_IN_PARAMETERS),
        ("SIZE=1 SIZE=2", replies.SYNTAX_ERROR_IN_PARAMETERS),
        ("-BAD=1", replies.SYNTAX_ERROR_IN_PARAMETERS),
        ("XFOO", replies.PARAMETER_NOT_IMPLEMENTED),
        ("NOTIFY=NEVER", replies.PARAMETER_NOT_IMPLEMENTED),  # a RCPT parameter
    ],
)
def test_mail_param_errors(text: str, reply: Reply) -> None:
    with pytest.raises(ClientError) as info:
        parse_mail_params(text, EXT)
    assert info.value.reply == reply


def test_rcpt_params() -> None:
    params = parse_rcpt_params("NOTIFY=DELAY,failure ORCPT=UTF-8;a+40b", EXT, utf8=False)
    assert params.notify == frozenset({"DELAY", "FAILURE"})
    assert params.orcpt is not None and params.orcpt.address == "a@b"
    for bad in ("NOTIFY=", "NOTIFY=NEVER,DELAY", "NOTIFY=DELAY,DELAY", "ORCPT=rfc822", "ORCPT=;x"):
        with pytest.raises(ClientError):
            parse_rcpt_params(bad, EXT, utf8=False)


def test_reply_encoding() -> None:
    assert Reply(250, "2.0.0", "OK").encode() == b"250 2.0.0 OK\r\n"
    assert Reply(250, None, ("a", "b", "c")).encode() == b"250-a\r\n250-b\r\n250 c\r\n"
    # RFC 2034: every line of a multi-line reply carries the enhanced code
    assert Reply(550, "5.7.1", "one\ntwo").encode() == b"550-5.7.1 one\r\n550 5.7.1 two\r\n"
    # a CR or LF in a text line cannot start a forged reply line
    assert Reply(250, None, ("a\r\n250 b",)).encode() == b"250 a  250 b\r\n"
    with pytest.raises(ValueError):
        Reply(550, "4.0.0", "class mismatch")
    with pytest.raises(ValueError):
        Reply(199, None, "out of range")
