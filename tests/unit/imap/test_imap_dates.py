from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from postar.imap.dates import DateError, format_date_time, parse_date_time, parse_search_date


def test_date_time_round_trip() -> None:
    value = parse_date_time("17-Jul-1996 02:44:25 -0700")
    assert value == datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7)))
    assert format_date_time(value) == "17-Jul-1996 02:44:25 -0700"


def test_single_digit_day_is_space_padded() -> None:
    # RFC 9051 date-day-fixed = (SP DIGIT) / 2DIGIT
    assert format_date_time(parse_date_time(" 7-Feb-1994 21:52:25 -0800")) == (
        " 7-Feb-1994 21:52:25 -0800"
    )
    assert parse_date_time("07-feb-1994 21:52:25 +0100").day == 7


def test_epoch_float_is_utc() -> None:
    assert format_date_time(0.0) == " 1-Jan-1970 00:00:00 +0000"
    assert format_date_time(datetime(2020, 2, 29, 12, 0, 0, tzinfo=UTC)) == (
        "29-Feb-2020 12:00:00 +0000"
    )


@pytest.mark.parametrize(
    "bad",
    ["7-Feb-1994 21:52:25 -0800", "30-Feb-1994 21:52:25 -0800", "17-Foo-1996 02:44:25 -0700",
     "17-Jul-1996 02:44:25", "17-Jul-1996 25:44:25 -0700", "17-Jul-1996 02:44:25 +0099"],
)  # fmt: skip
def test_bad_date_time(bad: str) -> None:
    with pytest.raises(DateError):
        parse_date_time(bad)


def test_search_date() -> None:
    assert parse_search_date("1-Feb-1994") == date(1994, 2, 1)
    assert parse_search_date("01-FEB-1994") == date(1994, 2, 1)
    with pytest.raises(DateError):
        parse_search_date("1-Feb-94")
