"""Mailbox names, flags and addresses as every backend stores them.

Kept out of the backends so that SQLite and PostgreSQL agree on what "the same name" or "the
same flag" means.
"""

from __future__ import annotations

from collections.abc import Iterable

from postar.store.interface import InvalidName
from postar.store.model import SYSTEM_FLAGS, FlagMode

SEPARATOR = "/"
INBOX = "INBOX"

_SYSTEM_BY_LOWER = {flag.lower(): flag for flag in SYSTEM_FLAGS}
_FORBIDDEN_IN_NAME = {"\x00", "\r", "\n"}
# RFC 9051 atom-specials (plus CTLs and space) never appear in a flag.
_FORBIDDEN_IN_FLAG = set('(){ %*"]') | {chr(c) for c in range(0x20)} | {"\x7f"}


def mailbox_name(name: str) -> str:
    """The canonical form of a full mailbox name.

    "INBOX" is case-insensitive, also as the first level of a hierarchy (RFC 9051 5.1: "inbox/x"
    names a child of INBOX). Empty levels ("a//b", "/a", "a/") are refused: they cannot be
    listed or selected unambiguously.
    """
    if not name or any(c in _FORBIDDEN_IN_NAME for c in name):
        raise InvalidName(f"invalid mailbox name {name!r}")
    levels = name.split(SEPARATOR)
    if any(level == "" for level in levels):
        raise InvalidName(f"invalid mailbox name {name!r}")
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    return SEPARATOR.join(levels)


def parents(name: str) -> list[str]:
    """Every ancestor of a canonical name, outermost first: "a/b/c" -> ["a", "a/b"]."""
    levels = name.split(SEPARATOR)
    return [SEPARATOR.join(levels[:i]) for i in range(1, len(levels))]


def children_range(name: str) -> tuple[str, str]:
    """Bounds (exclusive) of the names strictly below name in binary order.

    Every descendant starts with name + "/"; "0" is the character after "/", so the half-open
    range ["name/", "name0") holds exactly the descendants and can use an index.
    """
    return name + SEPARATOR, name + chr(ord(SEPARATOR) + 1)


def canonical_flag(flag: str) -> str:
    """System flags in their RFC spelling (\\seen -> \\Seen); keywords kept as given."""
    if not flag or any(c in _FORBIDDEN_IN_FLAG for c in flag):
        raise InvalidName(f"invalid flag {flag!r}")
    return _SYSTEM_BY_LOWER.get(flag.lower(), flag)


def canonical_flags(flags: Iterable[str]) -> frozenset[str]:
    """Canonical, and one spelling per flag: keywords compare case-insensitively (RFC 9051
    2.3.2 says flags are matched without regard to case), the first spelling seen is kept."""
    seen: dict[str, str] = {}
    for flag in flags:
        canon = canonical_flag(flag)
        seen.setdefault(canon.lower(), canon)
    return frozenset(seen.values())


def apply_flags(current: frozenset[str], mode: FlagMode, flags: frozenset[str]) -> frozenset[str]:
    """STORE semantics on canonical flag sets, comparing case-insensitively; a keyword already
    present keeps its existing spelling."""
    if mode is FlagMode.REPLACE:
        return flags
    have = {flag.lower(): flag for flag in current}
    if mode is FlagMode.ADD:
        for flag in flags:
            have.setdefault(flag.lower(), flag)
    else:
        for flag in flags:
            have.pop(flag.lower(), None)
    return frozenset(have.values())


def address(text: str) -> tuple[str, str]:
    """(lower-case address, its domain) for an account or alias address."""
    addr = text.strip().lower()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in addr):
        raise InvalidName(f"invalid address {text!r}")
    return addr, domain
