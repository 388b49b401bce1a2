"""parse_message on hand-written messages; offsets are checked by slicing the raw bytes."""

import mmap
from pathlib import Path

from postar.mime.parser import MAX_DEPTH, parse_message
from postar.mime.structure import Address, BodyPart


def head(raw: bytes, part: BodyPart) -> bytes:
    return raw[part.start : part.body_start]


def body(raw: bytes, part: BodyPart) -> bytes:
    return raw[part.body_start : part.end]


def test_single_part_crlf() -> None:
    raw = b"Subject: hi\r\nFrom: a@b.test\r\n\r\nline one\r\nline two\r\n"
    parsed = parse_message(raw)
    root = parsed.root
    assert parsed.size == len(raw)
    assert (root.start, root.end) == (0, len(raw))
    assert head(raw, root) == b"Subject: hi\r\nFrom: a@b.test\r\n\r\n"
    assert body(raw, root) == b"line one\r\nline two\r\n"
    # RFC 2045 5.2 default.
    assert (root.type, root.subtype, root.params) == ("text", "plain", (("charset", "us-ascii"),))
    assert root.encoding == "7bit"
    assert root.lines == 2
    assert parsed.envelope.subject == "hi"
    assert parsed.defects == ()


def test_lf_only_message() -> None:
    raw = b"Subject: hi\nContent-Type: text/plain; charset=utf-8\n\nbody\n"
    root = parse_message(raw).root
    assert head(raw, root) == b"Subject: hi\nContent-Type: text/plain; charset=utf-8\n\n"
    assert body(raw, root) == b"body\n"
    assert root.params == (("charset", "utf-8"),)
    assert root.lines == 1


def test_empty_body() -> None:
    raw = b"Subject: x\r\n\r\n"
    root = parse_message(raw).root
    assert root.body_start == root.end == len(raw)
    assert root.lines == 0


def test_headers_only_without_blank_line() -> None:
    raw = b"Subject: x\r\nTo: y@z.test\r\n"
    parsed = parse_message(raw)
    assert parsed.root.body_start == parsed.root.end == len(raw)
    assert parsed.envelope.subject == "x"
    assert parsed.envelope.to == (Address(None, None, "y", "z.test"),)


def test_empty_message() -> None:
    parsed = parse_message(b"")
    assert (parsed.size, parsed.root.start, parsed.root.body_start, parsed.root.end) == (0, 0, 0, 0)
    assert parsed.envelope.subject is None


def test_no_headers_at_all() -> None:
    raw = b"\r\njust a body\r\n"
    root = parse_message(raw).root
    assert root.body_start == 2
    assert body(raw, root) == b"just a body\r\n"


def test_lines_count_an_unterminated_last_line() -> None:
    raw = b"Content-Type: text/plain\r\n\r\na\r\nb"
    assert parse_message(raw).root.lines == 2


NESTED = (
    b"From: Ann <ann@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: nested\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"This is the preamble.\r\n"
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="outer-alt"\r\n'
    b"\r\n"
    b"--outer-alt\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: Quoted-Printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 menu\r\n"
    b"second line\r\n"
    b"--outer-alt\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Caf\xc3\xa9 <b>menu</b></p>\r\n"
    b"--outer-alt--\r\n"
    b"\r\n"
    b"--outer  \r\n"
    b"Content-Type: application/pdf; name=menu.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment;\r\n"
    b" filename*0*=UTF-8''%E2%82%AC;\r\n"
    b" filename*1=menu.pdf\r\n"
    b"Content-ID: <pdf@example.org>\r\n"
    b"Content-Description: the menu\r\n"
    b"Content-Language: en, fr\r\n"
    b"Content-Location: http://example.org/menu.pdf\r\n"
    b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer--\r\n"
    b"epilogue\r\n"
)


def test_nested_multipart_offsets() -> None:
    raw = NESTED
    parsed = parse_message(raw)
    root = parsed.root
    assert (root.type, root.subtype) == ("multipart", "mixed")
    assert root.end == len(raw)  # the preamble and epilogue belong to the multipart body
    alt, pdf = root.children
    assert (alt.type, alt.subtype) == ("multipart", "alternative")
    assert head(raw, alt) == b'Content-Type: multipart/alternative; boundary="outer-alt"\r\n\r\n'
    # The alternative's body ends before the CRLF that precedes "--outer"; the blank line
    # after its own close delimiter is its epilogue.
    assert body(raw, alt).endswith(b"--outer-alt--\r\n")
    plain, html = alt.children
    # RFC 2046 5.1.1: the CRLF before the delimiter belongs to the delimiter.
    assert body(raw, plain) == b"Caf=C3=A9 menu\r\nsecond line"
    assert plain.lines == 2
    assert plain.encoding == "quoted-printable"
    assert body(raw, html) == b"<p>Caf\xc3\xa9 <b>menu</b></p>"
    assert html.subtype == "html"
    assert body(raw, pdf) == b"JVBERi0xLjQK"
    assert head(raw, pdf).startswith(b"Content-Type: application/pdf; name=menu.pdf\r\n")
    assert head(raw, pdf).endswith(b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n\r\n")
    assert pdf.params == (("name", "menu.pdf"),)
    assert pdf.disposition == "attachment"
    assert pdf.disposition_params == (("filename", "€menu.pdf"),)
    assert pdf.id == "<pdf@example.org>"
    assert pdf.description == "the menu"
    assert pdf.language == ("en", "fr")
    assert pdf.location == "http://example.org/menu.pdf"
    assert pdf.md5 == "Q2hlY2sgSW50ZWdyaXR5IQ=="
    assert pdf.lines == 0  # not a text part
    assert parsed.defects == ()


def test_nested_envelope_and_search_text() -> None:
    parsed = parse_message(NESTED)
    env = parsed.envelope
    ann = (Address("Ann", None, "ann", "example.org"),)
    assert env.from_ == ann
    # RFC 9051 7.5.2: absent Sender and Reply-To are given the From value.
    assert env.sender == ann and env.reply_to == ann
    assert env.to == (Address(None, None, "bob", "example.net"),)
    assert "Subject: nested" in parsed.search_headers
    assert "Café menu\nsecond line" in parsed.search_body
    assert "Café menu" in parsed.search_body.split("\n", 2)[-1]  # the HTML part too
    assert "<b>" not in parsed.search_body
    assert "JVBERi" not in parsed.search_body


def test_same_result_from_memoryview_and_mmap(tmp_path: Path) -> None:
    expected = parse_message(NESTED)
    assert parse_message(memoryview(NESTED)) == expected
    assert parse_message(bytearray(NESTED)) == expected
    path = tmp_path / "m.eml"
    path.write_bytes(NESTED)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert parse_message(mm) == expected


def test_empty_part_between_delimiters() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\nX: 1\r\n\r\nx\r\n--b--\r\n"
    )
    first, second = parse_message(raw).root.children
    assert first.start == first.body_start == first.end == raw.index(b"--b\r\nX")
    assert body(raw, second) == b"x"


def test_part_without_headers() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nno headers\r\n--b--\r\n"
    (part,) = parse_message(raw).root.children
    assert head(raw, part) == b"\r\n"
    assert body(raw, part) == b"no headers"
    assert (part.type, part.subtype) == ("text", "plain")


def test_lf_only_multipart() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nX: 1\n\none\ntwo\n--b\n\nthree\n--b--\n"
    )
    one, three = parse_message(raw).root.children
    assert body(raw, one) == b"one\ntwo"
    assert one.lines == 2
    assert body(raw, three) == b"three"


def test_missing_closing_boundary() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nfirst\r\n--b\r\n\r\nlast\r\n"
    )
    parsed = parse_message(raw)
    first, last = parsed.root.children
    assert body(raw, first) == b"first"
    assert body(raw, last) == b"last\r\n"  # runs to the end of the parent
    assert last.end == len(raw)
    assert "missing closing boundary" in parsed.defects


def test_inner_missing_close_ends_at_outer_delimiter() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=out\r\n\r\n"
        b"--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
        b"--in\r\n\r\ninner text\r\n"
        b"--out\r\n\r\nouter text\r\n"
        b"--out--\r\n"
    )
    parsed = parse_message(raw)
    inner, outer_text = parsed.root.children
    (inner_text,) = inner.children
    assert body(raw, inner_text) == b"inner text"
    assert inner_text.end == inner.end
    assert body(raw, outer_text) == b"outer text"
    assert "missing closing boundary" in parsed.defects


def test_boundary_must_match_the_whole_line() -> None:
    # "--abc-1" is a line of the inner multipart, not a delimiter of the outer "abc".
    raw = (
        b"Content-Type: multipart/mixed; boundary=abc\r\n\r\n"
        b"--abc\r\nContent-Type: multipart/mixed; boundary=abc-1\r\n\r\n"
        b"--abc-1\r\n\r\nA\r\n--abc-1--\r\n"
        b"--abc\r\n\r\nB --abc not at line start\r\n"
        b"--abc--\r\n"
    )
    parsed = parse_message(raw)
    inner, b = parsed.root.children
    assert [body(raw, c) for c in inner.children] == [b"A"]
    assert body(raw, b) == b"B --abc not at line start"
    assert parsed.defects == ()


def test_multipart_without_boundary_gets_an_empty_part() -> None:
    raw = b"Content-Type: multipart/mixed\r\n\r\ntext\r\n"
    parsed = parse_message(raw)
    (child,) = parsed.root.children
    assert (child.type, child.subtype, child.size) == ("text", "plain", 0)
    assert child.start == parsed.root.body_start
    assert "multipart without boundary" in parsed.defects


def test_boundary_never_found() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--other\r\n\r\nx\r\n"
    parsed = parse_message(raw)
    assert len(parsed.root.children) == 1 and parsed.root.children[0].size == 0
    assert "boundary not found in multipart body" in parsed.defects


ENCAPSULATED = (
    b"Subject: outer\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\n\r\nsee attached\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: =?utf-8?q?inn=C3=A9r?=\r\n"
    b"From: Cat <cat@example.com>\r\n"
    b"Reply-To: list:;\r\n"
    b"Content-Type: multipart/alternative; boundary=c\r\n\r\n"
    b"--c\r\n\r\ninner plain\r\n--c--\r\n"
    b"--b--\r\n"
)


def test_message_rfc822_is_parsed_with_its_envelope() -> None:
    raw = ENCAPSULATED
    parsed = parse_message(raw)
    _, message = parsed.root.children
    assert (message.type, message.subtype) == ("message", "rfc822")
    inner = message.message
    assert inner is not None and message.message_envelope is not None
    assert inner.start == message.body_start and inner.end == message.end
    assert head(raw, inner).startswith(b"Subject: =?utf-8?q?inn=C3=A9r?=\r\n")
    assert body(raw, inner) == b"--c\r\n\r\ninner plain\r\n--c--"
    assert [body(raw, c) for c in inner.children] == [b"inner plain"]
    env = message.message_envelope
    assert env.subject == "=?utf-8?q?inn=C3=A9r?="  # ENVELOPE keeps encoded words
    assert env.reply_to == (Address(None, None, "list", None), Address(None, None, None, None))
    assert env.sender == (Address("Cat", None, "cat", "example.com"),)
    # Lines of the whole encapsulated message, as BODYSTRUCTURE reports for message/rfc822.
    assert message.lines == 9
    assert "Subject: innér" in parsed.search_body
    assert "inner plain" in parsed.search_body


def test_message_global_is_parsed() -> None:
    raw = b"Content-Type: message/global\r\n\r\nSubject: \xc3\xa9t\xc3\xa9\r\n\r\nbody"
    part = parse_message(raw).root
    assert part.message_envelope is not None and part.message_envelope.subject == "été"
    assert part.message is not None and body(raw, part.message) == b"body"


def test_base64_message_rfc822_stays_opaque() -> None:
    raw = (
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"U3ViamVjdDogeA==\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.root.message is None and parsed.root.message_envelope is None
    assert parsed.defects == ("message/rfc822 with base64 encoding left opaque",)


def test_digest_children_default_to_message_rfc822() -> None:
    # RFC 2046 5.1.5.
    raw = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n"
        b"--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n"
        b"--d--\r\n"
    )
    first, second = parse_message(raw).root.children
    assert (first.type, first.subtype, first.params) == ("message", "rfc822", ())
    assert first.message_envelope is not None and first.message_envelope.subject == "one"
    assert first.message is not None and body(raw, first.message) == b"first"
    assert (second.type, second.subtype) == ("text", "plain")


def test_invalid_content_type_defaults_to_text_plain() -> None:
    root = parse_message(b"Content-Type: garbage\r\n\r\nx").root
    assert (root.type, root.subtype, root.params) == ("text", "plain", (("charset", "us-ascii"),))


def test_depth_is_capped() -> None:
    depth = MAX_DEPTH + 10
    opening = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    raw = opening + b"\r\ndeep\r\n"
    parsed = parse_message(raw)
    level = 0
    part = parsed.root
    while part.children:
        part = part.children[0]
        level += 1
    assert level == MAX_DEPTH + 1  # the capped multipart still gets its stand-in child
    assert any("nesting deeper than" in d for d in parsed.defects)


def test_8bit_headers() -> None:
    raw = (
        b"Subject: \xe6\x97\xa5\xe6\x9c\xac caf\xc3\xa9\r\n"
        b"From: J\xc3\xb6ran <j\xc3\xb6ran@ex\xc3\xa4mple.test>\r\n"
        b"To: Andr\xe9 <andre@example.test>\r\n"
        b"\r\nbody"
    )
    parsed = parse_message(raw)
    assert parsed.envelope.subject == "日本 café"
    assert parsed.envelope.from_ == (Address("Jöran", None, "jöran", "exämple.test"),)
    assert parsed.envelope.to == (Address("André", None, "andre", "example.test"),)


def test_envelope_fields() -> None:
    raw = (
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
        b"Subject: =?iso-8859-1?q?caf=E9?=\r\n"
        b"From: a@x.test\r\nSender: s@x.test\r\nReply-To:\r\n"
        b"To: Group: m1@x.test, m2@x.test;\r\nCc: c@x.test\r\nBcc: b@x.test\r\n"
        b"In-Reply-To: <r@x.test>\r\nMessage-ID: <m@x.test>\r\n\r\n"
    )
    env = parse_message(raw).envelope
    assert env.date == "Mon, 7 Feb 1994 21:52:25 -0800 (PST)"
    assert env.subject == "=?iso-8859-1?q?caf=E9?="
    assert env.sender == (Address(None, None, "s", "x.test"),)
    assert env.reply_to == (Address(None, None, "a", "x.test"),)  # present but empty
    assert env.to == (
        Address(None, None, "Group", None),
        Address(None, None, "m1", "x.test"),
        Address(None, None, "m2", "x.test"),
        Address(None, None, None, None),
    )
    assert env.cc == (Address(None, None, "c", "x.test"),)
    assert env.bcc == (Address(None, None, "b", "x.test"),)
    assert env.in_reply_to == "<r@x.test>"
    assert env.message_id == "<m@x.test>"


def test_with_text_false_leaves_search_text_empty() -> None:
    parsed = parse_message(NESTED, with_text=False)
    assert parsed.search_headers == parsed.search_body == ""
    assert parsed.root == parse_message(NESTED).root
