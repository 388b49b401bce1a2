"""Fuzz the RFC 5802 parsers beside them: any text is either parsed or a ScramError."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postar.auth import scram

# Messages built from the grammar's own pieces reach deeper than random text alone.
_PIECES = st.sampled_from(
    ["n", "y", "p=tls-unique", "a=", "n=", "r=", "c=", "p=", "m=", "biws", "=2C", "=3D", "=",
     "\x00", "user", "\u00a0", "\u05d0", "\ufb01", "AAAA", "x"]
)  # fmt: skip
_ATTRIBUTES = st.lists(_PIECES, max_size=4).map("".join)
_MESSAGES = st.one_of(st.text(), st.lists(_ATTRIBUTES, max_size=8).map(",".join))


@given(_MESSAGES)
def test_parse_client_first_raises_only_scram_error(text: str) -> None:
    try:
        first = scram.parse_client_first(text)
    except scram.ScramError:
        return
    # What parses is rebuilt from the message itself: nothing is invented.
    assert text == first.gs2_header + first.bare
    assert first.username


@given(_MESSAGES)
def test_parse_client_final_raises_only_scram_error(text: str) -> None:
    try:
        final = scram.parse_client_final(text)
    except scram.ScramError:
        return
    assert text.startswith(final.without_proof + ",p=")
