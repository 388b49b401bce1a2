"""RFC 5321 4.1.2 path grammar: the <...> of MAIL FROM and RCPT TO, extended by RFC 6531 3.3.

Pure functions over already-decoded text. A `PathSyntaxError` means the client sent something the
grammar does not allow; the caller turns it into a 501 reply.

Accepted on purpose (RFC 5321 is explicit about each):
- source routes "<@a,@b:user@c>" are parsed and dropped (4.1.1.3, appendix C);
- quoted local parts keep their meaning; `Mailbox.local_part` holds the unquoted text and `str()`
  quotes it again only where a dot-string cannot carry it (4.1.2, "Quoted-string");
- domains may be address literals: IPv4, "IPv6:..." and general tagged literals (4.1.3);
- "<Postmaster>" without a domain, for RCPT only (4.1.1.3).
Non-ASCII (UTF-8) local parts and U-label domains pass only when `utf8=True` (RFC 6531 3.3).
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass

# RFC 5322 3.2.3 atext, the characters of a Dot-string atom.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LET_DIG = frozenset(string.ascii_letters + string.digits)
_LDH = _LET_DIG | {"-"}


class PathSyntaxError(ValueError):
    """The path does not follow RFC 5321 4.1.2 (or RFC 6531 3.3 for UTF-8 addresses)."""


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A mailbox of an SMTP envelope. `domain` is "" only for the bare "<Postmaster>" recipient."""

    local_part: str
    domain: str

    @property
    def is_utf8(self) -> bool:
        return not (self.local_part.isascii() and self.domain.isascii())

    @property
    def is_postmaster(self) -> bool:
        return self.domain == "" and self.local_part.lower() == "postmaster"

    def __str__(self) -> str:
        local = self.local_part
        if not _is_dot_string(local, utf8=True):
            # RFC 5321 4.1.2: a local part that is not a Dot-string travels as a Quoted-string,
            # with backslash before each DQUOTE and backslash.
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}" if self.domain else local


def _is_atext(ch: str, utf8: bool) -> bool:
    return ch in _ATEXT or (utf8 and ord(ch) > 0x7F)  # RFC 6531 3.3: atext =/ UTF8-non-ascii


def _is_dot_string(text: str, utf8: bool) -> bool:
    # RFC 5321 4.1.2: Dot-string = Atom *("." Atom); no empty atoms, so no leading, trailing
    # or doubled dots.
    if not text:
        return False
    return all(atom and all(_is_atext(c, utf8) for c in atom) for atom in text.split("."))


def _parse_quoted(text: str, utf8: bool) -> tuple[str, int]:
    """Parse a Quoted-string at the start of `text`; return (content, index after it)."""
    out: list[str] = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            # RFC 5321 4.1.2: quoted-pairSMTP = %d92 %d32-126
            if i + 1 >= len(text) or not (32 <= ord(text[i + 1]) <= 126):
                raise PathSyntaxError("bad quoted pair")
            out.append(text[i + 1])
            i += 2
            continue
        # qtextSMTP = %d32-33 / %d35-91 / %d93-126, plus UTF8-non-ascii under RFC 6531
        if 32 <= ord(ch) <= 126 or (utf8 and ord(ch) > 0x7F):
            out.append(ch)
            i += 1
            continue
        raise PathSyntaxError("control character in quoted local part")
    raise PathSyntaxError("unterminated quoted string")


def is_domain(text: str, utf8: bool = False) -> bool:
    """RFC 5321 4.1.2 Domain: sub-domain *("." sub-domain); U-labels allowed with `utf8`."""
    if not text or len(text) > 255:  # RFC 5321 4.5.3.1.2: 255 octets at most
        return False
    for label in text.split("."):
        if not label or len(label) > 63:
            return False
        if utf8 and not label.isascii():
            # RFC 6531 3.3: sub-domain =/ U-label; IDNA validity is the resolver's concern,
            # here only structure: no ASCII punctuation other than "-".
            if any(c.isascii() and c not in _LDH for c in label):
                return False
            continue
        # sub-domain = Let-dig [Ldh-str]: letters, digits, hyphens, not ending in a hyphen
        if label[0] not in _LET_DIG or label[-1] not in _LET_DIG:
            return False
        if any(c not in _LDH for c in label):
            return False
    return True


def is_address_literal(text: str) -> bool:
    """RFC 5321 4.1.3: "[1.2.3.4]", "[IPv6:...]" or "[tag:dcontent]"."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    tag, colon, rest = inner.partition(":")
    if not colon:
        try:
            ipaddress.IPv4Address(inner)
        except ValueError:
            return False
        return True
    if tag.lower() == "ipv6":
        try:
            ipaddress.IPv6Address(rest)
        except ValueError:
            return False
        return True
    # General-address-literal = Standardized-tag ":" 1*dcontent; dcontent = %d33-90 / %d94-126
    if not tag or any(c not in _LDH for c in tag) or tag[-1] == "-":
        return False
    return bool(rest) and all(33 <= ord(c) <= 126 and c not in "[\\]" for c in rest)


def _parse_mailbox(text: str, utf8: bool) -> Mailbox:
    if text.startswith('"'):
        local, end = _parse_quoted(text, utf8)
        if end >= len(text) or text[end] != "@":
            raise PathSyntaxError("missing @ after quoted local part")
        domain = text[end + 1 :]
    else:
        local, at, domain = text.rpartition("@")
        if not at:
            raise PathSyntaxError("missing @")
        if not _is_dot_string(local, utf8):
            raise PathSyntaxError("bad local part")
    if not (is_domain(domain, utf8) or is_address_literal(domain)):
        raise PathSyntaxError("bad domain")
    return Mailbox(local, domain)


def _strip_source_route(text: str) -> str:
    # RFC 5321 4.1.2: A-d-l = At-domain *( "," At-domain ), followed by ":"; 4.1.1.3 and
    # appendix C: servers SHOULD accept and ignore it.
    if not text.startswith("@"):
        return text
    route, colon, rest = text.partition(":")
    if not colon:
        raise PathSyntaxError("source route without ':'")
    for hop in route.split(","):
        if not hop.startswith("@") or not is_domain(hop[1:]):
            raise PathSyntaxError("bad source route")
    return rest


def split_path(arg: str) -> tuple[str, str]:
    """Split "<path> params" into the path text with brackets and the rest of the line.

    The closing ">" is found by scanning, since a quoted local part may hold ">" or spaces.
    """
    if not arg.startswith("<"):
        raise PathSyntaxError("path must be enclosed in <>")
    i, in_quote = 1, False
    while i < len(arg):
        ch = arg[i]
        if in_quote and ch == "\\":
            i += 2
            continue
        if ch == '"':
            in_quote = not in_quote
        elif ch == ">" and not in_quote:
            rest = arg[i + 1 :]
            if rest and not rest.startswith(" "):
                raise PathSyntaxError("junk after path")
            return arg[: i + 1], rest.strip(" ")
        i += 1
    raise PathSyntaxError("unterminated path")


def parse_reverse_path(path: str, utf8: bool = False) -> Mailbox | None:
    """RFC 5321 4.1.2 Reverse-path = Path / "<>"; None is the null reverse-path."""
    if path == "<>":
        return None  # RFC 5321 4.5.5: the null sender of bounces and notifications
    return _parse_path(path, utf8)


def parse_forward_path(path: str, utf8: bool = False) -> Mailbox:
    """RFC 5321 4.1.1.3 Forward-path, with "<Postmaster>" (any case) allowed bare."""
    inner = path[1:-1]
    if inner.lower() == "postmaster":
        return Mailbox(inner, "")
    return _parse_path(path, utf8)


def _parse_path(path: str, utf8: bool) -> Mailbox:
    if len(path) < 2 or path[0] != "<" or path[-1] != ">":
        raise PathSyntaxError("path must be enclosed in <>")
    inner = _strip_source_route(path[1:-1])
    return _parse_mailbox(inner, utf8)
