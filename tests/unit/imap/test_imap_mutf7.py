import pytest
from hypothesis import given
from hypothesis import strategies as st

from postar.imap.mutf7 import MailboxNameError, decode, encode


def test_rfc_3501_example() -> None:
    # RFC 3501 section 5.1.3.
    assert decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-") == "~peter/mail/台北/日本語"
    assert encode("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"


@pytest.mark.parametrize(
    ("text", "name"),
    [("&-", "&"), ("Entw&APw-rfe", "Entwürfe"), ("A&-B", "A&B"), ("&2D3eAA-", "😀")],
)
def test_known_forms(text: str, name: str) -> None:
    assert decode(text) == name
    assert encode(name) == text


@pytest.mark.parametrize(
    "bad",
    [
        "&Jjo!",  # RFC 3501 5.1.3: "&Jjo!" is not valid
        "&U,BTFw-&ZeVnLIqe-",  # two adjacent shifts: must be one
        "&AGE-",  # BASE64 for the printable "a"
        "&",  # unterminated
        "&AOl-",  # non-zero pad bits (canonical "&AOk-" is é)
        "&2D0-",  # lone surrogate
        "caf\u00e9",  # 8-bit
        "&A-",  # impossible length
    ],
)
def test_invalid(bad: str) -> None:
    with pytest.raises(MailboxNameError):
        decode(bad)


@given(st.text())
def test_round_trip(name: str) -> None:
    name = name.encode("utf-8", "replace").decode("utf-8", "replace")
    if any("\ud800" <= ch <= "\udfff" for ch in name):
        return
    wire = encode(name)
    assert wire.isascii()
    assert decode(wire) == name
