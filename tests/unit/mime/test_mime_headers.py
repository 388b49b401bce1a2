"""Header splitting, RFC 2047 encoded words and RFC 2045/2231 parameters."""

import pytest

from postar.mime.charset import codec_name, decode_text
from postar.mime.headers import (
    decode_words,
    field_value,
    first_token,
    parse_content_disposition,
    parse_content_type,
    parse_language,
    parse_params,
    split_fields,
)

# --- split_fields ---------------------------------------------------------------------------


def test_unfolds_and_keeps_order_and_case() -> None:
    block = b"Subject: one\r\n two\r\n\tthree\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    assert split_fields(block) == [("Subject", "one two\tthree"), ("X-A", "1"), ("x-a", "2")]


def test_lf_only_line_ends() -> None:
    assert split_fields(b"A: 1\n folded\nB: 2\n\n") == [("A", "1 folded"), ("B", "2")]


def test_stops_at_blank_line() -> None:
    assert split_fields(b"A: 1\r\n\r\nB: body, not a header\r\n") == [("A", "1")]


def test_lines_without_colon_and_mbox_from_are_skipped() -> None:
    block = (
        b"From sender@example.com  Tue Aug  6 11:51:02 2002\r\n"
        b"Subject: s\r\n"
        b"garbage line\r\n"
        b" continuation of garbage\r\n"
        b"To: t\r\n"
    )
    assert split_fields(block) == [("Subject", "s"), ("To", "t")]


def test_leading_continuation_is_skipped() -> None:
    assert split_fields(b" orphan\r\nA: 1\r\n") == [("A", "1")]


def test_obsolete_space_before_colon() -> None:
    # RFC 5322 4.5: obs-optional allows WSP between the name and the colon.
    assert split_fields(b"Subject  : hi\r\n") == [("Subject", "hi")]


def test_empty_value_and_value_with_colons() -> None:
    assert split_fields(b"A:\r\nB: x: y\r\n") == [("A", ""), ("B", "x: y")]


def test_utf8_header_kept_as_text() -> None:
    # RFC 6532 3.2: UTF-8 directly in header field bodies.
    assert split_fields("Subject: café ☕\r\n".encode()) == [("Subject", "café ☕")]


def test_latin1_header_falls_back_byte_for_byte() -> None:
    assert split_fields(b"Subject: caf\xe9\r\n") == [("Subject", "café")]


def test_nul_bytes_are_dropped() -> None:
    assert split_fields(b"Subject: a\x00b\r\n") == [("Subject", "ab")]


def test_field_value_is_case_insensitive_first_wins() -> None:
    fields = [("To", "a"), ("TO", "b")]
    assert field_value(fields, "to") == "a"
    assert field_value(fields, "cc") is None


# --- RFC 2047 encoded words -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 2047 section 8, the examples of how white space between words is treated.
        ("(=?ISO-8859-1?Q?a?=)", "(a)"),
        ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
        ("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
        ("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"),
        ("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)"),
        ("(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
        ("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"),
        (
            "=?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
            "André Pirard <PIRARD@vm1.ulg.ac.be>",
        ),
        # RFC 2231 section 5: a language tag after the charset.
        ("=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore"),
    ],
)
def test_rfc2047_examples(value: str, expected: str) -> None:
    assert decode_words(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?q?caf=C3=A9?=", "café"),
        ("=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=", "Grüße aus Köln"),
        ("=?koi8-r?B?8NLJ18XU?=", "Привет"),
        ("=?iso-2022-jp?B?GyRCRnxLXDhsGyhC?=", "日本語"),
        ("=?shift_jis?B?g2WDWINn?=", "テスト"),
        ("=?gb2312?B?1tDOxA==?=", "中文"),
        ("=?big5?B?pKSk5Q==?=", "中文"),
        ("=?ks_c_5601-1987?B?x9Gxub7u?=", "한국어"),
        ("=?windows-1252?Q?=80uro?=", "€uro"),
    ],
)
def test_charsets(value: str, expected: str) -> None:
    assert decode_words(value) == expected


def test_multibyte_character_split_across_words_is_joined() -> None:
    # "é" is C3 A9 in UTF-8; a sender cut the word between the two bytes.
    assert decode_words("=?utf-8?q?caf=C3?= =?utf-8?q?=A9?=") == "café"


def test_plain_text_between_words_is_kept() -> None:
    assert decode_words("Re: =?utf-8?q?a?= and =?utf-8?q?b?=!") == "Re: a and b!"


def test_word_glued_to_text_is_decoded_leniently() -> None:
    assert decode_words('"=?utf-8?q?caf=C3=A9?=" x=?utf-8?q?y?=') == '"café" xy'


def test_unknown_charset_falls_back() -> None:
    assert decode_words("=?x-bogus?q?caf=C3=A9?=") == "café"  # valid UTF-8 wins
    assert decode_words("=?x-bogus?q?caf=E9?=") == "café"  # then Latin-1


def test_ascii_label_over_8bit_bytes() -> None:
    assert decode_words("=?us-ascii?q?caf=C3=A9?=") == "café"
    assert decode_words("=?us-ascii?q?caf=E9?=") == "café"


def test_broken_base64_and_q_do_not_raise() -> None:
    assert decode_words("=?utf-8?b?QUJD?=") == "ABC"
    assert decode_words("=?utf-8?b?QUJ?=") == "AB"  # missing padding
    assert decode_words("=?utf-8?b?Q?=") == ""  # a lone sextet is no octet
    assert decode_words("=?utf-8?q?100=ZZ?=") == "100=ZZ"  # bad escape kept


def test_codec_that_is_not_a_charset_is_refused() -> None:
    assert codec_name("rot13") is None
    assert codec_name("base64") is None
    assert decode_words("=?rot13?q?nop?=") == "nop"


def test_not_encoded_words_untouched() -> None:
    for value in ("=?", "=?utf-8?x?abc?=", "a =? b ?= c", "=?utf-8?q?open"):
        assert decode_words(value) == value


def test_decode_text_never_raises_on_odd_codecs() -> None:
    assert decode_text(b"+AGEAYgBj-", "utf-7") == "abc"
    assert decode_text(b"\xff\xfe", "utf-16-le-bogus") == "ÿþ"
    assert decode_text(b"\xe9", None) == "é"


# --- Content-Type and parameters ------------------------------------------------------------


def test_content_type_basic_lowercased() -> None:
    assert parse_content_type('Text/HTML; Charset="UTF-8"') == (
        "text",
        "html",
        (("charset", "UTF-8"),),
    )


def test_content_type_with_comments_and_spaces() -> None:
    value = 'text/plain (a comment; with = specials) ; charset = (c) "iso-8859-1" (trailing)'
    assert parse_content_type(value) == ("text", "plain", (("charset", "iso-8859-1"),))


@pytest.mark.parametrize(
    "value", ["text", "/plain", "text/", "", "(only a comment)", "te xt/plain"]
)
def test_invalid_content_type_is_none(value: str) -> None:
    # RFC 2045 5.2: an invalid Content-Type is treated as absent; the parser applies its default.
    assert parse_content_type(value) is None


def test_quoted_string_with_escapes_and_semicolon() -> None:
    params = parse_params(r'; name="a \"b\"; c.txt"; x=1')
    assert params == (("name", 'a "b"; c.txt'), ("x", "1"))


def test_unquoted_value_with_spaces_runs_to_semicolon() -> None:
    assert parse_params("; name=my file.pdf; x=y") == (("name", "my file.pdf"), ("x", "y"))


def test_duplicate_parameter_keeps_first_and_junk_is_skipped() -> None:
    assert parse_params("; a=1; junk; A=2; =3; b=") == (("a", "1"), ("b", ""))


def test_rfc2231_continuations() -> None:
    # RFC 2231 section 3.
    value = (
        'message/external-body; access-type=URL; URL*0="ftp://"; '
        'URL*1="cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"'
    )
    assert parse_content_type(value) == (
        "message",
        "external-body",
        (("access-type", "URL"), ("url", "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar")),
    )


def test_rfc2231_charset_and_language() -> None:
    # RFC 2231 section 4.
    value = "application/x-stuff; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A"
    assert parse_content_type(value) == (
        "application",
        "x-stuff",
        (("title", "This is ***fun***"),),
    )


def test_rfc2231_mixed_encoded_and_plain_sections() -> None:
    # RFC 2231 section 4.1.
    value = (
        "; title*0*=us-ascii'en'This%20is%20even%20more%20; "
        'title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*2="isn\'t it!"'
    )
    assert parse_params(value) == (("title", "This is even more ***fun*** isn't it!"),)


def test_rfc2231_sections_out_of_order_and_utf8() -> None:
    value = "; filename*1*=%20rates.pdf; filename*0*=UTF-8''%E2%82%AC"
    assert parse_params(value) == (("filename", "€ rates.pdf"),)


def test_rfc2231_latin1_and_bogus_charset() -> None:
    assert parse_params("; f*=iso-8859-1''caf%E9") == (("f", "café"),)
    assert parse_params("; f*=x-bogus''caf%E9") == (("f", "café"),)
    assert parse_params("; f*=''plain%2Dtext") == (("f", "plain-text"),)


def test_rfc2231_without_charset_quotes_is_percent_decoded() -> None:
    assert parse_params("; f*=a%20b") == (("f", "a b"),)


def test_rfc2047_in_parameter_stays_raw() -> None:
    # Not standard (RFC 2047 5 forbids it) but common; the value is kept for the reader to decode.
    params = parse_params('; name="=?utf-8?q?caf=C3=A9?=.txt"')
    assert params == (("name", "=?utf-8?q?caf=C3=A9?=.txt"),)
    assert decode_words(params[0][1]) == "café.txt"


def test_content_disposition() -> None:
    assert parse_content_disposition('Attachment; filename="a.pdf"; size=10') == (
        "attachment",
        (("filename", "a.pdf"), ("size", "10")),
    )
    assert parse_content_disposition(None) == (None, ())
    assert parse_content_disposition("  ") == (None, ())
    assert parse_content_disposition("inline") == ("inline", ())


def test_first_token_and_language() -> None:
    assert first_token(" Base64 (comment)") == "Base64"
    assert first_token("") is None
    assert parse_language("en-US (English), fr") == ("en-US", "fr")
    assert parse_language(None) == ()
