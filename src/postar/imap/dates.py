"""IMAP date forms: date-time (INTERNALDATE, APPEND) and date (SEARCH), RFC 9051 section 9."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_INDEX = {m.upper(): i + 1 for i, m in enumerate(MONTHS)}

# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
# date-day-fixed = (SP DIGIT) / 2DIGIT; zone = ("+" / "-") 4DIGIT
_DATE_TIME_RE = re.compile(
    r"( \d|\d\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", re.ASCII
)
# date-text = date-day "-" date-month "-" date-year; date-day = 1*2DIGIT
_DATE_RE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})", re.ASCII)


class DateError(ValueError):
    """Text that is not an IMAP date or date-time."""


def parse_date_time(text: str) -> datetime:
    """The value of a date-time without its quotes, as an aware datetime."""
    m = _DATE_TIME_RE.fullmatch(text)
    if m is None or m[2].upper() not in _MONTH_INDEX:
        raise DateError("invalid date-time")
    offset = timedelta(hours=int(m[8]), minutes=int(m[9]))
    if int(m[9]) >= 60 or offset >= timedelta(hours=24):
        raise DateError("invalid zone")
    tz = timezone(-offset if m[7] == "-" else offset)
    try:
        return datetime(
            int(m[3]),
            _MONTH_INDEX[m[2].upper()],
            int(m[1]),
            int(m[4]),
            int(m[5]),
            int(m[6]),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise DateError("invalid date-time") from exc


def format_date_time(value: datetime | float) -> str:
    """date-time without quotes. A float is seconds since the epoch, given in UTC (+0000)."""
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    off = value.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{value.day:2d}-{MONTHS[value.month - 1]}-{value.year:04d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} "
        f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


def parse_search_date(text: str) -> date:
    m = _DATE_RE.fullmatch(text)
    if m is None or m[2].upper() not in _MONTH_INDEX:
        raise DateError("invalid date")
    try:
        return date(int(m[3]), _MONTH_INDEX[m[2].upper()], int(m[1]))
    except ValueError as exc:
        raise DateError("invalid date") from exc
