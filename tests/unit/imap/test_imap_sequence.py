import pytest
from hypothesis import given
from hypothesis import strategies as st

from postar.imap.sequence import STAR, SequenceSet, SequenceSetError


def test_parse_and_write_back() -> None:
    s = SequenceSet.parse("2,4:7,9,12:*")
    assert list(s.pairs()) == [(2, 2), (4, 7), (9, 9), (12, STAR)]
    assert str(s) == "2,4:7,9,12:*"
    assert s.uses_star


def test_resolve_rfc_9051_example() -> None:
    # RFC 9051 section 9: "2,4:7,9,12:*" for a mailbox with 15 messages is 2,4,5,6,7,9,12..15.
    s = SequenceSet.parse("2,4:7,9,12:*")
    assert list(s.resolve(15)) == [2, 4, 5, 6, 7, 9, 12, 13, 14, 15]
    assert str(s.normalized(15)) == "2,4:7,9,12:15"


def test_reversed_range_and_star_below_first() -> None:
    # RFC 9051 6.4.9: "559:*" always includes the largest UID, even when 559 is beyond it.
    resolved = SequenceSet.parse("559:*").resolve(500)
    assert 500 in resolved and 559 in resolved and 499 not in resolved
    assert list(SequenceSet.parse("7:3").resolve(10)) == [3, 4, 5, 6, 7]


def test_star_in_empty_mailbox_is_nothing() -> None:
    assert list(SequenceSet.parse("*").resolve(0)) == []
    assert list(SequenceSet.parse("1:*").resolve(0)) == [1]


def test_overlaps_merge() -> None:
    r = SequenceSet.parse("5:9,1:3,4,8:12,20").resolve(100)
    assert list(r.ranges()) == [(1, 12), (20, 20)]
    assert len(r) == 13 and r.min == 1 and r.max == 20


@pytest.mark.parametrize(
    "bad", ["", "0", "1:0", "a", "1,,2", "1:", ":2", "4294967296", "1:2:3", "$,1", " 1"]
)
def test_invalid(bad: str) -> None:
    with pytest.raises(SequenceSetError):
        SequenceSet.parse(bad)


def test_saved_result() -> None:
    s = SequenceSet.parse("$")
    assert s.saved and str(s) == "$"
    with pytest.raises(SequenceSetError):
        s.resolve(10)


def test_range_limit_checked_before_building() -> None:
    with pytest.raises(SequenceSetError, match="ranges"):
        SequenceSet.parse(",".join(["1"] * 11), max_ranges=10)


def test_a_million_ranges() -> None:
    text = ",".join(f"{2 * i + 1}" for i in range(1_000_000))
    s = SequenceSet.parse(text, max_ranges=1_000_000)
    assert len(s) == 1_000_000
    resolved = s.resolve(2_000_000)
    assert 1_999_999 in resolved and 2_000_000 not in resolved
    assert len(resolved) == 1_000_000


def test_compact_encoding() -> None:
    assert str(SequenceSet.from_numbers([8, 1, 2, 3, 5, 7, 3])) == "1:3,5,7:8"
    assert str(SequenceSet.from_numbers([])) == ""
    # COPYUID keeps the pairing order (RFC 4315 section 3).
    assert str(SequenceSet.from_ordered([5, 6, 7, 2, 3])) == "5:7,2:3"


@given(st.sets(st.integers(min_value=1, max_value=10_000), max_size=200))
def test_compact_round_trip(numbers: set[int]) -> None:
    s = SequenceSet.from_numbers(numbers)
    assert list(s.resolve(10_000)) == sorted(numbers)
    if numbers:
        assert SequenceSet.parse(str(s)) == s


def test_equality_and_hash() -> None:
    assert SequenceSet.parse("1:3") == SequenceSet([(1, 3)])
    assert hash(SequenceSet.parse("1:3")) == hash(SequenceSet([(1, 3)]))
    assert SequenceSet.parse("1:3") != SequenceSet.parse("3:1")
