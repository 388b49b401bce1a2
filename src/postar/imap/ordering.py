"""SORT and THREAD without I/O (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO).

Everything here works on `SortFacts`, one small record per message built by `sort_exec` from
the stored parse (ENVELOPE) and the message record: no store calls, no clock, so the
algorithms are tested with plain values.

Collation is i;unicode-casemap (RFC 5051), which RFC 5256 section 7 requires (I18NLEVEL=1):
each character titlecased, then canonically decomposed, compared as UTF-8 octets; so "über",
"Über" and "U" + combining diaeresis are one subject. Ties fall back to the sequence number.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime

from postar.imap.commands import SortCriterion, SortKey
from postar.imap.response import ThreadNode
from postar.mime.headers import decode_words
from postar.mime.structure import Address, Envelope

# -- base subject (RFC 5256 section 2.1) ----------------------------------------------------

_WSP = re.compile(r"[ \t\r\n]+")
# subj-trailer = "(fwd)" / WSP
_TRAILER = re.compile(r"(?:[ \t]|\(fwd\))$", re.IGNORECASE)
# subj-blob = "[" *BLOBCHAR "]" *WSP; BLOBCHAR excludes "[" and "]"
_BLOB = r"\[[^\[\]]*\][ \t]*"
# subj-leader = (*subj-blob subj-refwd) / WSP
# subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_LEADER = re.compile(rf"^(?:(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:|[ \t]+)", re.IGNORECASE)
_LEADING_BLOB = re.compile(rf"^{_BLOB}")
# subj-fwd = subj-fwd-hdr subject subj-fwd-trl; subj-fwd-hdr = "[fwd:"; subj-fwd-trl = "]"
_FWD_HDR = "[fwd:"


@dataclass(frozen=True)
class BaseSubject:
    text: str
    reply_or_forward: bool  # a leader, "(fwd)" trailer or "[fwd: ...]" wrapper was removed


def base_subject(raw: str | None) -> BaseSubject:
    """RFC 5256 section 2.1, steps 1 to 6."""
    # (1) Encoded words to UTF-8, runs of white space (and folds) to one space.
    subject = _WSP.sub(" ", decode_words(raw or ""))
    reply = False
    while True:
        # (2) Remove trailing "(fwd)" and white space, repeatedly.
        while True:
            trimmed = _TRAILER.sub("", subject)
            if trimmed == subject:
                break
            if not subject.endswith((" ", "\t")):
                reply = True  # it was "(fwd)"
            subject = trimmed
        # (3)-(5) Leaders, and a leading blob unless it is all that is left, until stable.
        while True:
            before = subject
            stripped = _LEADER.sub("", subject, count=1)
            if stripped != subject:
                if subject[: len(subject) - len(stripped)].strip():
                    reply = True  # a "re:"/"fw:" leader, not only white space
                subject = stripped
            blob = _LEADING_BLOB.match(subject)
            if blob and subject[blob.end() :]:
                subject = subject[blob.end() :]
            if subject == before:
                break
        # (6) "[fwd: subject]" unwraps and goes back to step 2.
        if subject[: len(_FWD_HDR)].lower() == _FWD_HDR and subject.endswith("]"):
            subject = subject[len(_FWD_HDR) : -1]
            reply = True
            continue
        return BaseSubject(subject, reply)


def _titlecase(ch: str) -> str:
    # RFC 5051 uses the titlecase property of UnicodeData.txt, a single character; Python's
    # title() applies SpecialCasing too ("ß" -> "Ss"), so a longer result means "no mapping".
    titled = ch.title()
    return titled if len(titled) == 1 else ch


def _hangul(ch: str) -> bool:
    # UnicodeData.txt lists no decomposition for Hangul syllables (it is algorithmic), so
    # RFC 5051's lookup leaves them whole; NFD would split them.
    return "\uac00" <= ch <= "\ud7a3"


def casemap(text: str) -> bytes:
    """i;unicode-casemap (RFC 5051 section 2): titlecase each character, replace it by its
    canonical decomposition, and repeat until nothing changes; the UTF-8 octets compare."""
    if text.isascii():
        return text.upper().encode("ascii")  # titlecase of ASCII is upper case; no decomposition
    while True:
        titled = "".join(_titlecase(ch) for ch in text)
        decomposed = "".join(
            ch if _hangul(ch) else unicodedata.normalize("NFD", ch) for ch in titled
        )
        if decomposed == text:
            return text.encode("utf-8", "surrogatepass")
        text = decomposed


# -- per-message facts ----------------------------------------------------------------------


@dataclass(frozen=True)
class SortFacts:
    seq: int
    uid: int
    envelope: Envelope
    internal_date: float
    size: int
    references: tuple[str, ...] = ()  # References, or In-Reply-To's first id (THREAD only)
    message_id: str | None = None


# msg-id with a quoted local part allowed: <"01KF8JCEOCBS0045PS"@xxx.yyy.com>.
_MSGID = re.compile(r'<((?:"(?:[^"\\\r\n]|\\.)*"|[^<>\s"])+)>')
_QUOTED = re.compile(r'"((?:[^"\\\r\n]|\\.)*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")


def _unquote(match: re.Match[str]) -> str:
    return _QUOTED_PAIR.sub(r"\1", match[1])


def message_ids(value: str | None) -> list[str]:
    """The msg-ids in a header value, normalized: RFC 5256 (REFERENCES) says implementations
    MUST normalize quoting, so <"01KF8JCEOCBS0045PS"@xxx.yyy.com> and
    <01KF8JCEOCBS0045PS@xxx.yyy.com> are the same Message ID. Comparison stays
    case-sensitive, as the RFC says."""
    return ["<" + _QUOTED.sub(_unquote, inner) + ">" for inner in _MSGID.findall(value or "")]


def thread_references(references: str | None, in_reply_to: str | None) -> tuple[str, ...]:
    """RFC 5256 REFERENCES: the References ids, else the first In-Reply-To id."""
    refs = message_ids(references)
    if refs:
        return tuple(refs)
    first = message_ids(in_reply_to)[:1]
    return tuple(first)


def sent_date(facts: SortFacts) -> float:
    """RFC 5256 section 2.2: the Date header in UTC, else the INTERNALDATE."""
    value = facts.envelope.date
    if value:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)  # "-0000": no zone known, take it as UTC
            try:
                return parsed.timestamp()
            except (OverflowError, OSError, ValueError):
                pass
    return facts.internal_date


def _first(addresses: tuple[Address, ...]) -> Address | None:
    # Group markers have no host; the first real mailbox counts.
    return next((a for a in addresses if a.mailbox is not None and a.host is not None), None)


def _addr_mailbox(addresses: tuple[Address, ...]) -> str:
    """RFC 5256 section 3: the addr-mailbox of the first address, "" if none."""
    first = _first(addresses)
    return first.mailbox or "" if first else ""


def _display(addresses: tuple[Address, ...]) -> str:
    """RFC 5957 section 3: the decoded display name, else the addr-spec, else ""."""
    first = _first(addresses)
    if first is None:
        return ""
    if first.name:
        name = decode_words(first.name).strip()
        if name:
            return name
    return f"{first.mailbox}@{first.host}"


def _key(facts: SortFacts, key: SortKey) -> bytes | float | int:
    env = facts.envelope
    match key:
        case SortKey.ARRIVAL:
            return facts.internal_date
        case SortKey.DATE:
            return sent_date(facts)
        case SortKey.SIZE:
            return facts.size
        case SortKey.SUBJECT:
            return casemap(base_subject(env.subject).text)
        case SortKey.FROM:
            return casemap(_addr_mailbox(env.from_))
        case SortKey.TO:
            return casemap(_addr_mailbox(env.to))
        case SortKey.CC:
            return casemap(_addr_mailbox(env.cc))
        case SortKey.DISPLAYFROM:
            return casemap(_display(env.from_))
        case SortKey.DISPLAYTO:
            return casemap(_display(env.to))
    raise ValueError(f"unknown sort key {key}")


class _Reversed:
    """Inverts the order of one key (RFC 5256 section 3: REVERSE applies to the next key)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes | float | int) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return other.value < self.value  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


def sort_messages(
    messages: Sequence[SortFacts], criteria: Sequence[SortCriterion]
) -> list[SortFacts]:
    """RFC 5256 section 3: by each criterion in turn; exact ties by sequence number."""

    def key(facts: SortFacts) -> tuple[object, ...]:
        parts: list[object] = []
        for criterion in criteria:
            value = _key(facts, criterion.key)
            parts.append(_Reversed(value) if criterion.reverse else value)
        parts.append(facts.seq)
        return tuple(parts)

    return sorted(messages, key=key)


# -- THREAD (RFC 5256 section 3, BASE.6.4.THREAD) ---------------------------------------------


def _by_date(items: Sequence[SortFacts]) -> list[SortFacts]:
    # RFC 5256 section 2.2: sent date, then sequence number.
    return sorted(items, key=lambda f: (sent_date(f), f.seq))


def ordered_subject(messages: Sequence[SortFacts]) -> list[ThreadNode]:
    """ORDEREDSUBJECT: group by base subject; in each group the oldest message is the parent of
    the others (siblings in date order); groups ordered by their first message's date."""
    groups: dict[bytes, list[SortFacts]] = {}
    for facts in sorted(
        messages,
        key=lambda f: (casemap(base_subject(f.envelope.subject).text), sent_date(f), f.seq),
    ):
        groups.setdefault(casemap(base_subject(facts.envelope.subject).text), []).append(facts)
    threads = [g for g in groups.values()]
    threads.sort(key=lambda g: (sent_date(g[0]), g[0].seq))
    return [ThreadNode(g[0].seq, tuple(ThreadNode(f.seq) for f in g[1:])) for g in threads]


@dataclass(eq=False)
class _Container:
    message: SortFacts | None = None
    parent: _Container | None = None
    children: list[_Container] = field(default_factory=list)

    def is_ancestor_of(self, other: _Container) -> bool:
        node: _Container | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def unlink(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def link_under(self, parent: _Container) -> None:
        self.unlink()
        self.parent = parent
        parent.children.append(self)

    def date_key(self) -> tuple[float, int]:
        # A dummy sorts by its first child (children are sorted first, REFERENCES (4) and (6)).
        if self.message is not None:
            return sent_date(self.message), self.message.seq
        return self.children[0].date_key() if self.children else (0.0, 0)

    def subject_message(self) -> SortFacts | None:
        return (
            self.message
            if self.message is not None
            else (self.children[0].message if self.children else None)
        )


def _sort_tree(nodes: list[_Container]) -> None:
    # REFERENCES (6): children before parents, so a dummy's first child is known.
    for node in nodes:
        _sort_tree(node.children)
    nodes.sort(key=_Container.date_key)


def _prune(nodes: list[_Container], *, root: bool) -> list[_Container]:
    """REFERENCES (3): drop empty dummies, splice other dummies' children in their
    place, except a root dummy with more than one child."""
    out: list[_Container] = []
    for node in nodes:
        node.children = _prune(node.children, root=False)
        for child in node.children:
            child.parent = node
        if node.message is None:
            if not node.children:
                continue
            if not root or len(node.children) == 1:
                for child in node.children:
                    child.parent = node.parent
                out.extend(node.children)
                continue
        out.append(node)
    return out


def references(messages: Sequence[SortFacts]) -> list[ThreadNode]:
    """THREAD=REFERENCES, RFC 5256 steps (1) to (6)."""
    by_id: dict[str, _Container] = {}

    def container_for(msgid: str) -> _Container:
        found = by_id.get(msgid)
        if found is None:
            found = by_id[msgid] = _Container()
        return found

    ordered = sorted(messages, key=lambda f: f.seq)
    for facts in ordered:
        # (1A) A missing or duplicate Message-ID gets a container of its own.
        msgid = facts.message_id
        existing = by_id.get(msgid) if msgid is not None else None
        if msgid is not None and (existing is None or existing.message is None):
            this = container_for(msgid)
            this.message = facts
        else:
            this = _Container(message=facts)
            by_id[f"\0{facts.seq}"] = this
        # (1A) Link each reference to the next, keeping existing links, never making loops.
        refs = [container_for(r) for r in facts.references]
        for parent, child in itertools.pairwise(refs):
            if child.parent is None and parent is not child and not child.is_ancestor_of(parent):
                child.link_under(parent)
        # (1B) The last reference is this message's parent, replacing any earlier guess.
        last = refs[-1] if refs else None
        if last is None:
            this.unlink()
        elif last is not this and not this.is_ancestor_of(last):
            this.link_under(last)
    # (2) The root set: containers without a parent.
    seen: set[int] = set()
    roots: list[_Container] = []
    for container in by_id.values():
        if container.parent is None and id(container) not in seen:
            seen.add(id(container))
            roots.append(container)
    # (3) Prune dummies; (4) sort the root set by date (a dummy by its first child).
    roots = _prune(roots, root=True)
    _sort_tree(roots)
    # (5) Merge root threads that share a base subject.
    table: dict[bytes, _Container] = {}
    for node in roots:
        first = node.subject_message()
        if first is None:
            continue
        subject = base_subject(first.envelope.subject)
        if not subject.text:
            continue
        key = casemap(subject.text)
        old = table.get(key)
        if (
            old is None
            or (old.message is not None and node.message is None)
            or (
                old.message is not None
                and node.message is not None
                and base_subject(old.message.envelope.subject).reply_or_forward
                and not subject.reply_or_forward
            )
        ):
            table[key] = node
    merged: list[_Container] = []
    for node in roots:
        first = node.subject_message()
        found = base_subject(first.envelope.subject) if first is not None else None
        if found is None or not found.text:
            merged.append(node)
            continue
        subject = found
        key = casemap(subject.text)
        keeper = table[key]
        if keeper is node:
            merged.append(node)
            continue
        # The table prefers a dummy (5B), so a dummy `node` always meets a dummy `keeper`.
        if keeper.message is None and node.message is None:
            # Both dummies: one takes the other's children.
            for child in list(node.children):
                child.link_under(keeper)
        elif keeper.message is None or (
            subject.reply_or_forward
            and not base_subject(keeper.message.envelope.subject).reply_or_forward
        ):
            node.link_under(keeper)
        else:
            dummy = _Container()
            _replace(merged, keeper, dummy)
            keeper.link_under(dummy)
            node.link_under(dummy)
            table[key] = dummy
    # (6) Sort every level by date, children first.
    _sort_tree(merged)
    return [_node(c) for c in merged]


def _replace(nodes: list[_Container], old: _Container, new: _Container) -> None:
    for i, node in enumerate(nodes):
        if node is old:
            nodes[i] = new
            return
    nodes.append(new)  # the old one was not placed yet: it comes later in the root order


def _node(container: _Container) -> ThreadNode:
    seq = container.message.seq if container.message is not None else None
    return ThreadNode(seq, tuple(_node(c) for c in container.children))


def renumber(nodes: Sequence[ThreadNode], numbers: dict[int, int]) -> tuple[ThreadNode, ...]:
    """The same trees with sequence numbers mapped (to UIDs for UID THREAD)."""
    return tuple(
        ThreadNode(None if n.number is None else numbers[n.number], renumber(n.children, numbers))
        for n in nodes
    )
