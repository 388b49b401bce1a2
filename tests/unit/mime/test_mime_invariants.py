"""parse_message never raises and its offsets always nest: real mail, then random bytes."""

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postar.mime.parser import MAX_DEPTH, parse_message
from postar.mime.serialize import dumps, loads
from postar.mime.structure import BodyPart, ParsedMessage

# tests.support is found from the repository root without a conftest.py; `python -m pytest`
# has the root on sys.path already, a bare `pytest` does not.
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.corpus import require_corpus  # noqa: E402


def check_part(part: BodyPart, lo: int, hi: int, depth: int) -> int:
    """Assert the offset invariants of parser.py for part inside [lo, hi); returns its count."""
    assert lo <= part.start <= part.body_start <= part.end <= hi, (part, lo, hi)
    assert depth <= 2 * MAX_DEPTH + 2
    count = 1
    if part.type == "multipart":
        assert part.children, "a multipart always has a child"
        previous = part.body_start
        for child in part.children:
            assert child.start >= previous
            count += check_part(child, part.body_start, part.end, depth + 1)
            previous = child.end
    else:
        assert not part.children
    if part.message is not None:
        assert part.message.start == part.body_start and part.message.end == part.end
        assert part.message_envelope is not None
        count += check_part(part.message, part.body_start, part.end, depth + 1)
    return count


def _count_messages(part: BodyPart) -> int:
    inner = 0 if part.message is None else 1 + _count_messages(part.message)
    return inner + sum(_count_messages(child) for child in part.children)


def check(raw: bytes, parsed: ParsedMessage) -> None:
    assert parsed.size == len(raw)
    assert parsed.root.start == 0 and parsed.root.end == len(raw)
    check_part(parsed.root, 0, len(raw), 0)
    # What is stored must read back equal.
    assert loads(dumps(parsed, with_search_text=True)) == parsed


def test_every_corpus_message_parses() -> None:
    paths = require_corpus()
    assert len(paths) > 6000  # 0.2.3 holds 6,046 messages: a short count means a broken fetch
    multiparts = encapsulated = 0
    for path in paths:
        raw = path.read_bytes()
        parsed = parse_message(raw)
        check(raw, parsed)
        multiparts += parsed.root.type == "multipart"
        encapsulated += _count_messages(parsed.root)
        # Stored messages are CRLF; the corpus is LF. Both readings must agree on structure.
        crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        again = parse_message(crlf, with_text=False)
        check(crlf, again)
        assert again.root.type == parsed.root.type
        assert len(again.root.children) == len(parsed.root.children), path.name
    # The pinned corpus has 506 multipart messages and 5 message/rfc822 parts: the MIME paths
    # were exercised, not skipped by a parser that gave up early.
    assert multiparts == 506 and encapsulated == 5


# Fragments that steer random input into the interesting paths: header names, boundaries,
# encapsulation, line ends, encoded words.
_FRAGMENTS = [
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b"--b",
    b"--b--",
    b"--b\r\n",
    b"--c\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/digest; boundary=c\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/html; charset*=utf-8''%E2\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Subject: =?utf-8?b?w6k?= =?x?q?=ZZ?=\r\n",
    b'From: a <b@c>, g: d@e;, (x) "q\\"" <@r:f@[1.2.3.4]>\r\n',
    b" folded\r\n",
    b"<p>&amp;<script>",
    b"=\r\n",
    b"\x00",
    b"\xff\xfe",
    b":",
    b'"',
    b"(",
]

messages = st.lists(
    st.one_of(st.sampled_from(_FRAGMENTS), st.binary(max_size=20)), max_size=60
).map(b"".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_structured_garbage_never_raises(raw: bytes) -> None:
    check(raw, parse_message(raw))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    check(raw, parse_message(raw))


@settings(max_examples=100, deadline=None)
@given(messages)
def test_memoryview_agrees_with_bytes(raw: bytes) -> None:
    assert parse_message(memoryview(raw)) == parse_message(raw)
