"""RFC 5322 address lists read as IMAP ENVELOPE addresses (RFC 9051 section 7.5.2)."""

import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postar.mime.address import MISSING_DOMAIN, MISSING_MAILBOX, parse_address_list
from postar.mime.structure import Address

GROUP_END = Address(None, None, None, None)


def group_start(name: str) -> Address:
    return Address(None, None, name, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 5322 appendix A.1.1
        ("John Doe <jdoe@machine.example>", [Address("John Doe", None, "jdoe", "machine.example")]),
        (
            "Mary Smith <mary@example.net>",
            [Address("Mary Smith", None, "mary", "example.net")],
        ),
        # A.1.2: a quoted display name with a dot, a bare addr-spec, and a name with specials.
        (
            '"Joe Q. Public" <john.q.public@example.com>',
            [Address("Joe Q. Public", None, "john.q.public", "example.com")],
        ),
        (
            "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
            [
                Address("Mary Smith", None, "mary", "x.test"),
                Address(None, None, "jdoe", "example.org"),
                Address("Who?", None, "one", "y.test"),
            ],
        ),
        (
            '<boss@nil.test>, "Giant; \\"Big\\" Box" <sysservices@example.net>',
            [
                Address(None, None, "boss", "nil.test"),
                Address('Giant; "Big" Box', None, "sysservices", "example.net"),
            ],
        ),
        # A.5: comments and folding white space everywhere.
        (
            "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
            [Address("Pete", None, "pete", "silly.test")],
        ),
        # A.6.1 obs-phrase with a dot; A.6.3 obs-route.
        (
            "Joe Q. Public <john@example.com>",
            [Address("Joe Q. Public", None, "john", "example.com")],
        ),
        (
            "<@node.test,@node2.test:mary@example.net>",
            [Address(None, "@node.test,@node2.test", "mary", "example.net")],
        ),
        # Obsolete local part with spaces around the dots, and a domain literal.
        ("john . doe @ [192.0.2.1]", [Address(None, None, "john.doe", "[192.0.2.1]")]),
    ],
)
def test_rfc5322_examples(value: str, expected: list[Address]) -> None:
    assert list(parse_address_list(value)) == expected


def test_group_becomes_start_and_end_markers() -> None:
    # RFC 5322 A.1.3 and RFC 9051 7.5.2.
    value = "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;"
    assert parse_address_list(value) == (
        group_start("A Group"),
        Address("Ed Jones", None, "c", "a.test"),
        Address(None, None, "joe", "where.test"),
        Address("John", None, "jdoe", "one.test"),
        GROUP_END,
    )


def test_empty_group_and_addresses_around_groups() -> None:
    value = "a@b, Undisclosed recipients:;, c@d"
    assert parse_address_list(value) == (
        Address(None, None, "a", "b"),
        group_start("Undisclosed recipients"),
        GROUP_END,
        Address(None, None, "c", "d"),
    )


def test_unclosed_group_is_closed() -> None:
    assert parse_address_list("g: a@b") == (
        group_start("g"),
        Address(None, None, "a", "b"),
        GROUP_END,
    )


def test_display_name_stays_encoded() -> None:
    value = "=?utf-8?q?Andr=C3=A9?= <andre@example.org>"
    assert parse_address_list(value) == (
        Address("=?utf-8?q?Andr=C3=A9?=", None, "andre", "example.org"),
    )


def test_old_comment_form_gives_the_name() -> None:
    assert parse_address_list("joe@x.test (Joe Bloggs), b@c") == (
        Address("Joe Bloggs", None, "joe", "x.test"),
        Address(None, None, "b", "c"),
    )


def test_quoted_local_part_keeps_quotes_when_needed() -> None:
    assert parse_address_list('"john doe"@x.test, "plain"@y.test') == (
        Address(None, None, '"john doe"', "x.test"),
        Address(None, None, "plain", "y.test"),
    )


def test_utf8_address() -> None:
    # RFC 6532 3.2: UTF-8 in local part, domain and display name.
    assert parse_address_list("Jöran <jöran@exämple.test>") == (
        Address("Jöran", None, "jöran", "exämple.test"),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        (",, ,", []),
        ("bare", [Address(None, None, "bare", MISSING_DOMAIN)]),
        ("<>", [Address(None, None, MISSING_MAILBOX, MISSING_DOMAIN)]),
        ('"" <>', [Address(None, None, MISSING_MAILBOX, MISSING_DOMAIN)]),
        ("@host.test", [Address(None, None, MISSING_MAILBOX, "host.test")]),
        # A missing ">" must not swallow the next address.
        ("a <b@c, d@e", [Address("a", None, "b", "c"), Address(None, None, "d", "e")]),
        # Separators inside the brackets are garbage when a ">" closes them.
        (
            "<Undisclosed-Recipient:;@example.com>",
            [Address(None, None, "Undisclosed-Recipient", MISSING_DOMAIN)],
        ),
        ("<C:`odd.txt@dogma.test>", [Address(None, None, "`odd.txt", "dogma.test")]),
        ("a@b <c@d>", [Address("a@b", None, "c", "d")]),
        ("x@y garbage, z@w", [Address(None, None, "x", "y"), Address(None, None, "z", "w")]),
        (">>> ::: ;;;", []),
        ('"unterminated <a@b>', [Address(None, None, '"unterminated <a@b>"', MISSING_DOMAIN)]),
    ],
)
def test_garbage_gives_best_effort(value: str, expected: list[Address]) -> None:
    assert list(parse_address_list(value)) == expected


def test_no_real_address_has_a_nil_host() -> None:
    # host None means a group marker to an IMAP client; garbage must never produce one.
    for value in ("x", "<>", "a <", "@", "a@", '"q"', "(c)", "a:b:c;d"):
        addrs = parse_address_list(value)
        depth = 0
        for addr in addrs:
            if addr.host is None:
                depth += 1 if addr.mailbox is not None else -1
                assert depth in (0, 1), value
        assert depth == 0, value


class _TooSlow(Exception):
    pass


def _parse_within(value: str, seconds: float = 2.0) -> tuple[Address, ...]:
    """parse_address_list, failing the test instead of hanging the suite if it never ends
    (a pure-Python loop is interrupted by the timer's signal between bytecodes)."""

    def expire(signum: int, frame: object) -> None:
        raise _TooSlow(f"parse_address_list({value!r}) did not finish in {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return parse_address_list(value)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("value", ["a) b", ")", "x@y)", "Name ) <a@b>", "))((", "\\)", "]) <"])
def test_a_stray_closing_parenthesis_is_read_not_looped_on(value: str) -> None:
    # A ")" outside a comment once made an empty atom without moving on: one header line of
    # a message hung its delivery for good.
    addresses = _parse_within(value)
    assert isinstance(addresses, tuple)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='()<>[]:;@,."\\ \taé', max_size=30))
def test_any_mix_of_specials_ends(value: str) -> None:
    _parse_within(value)
