"""RFC 5322 address lists as IMAP ENVELOPE wants them (RFC 9051 section 7.5.2).

Our own parser rather than email.utils.getaddresses: Python 3.11.7 still has CVE-2023-27043
(a crafted display name yields a different address than the one a reader sees), and ENVELOPE
needs what getaddresses drops: groups, the source route and the undecoded display name.

Grammar (RFC 5322 sections 3.4 and 4.4, obsolete forms included):

    address-list = address *("," address)
    address      = mailbox / group
    group        = display-name ":" [mailbox-list] ";"
    mailbox      = name-addr / addr-spec
    name-addr    = [display-name] "<" [obs-route] addr-spec ">"
    obs-route    = "@" domain *("," ["@" domain]) ":"

A group becomes a start pseudo-address (mailbox = group name, host None) and an end one (all
None). Anything the grammar does not cover still yields addresses: a bare word is a mailbox with
host "MISSING_DOMAIN", a missing local part is "MISSING_MAILBOX" (the placeholders Dovecot uses,
which clients already know), so that no real address ever has host None and reads as a group.
"""

from __future__ import annotations

from dataclasses import dataclass

from postar.mime.structure import Address

MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"

_SPECIALS = '()<>[]:;@\\,."'
_WSP = " \t\r\n"
# A quoted local part whose content is a dot-atom needs no quotes (RFC 5322 section 3.4.1).
_ATEXT_EXTRA = set("!#$%&'*+-/=?^_`{|}~")


@dataclass
class _Token:
    kind: str  # "atom", "quoted", "literal", "comment" or the special character itself
    text: str
    space_before: bool  # white space or a comment preceded it (matters when joining a phrase)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    n = len(text)
    space = False
    while i < n:
        c = text[i]
        if c in _WSP:
            space = True
            i += 1
        elif c == "(":
            depth = 0
            start = i
            while i < n:
                ch = text[i]
                if ch == "\\":
                    i += 2
                    continue
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
            tokens.append(_Token("comment", text[start + 1 : i - 1].strip(), space))
            space = True
        elif c == '"':
            out: list[str] = []
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
            i += 1
            tokens.append(_Token("quoted", "".join(out), space))
            space = False
        elif c == "[":
            end = text.find("]", i)
            end = n if end < 0 else end + 1
            tokens.append(_Token("literal", text[i:end], space))
            i = end
            space = False
        elif c in "<>:;@,.":
            tokens.append(_Token(c, c, space))
            i += 1
            space = False
        else:
            start = i
            # A backslash, "]" or ")" outside a quoted string or comment is not valid anywhere;
            # keeping it in the atom is the least surprising reading. A stray ")" must be
            # taken here: stopping at it made an empty atom without moving on, forever.
            i += 1
            while i < n and text[i] not in _WSP and text[i] not in '(<>[:;@,."':
                i += 1
            tokens.append(_Token("atom", text[start:i], space))
            space = False
    return tokens


def _is_dot_atom(text: str) -> bool:
    if not text or text.startswith(".") or text.endswith(".") or ".." in text:
        return False
    return all(c.isalnum() or c in _ATEXT_EXTRA or c == "." or ord(c) > 127 for c in text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.out: list[Address] = []
        self.skipped: list[str] = []  # comments peek() stepped over, for "addr (Name)"

    def peek(self) -> _Token | None:
        while self.pos < len(self.tokens) and self.tokens[self.pos].kind == "comment":
            if self.tokens[self.pos].text:
                self.skipped.append(self.tokens[self.pos].text)
            self.pos += 1
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> tuple[Address, ...]:
        in_group = False
        while True:
            token = self.peek()
            if token is None:
                break
            if token.kind == ",":
                self.pos += 1
                continue
            if token.kind == ";":
                self.pos += 1
                if in_group:
                    self.out.append(Address(None, None, None, None))
                    in_group = False
                continue
            start = self.pos
            phrase, comments = self.read_phrase()
            token = self.peek()
            if token is not None and token.kind == ":" and phrase and not in_group:
                # RFC 5322 section 3.4 group: start marker carries the group name as mailbox.
                self.pos += 1
                self.out.append(Address(None, None, phrase or "", None))
                in_group = True
                continue
            if token is not None and token.kind == "<":
                self.pos += 1
                self.read_angle(phrase or None, comments)
                continue
            if token is not None and token.kind in "@.":
                # An addr-spec: re-read from the start, where words and dots form the local part.
                self.pos = start
                self.read_addr_spec()
                continue
            if phrase:
                # A bare phrase followed by "," ";" ":" (inside a group) or the end.
                self.out.append(Address(None, None, _local_from_phrase(phrase), MISSING_DOMAIN))
            elif token is not None and token.kind in ">:":
                self.pos += 1  # stray special: step over it so the loop always advances
        if in_group:
            # RFC 9051 7.5.2 wants every group closed; a missing ";" is closed for the sender.
            self.out.append(Address(None, None, None, None))
        return tuple(self.out)

    def read_phrase(self) -> tuple[str, list[str]]:
        """Words (atoms, quoted strings, obs-phrase dots) up to a special; comments apart."""
        pieces: list[str] = []
        comments: list[str] = []
        while self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            if token.kind == "comment":
                if token.text:
                    comments.append(token.text)
                self.pos += 1
                continue
            if token.kind not in ("atom", "quoted", "literal", "."):
                break
            if pieces and token.space_before and token.kind != ".":
                pieces.append(" ")
            pieces.append(token.text)
            self.pos += 1
        return "".join(pieces), comments

    def read_local_part(self) -> str:
        pieces: list[str] = []
        while True:
            token = self.peek()
            if token is None or token.kind not in ("atom", "quoted", "."):
                break
            if token.kind == "quoted":
                text = token.text
                pieces.append(text if _is_dot_atom(text) else _quote(text))
            else:
                pieces.append(token.text)
            self.pos += 1
        return "".join(pieces)

    def read_domain(self) -> str:
        pieces: list[str] = []
        while True:
            token = self.peek()
            if token is None or token.kind not in ("atom", "literal", "."):
                break
            if token.kind != "." and pieces and pieces[-1] != ".":
                break  # "y garbage": a second word without a dot is not part of the domain
            pieces.append(token.text)
            self.pos += 1
        return "".join(pieces)

    def read_route(self) -> str | None:
        """obs-route "@a,@b:" inside angle brackets, kept as written without white space."""
        save = self.pos
        domains: list[str] = []
        while True:
            token = self.peek()
            if token is None:
                break
            if token.kind == ",":
                self.pos += 1
                continue
            if token.kind != "@":
                break
            self.pos += 1
            domains.append("@" + self.read_domain())
        token = self.peek()
        if domains and token is not None and token.kind == ":":
            self.pos += 1
            return ",".join(domains)
        self.pos = save
        return None

    def read_angle(self, name: str | None, comments: list[str]) -> None:
        token = self.peek()
        if token is not None and token.kind == ">":
            # "<>" is the null reverse-path; as a header address it names nobody.
            self.pos += 1
            self.out.append(Address(name, None, MISSING_MAILBOX, MISSING_DOMAIN))
            return
        adl = None
        if token is not None and token.kind == "@":
            adl = self.read_route()
        local = self.read_local_part()
        token = self.peek()
        if token is not None and token.kind == ":":
            # "<C:`x@host>": a route-like prefix without "@"; the address follows the colon.
            self.pos += 1
            local = self.read_local_part() or local
        host = ""
        token = self.peek()
        if token is not None and token.kind == "@":
            self.pos += 1
            host = self.read_domain()
        self.skip_to_close()
        if name is None and comments:
            name = comments[0]
        self.out.append(Address(name, adl, local or MISSING_MAILBOX, host or MISSING_DOMAIN))

    def skip_to_close(self) -> None:
        """Step over garbage up to the ">" closing an angle address.

        Separators inside the brackets ("<Undisclosed-Recipient:;@host>") are garbage too, but
        only when a ">" follows before the next "<": a missing ">" must not swallow the rest
        of the list.
        """
        end = self.pos
        while end < len(self.tokens) and self.tokens[end].kind not in "<>":
            end += 1
        if end < len(self.tokens) and self.tokens[end].kind == ">":
            self.pos = end + 1
            return
        while True:
            token = self.peek()
            if token is None or token.kind in ",;<":
                return
            self.pos += 1

    def read_addr_spec(self) -> None:
        self.skipped = []
        local = self.read_local_part()
        host = ""
        token = self.peek()
        if token is not None and token.kind == "@":
            self.pos += 1
            host = self.read_domain()
        self.peek()
        # "user@host (Real Name)": the old form; the comment is the only name there is.
        name = self.skipped[-1] if self.skipped else None
        # Trailing words before the next "," (e.g. "a@b c") are garbage; skip them, but a "<"
        # starts a mailbox whose display name was mistyped as an address ("a@b <c@d>").
        token = self.peek()
        if token is not None and token.kind == "<":
            self.pos += 1
            self.read_angle(f"{local}@{host}" if host else local, [])
            return
        while token is not None and token.kind not in ",;<":
            self.pos += 1
            token = self.peek()
        self.out.append(Address(name, None, local or MISSING_MAILBOX, host or MISSING_DOMAIN))


def _local_from_phrase(phrase: str) -> str:
    return phrase if _is_dot_atom(phrase) else _quote(phrase)


def parse_address_list(value: str | None) -> tuple[Address, ...]:
    """Parse an address-list header value into ENVELOPE addresses; never raises.

    Display names are returned as written (quoted strings unquoted, encoded words not decoded).
    """
    if not value:
        return ()
    return _Parser(value).parse()
