"""Typed server responses and their encoder: responses in, bytes out (RFC 9051 section 7).

`ResponseEncoder.encode(response)` gives the bytes of one response line (with its literals
and the final CRLF). `ResponseEncoder.chunks(response)` yields the same bytes in pieces and a
`StreamedData` marker where a FETCH body section is to be copied from the blob store, so a
large BODY[] is never held in memory: the glue writes the bytes before it, then `length`
octets from its source, then the rest.

The encoder's `utf8` flag follows UTF8=ACCEPT / IMAP4rev2 (RFC 6855 section 3, RFC 9051 5.1):
it allows UTF-8 in quoted strings and sends mailbox names in UTF-8 rather than modified UTF-7.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from postar.imap import mutf7
from postar.imap.bodystructure import encode_body, encode_envelope
from postar.imap.codes import ResponseCode
from postar.imap.commands import StatusItem
from postar.imap.dates import format_date_time
from postar.imap.errors import ErrorStatus, ParseError
from postar.imap.fetch import FetchItem, Section
from postar.imap.sequence import SequenceSet
from postar.imap.strings import (
    encode_astring,
    encode_flag,
    encode_nstring,
    encode_quoted,
    encode_string,
    literal_prefix,
    sanitize_text,
)
from postar.mime.structure import BodyPart, Envelope


class Status(Enum):
    OK = "OK"
    NO = "NO"
    BAD = "BAD"
    PREAUTH = "PREAUTH"
    BYE = "BYE"


@dataclass(frozen=True)
class Tagged:
    """response-tagged: tag SP resp-cond-state CRLF."""

    tag: str
    status: Status  # OK, NO or BAD
    text: str
    code: ResponseCode | None = None


@dataclass(frozen=True)
class Untagged:
    """ "* OK/NO/BAD/PREAUTH/BYE [code] text" (resp-cond-state, resp-cond-auth, resp-cond-bye)."""

    status: Status
    text: str
    code: ResponseCode | None = None


@dataclass(frozen=True)
class Continuation:
    """continue-req = "+" SP (resp-text / base64) CRLF; `data` is a SASL challenge."""

    text: str = "Ready"
    data: bytes | None = None


@dataclass(frozen=True)
class CapabilityData:
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class EnabledData:
    """RFC 5161 section 3.2."""

    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class ListData:
    """mailbox-list (RFC 9051 7.3.1) with RFC 5258 extended items; `lsub` for RFC 3501 LSUB."""

    attributes: tuple[str, ...]
    delimiter: str | None
    mailbox: str
    child_info: tuple[str, ...] = ()  # RFC 5258 CHILDINFO, e.g. ("SUBSCRIBED",)
    old_name: str | None = None  # RFC 9051 7.3.1 OLDNAME
    lsub: bool = False


@dataclass(frozen=True)
class StatusData:
    mailbox: str
    # Numbers, except MAILBOXID's objectid (RFC 8474 4.2: "MAILBOXID" SP "(" objectid ")").
    items: tuple[tuple[StatusItem, int | str], ...]


@dataclass(frozen=True)
class SearchData:
    """RFC 3501 "* SEARCH"; `modseq` from RFC 7162 section 3.1.5."""

    numbers: Sequence[int]
    modseq: int | None = None


@dataclass(frozen=True)
class ESearchData:
    """RFC 9051 7.3.4 / RFC 4731: only the fields requested are set."""

    tag: str | None
    uid: bool
    min: int | None = None
    max: int | None = None
    all: SequenceSet | None = None
    count: int | None = None
    modseq: int | None = None


@dataclass(frozen=True)
class FlagsData:
    flags: tuple[str, ...]


@dataclass(frozen=True)
class ExistsData:
    count: int


@dataclass(frozen=True)
class RecentData:
    """RFC 3501 only."""

    count: int


@dataclass(frozen=True)
class ExpungeData:
    number: int


@dataclass(frozen=True)
class VanishedData:
    """RFC 7162 section 3.2.10."""

    uids: SequenceSet
    earlier: bool = False


@dataclass(frozen=True)
class NamespaceData:
    """RFC 2342 / RFC 9051 7.3.5: each class a list of (prefix, delimiter), or None (NIL)."""

    personal: tuple[tuple[str, str | None], ...] | None
    other: tuple[tuple[str, str | None], ...] | None = None
    shared: tuple[tuple[str, str | None], ...] | None = None


@dataclass(frozen=True)
class IdData:
    """RFC 2971 section 3.2."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True)
class QuotaData:
    """RFC 9208 section 5.1: resources as (name, usage, limit)."""

    root: str
    resources: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class QuotaRootData:
    mailbox: str
    roots: tuple[str, ...]


@dataclass(frozen=True)
class SortData:
    """RFC 5256 section 4."""

    numbers: Sequence[int]
    modseq: int | None = None


@dataclass(frozen=True)
class ThreadNode:
    """One message of a thread tree; number None for a missing parent (dummy node)."""

    number: int | None
    children: tuple[ThreadNode, ...] = ()


@dataclass(frozen=True)
class ThreadData:
    """RFC 5256 section 4: one tree per thread."""

    threads: tuple[ThreadNode, ...]


# -- FETCH ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamedData:
    """Placeholder for `length` octets the glue copies from `source` (e.g. a blob range)."""

    length: int
    source: object = None


@dataclass(frozen=True)
class FlagsItem:
    flags: tuple[str, ...]


@dataclass(frozen=True)
class InternalDateItem:
    value: datetime | float  # float: seconds since the epoch (MessageRecord.internal_date)


@dataclass(frozen=True)
class NumberItem:
    """RFC822.SIZE, UID, MODSEQ (sent as "MODSEQ (n)", RFC 7162 section 3.1.4.1)."""

    item: FetchItem
    value: int


@dataclass(frozen=True)
class ObjectIdItem:
    """RFC 8474: EMAILID (id) / THREADID (id) or THREADID NIL."""

    item: FetchItem
    value: str | None


@dataclass(frozen=True)
class EnvelopeItem:
    envelope: Envelope


@dataclass(frozen=True)
class BodyStructureItem:
    """BODYSTRUCTURE when extensible, else BODY (RFC 9051 7.5.2)."""

    part: BodyPart
    extensible: bool


@dataclass(frozen=True)
class BodySectionItem:
    """BODY[section]<origin> data; `legacy` names the RFC 3501 forms RFC822, RFC822.HEADER,
    RFC822.TEXT, which are answered under their own names."""

    section: Section
    data: bytes | StreamedData | None
    origin: int | None = None
    legacy: FetchItem | None = None


@dataclass(frozen=True)
class BinaryItem:
    """RFC 3516 BINARY[part]<origin>: literal8 when the data holds NUL."""

    part: tuple[int, ...]
    data: bytes | StreamedData | None
    origin: int | None = None
    has_nul: bool = False  # for StreamedData, whether to announce literal8


@dataclass(frozen=True)
class BinarySizeItem:
    part: tuple[int, ...]
    size: int


FetchValue = (
    FlagsItem
    | InternalDateItem
    | NumberItem
    | ObjectIdItem
    | EnvelopeItem
    | BodyStructureItem
    | BodySectionItem
    | BinaryItem
    | BinarySizeItem
)


@dataclass(frozen=True)
class FetchData:
    number: int
    items: tuple[FetchValue, ...]


Response = (
    Tagged
    | Untagged
    | Continuation
    | CapabilityData
    | EnabledData
    | ListData
    | StatusData
    | SearchData
    | ESearchData
    | FlagsData
    | ExistsData
    | RecentData
    | ExpungeData
    | VanishedData
    | NamespaceData
    | IdData
    | QuotaData
    | QuotaRootData
    | SortData
    | ThreadData
    | FetchData
)


def _numbers(numbers: Sequence[int]) -> bytes:
    return b"".join(b" %d" % n for n in numbers)


def _part(part: tuple[int, ...]) -> bytes:
    return ".".join(str(p) for p in part).encode()


def _thread(node: ThreadNode) -> bytes:
    # RFC 5256 section 4: a chain of single children is one list; siblings nest.
    out = bytearray()
    while True:
        if node.number is not None:
            if out:
                out += b" "
            out += b"%d" % node.number
        if len(node.children) == 1:
            node = node.children[0]
            continue
        if node.children:
            if out:
                out += b" "
            out += b"".join(b"(" + _thread(ch) + b")" for ch in node.children)
        return bytes(out)


class ResponseEncoder:
    def __init__(self, *, utf8: bool = False) -> None:
        self.utf8 = utf8

    # -- helpers ---------------------------------------------------------------------------

    def mailbox(self, name: str) -> bytes:
        """mailbox: UTF-8 after UTF8=ACCEPT/IMAP4rev2, else modified UTF-7 (RFC 3501 5.1.3)."""
        if name.upper() == "INBOX":
            return b"INBOX"
        return encode_astring(name if self.utf8 else mutf7.encode(name), utf8=self.utf8)

    def _resp_text(self, text: str, code: ResponseCode | None) -> bytes:
        # RFC 3501 resp-text requires text after the code; 8-bit text only with UTF8=ACCEPT.
        body = sanitize_text(text) if text else b"Completed"
        if not self.utf8 and not body.isascii():
            body = body.decode("utf-8", "replace").encode("ascii", "replace")
        if code is None:
            return body
        return b"[" + code.encode() + b"] " + body

    # -- public ----------------------------------------------------------------------------

    def encode(self, response: Response) -> bytes:
        out = bytearray()
        for chunk in self.chunks(response):
            if isinstance(chunk, StreamedData):
                raise ValueError("streamed data: use chunks()")
            out += chunk
        return bytes(out)

    def error(self, error: ParseError) -> bytes:
        """The answer to a ParseError from the receiver."""
        status = Status(error.status.value)
        if error.status is ErrorStatus.BYE or error.tag is None:
            return self.encode(Untagged(status, error.message, error.code))
        return self.encode(Tagged(error.tag, status, error.message, error.code))

    def chunks(self, response: Response) -> Iterator[bytes | StreamedData]:
        if isinstance(response, FetchData):
            yield from self._fetch(response)
            return
        yield self._line(response) + b"\r\n"

    def _line(self, r: Response) -> bytes:
        u = self.utf8
        if isinstance(r, Tagged):
            return (
                r.tag.encode()
                + b" "
                + r.status.value.encode()
                + b" "
                + self._resp_text(r.text, r.code)
            )
        if isinstance(r, Untagged):
            return b"* " + r.status.value.encode() + b" " + self._resp_text(r.text, r.code)
        if isinstance(r, Continuation):
            if r.data is not None:
                return b"+ " + base64.b64encode(r.data)
            return b"+ " + (sanitize_text(r.text) if r.text else b"")
        if isinstance(r, CapabilityData):
            return b"* CAPABILITY " + " ".join(r.capabilities).encode()
        if isinstance(r, EnabledData):
            return b"* ENABLED" + b"".join(b" " + c.encode() for c in r.capabilities)
        if isinstance(r, ListData):
            return self._list(r)
        if isinstance(r, StatusData):
            items = b" ".join(
                b"%s (%s)" % (k.value.encode(), v.encode())
                if isinstance(v, str)
                else b"%s %d" % (k.value.encode(), v)
                for k, v in r.items
            )
            return b"* STATUS " + self.mailbox(r.mailbox) + b" (" + items + b")"
        if isinstance(r, SearchData):
            mod = b" (MODSEQ %d)" % r.modseq if r.modseq is not None else b""
            return b"* SEARCH" + _numbers(r.numbers) + mod
        if isinstance(r, ESearchData):
            return self._esearch(r)
        if isinstance(r, FlagsData):
            return b"* FLAGS (" + b" ".join(encode_flag(f) for f in r.flags) + b")"
        if isinstance(r, ExistsData):
            return b"* %d EXISTS" % r.count
        if isinstance(r, RecentData):
            return b"* %d RECENT" % r.count
        if isinstance(r, ExpungeData):
            return b"* %d EXPUNGE" % r.number
        if isinstance(r, VanishedData):
            return b"* VANISHED " + (b"(EARLIER) " if r.earlier else b"") + r.uids.encode()
        if isinstance(r, NamespaceData):
            return b"* NAMESPACE " + b" ".join(
                self._namespace(ns) for ns in (r.personal, r.other, r.shared)
            )
        if isinstance(r, IdData):
            if r.params is None:
                return b"* ID NIL"
            pairs = b" ".join(
                encode_string(k, utf8=u) + b" " + encode_nstring(v, utf8=u) for k, v in r.params
            )
            return b"* ID (" + pairs + b")"
        if isinstance(r, QuotaData):
            res = b" ".join(b"%s %d %d" % (n.encode(), use, lim) for n, use, lim in r.resources)
            return b"* QUOTA " + encode_astring(r.root, utf8=u) + b" (" + res + b")"
        if isinstance(r, QuotaRootData):
            roots = b"".join(b" " + encode_astring(x, utf8=u) for x in r.roots)
            return b"* QUOTAROOT " + self.mailbox(r.mailbox) + roots
        if isinstance(r, SortData):
            mod = b" (MODSEQ %d)" % r.modseq if r.modseq is not None else b""
            return b"* SORT" + _numbers(r.numbers) + mod
        if isinstance(r, ThreadData):
            return (
                b"* THREAD"
                + (b" " if r.threads else b"")
                + b"".join(b"(" + _thread(t) + b")" for t in r.threads)
            )
        raise TypeError(f"not a response: {r!r}")

    def _list(self, r: ListData) -> bytes:
        attrs = b" ".join(encode_flag(a) for a in r.attributes)
        delim = encode_quoted(r.delimiter.encode()) if r.delimiter else b"NIL"
        out = b"* " + (b"LSUB" if r.lsub else b"LIST") + b" (" + attrs + b") " + delim + b" "
        out += self.mailbox(r.mailbox)
        ext: list[bytes] = []
        if r.child_info:
            ext.append(
                b'"CHILDINFO" (' + b" ".join(encode_quoted(x.encode()) for x in r.child_info) + b")"
            )
        if r.old_name is not None:
            # RFC 9051 6.3.9.7: the name as the client gave it, so not made "INBOX" by
            # mailbox(); quoted as in every OLDNAME example of RFC 9051 (6.3.4, section 8).
            name = r.old_name if self.utf8 else mutf7.encode(r.old_name)
            ext.append(b'"OLDNAME" (' + encode_string(name, utf8=self.utf8) + b")")
        if ext:
            out += b" (" + b" ".join(ext) + b")"
        return out

    def _esearch(self, r: ESearchData) -> bytes:
        out = bytearray(b"* ESEARCH")
        if r.tag is not None:
            out += b" (TAG " + encode_quoted(r.tag.encode()) + b")"
        if r.uid:
            out += b" UID"
        if r.min is not None:
            out += b" MIN %d" % r.min
        if r.max is not None:
            out += b" MAX %d" % r.max
        # Pairs may come in any order (RFC 9051 7.3.4); COUNT before ALL as in its examples.
        if r.count is not None:
            out += b" COUNT %d" % r.count
        if r.all is not None and len(r.all):
            out += b" ALL " + r.all.encode()
        if r.modseq is not None:
            out += b" MODSEQ %d" % r.modseq
        return bytes(out)

    def _namespace(self, ns: tuple[tuple[str, str | None], ...] | None) -> bytes:
        if ns is None:
            return b"NIL"
        return (
            b"("
            + b"".join(
                b"("
                + encode_string(prefix if self.utf8 else mutf7.encode(prefix), utf8=self.utf8)
                + b" "
                + (encode_quoted(d.encode()) if d else b"NIL")
                + b")"
                for prefix, d in ns
            )
            + b")"
        )

    # -- FETCH -----------------------------------------------------------------------------

    def _fetch(self, r: FetchData) -> Iterator[bytes | StreamedData]:
        pending = bytearray(b"* %d FETCH (" % r.number)
        for i, item in enumerate(r.items):
            if i:
                pending += b" "
            for chunk in self.fetch_item(item):
                if isinstance(chunk, StreamedData):
                    yield bytes(pending)
                    pending = bytearray()
                    yield chunk
                else:
                    pending += chunk
        pending += b")\r\n"
        yield bytes(pending)

    def fetch_item(self, item: FetchValue) -> Iterator[bytes | StreamedData]:
        """One msg-att, e.g. b"BODY[] {1234}\\r\\n" then the data (or its StreamedData)."""
        u = self.utf8
        if isinstance(item, FlagsItem):
            yield b"FLAGS (" + b" ".join(encode_flag(f) for f in item.flags) + b")"
        elif isinstance(item, InternalDateItem):
            yield b'INTERNALDATE "' + format_date_time(item.value).encode() + b'"'
        elif isinstance(item, NumberItem):
            if item.item is FetchItem.MODSEQ:
                yield b"MODSEQ (%d)" % item.value
            else:
                yield item.item.value.encode() + b" %d" % item.value
        elif isinstance(item, ObjectIdItem):
            value = b"NIL" if item.value is None else b"(" + item.value.encode() + b")"
            yield item.item.value.encode() + b" " + value
        elif isinstance(item, EnvelopeItem):
            yield b"ENVELOPE " + encode_envelope(item.envelope, utf8=u)
        elif isinstance(item, BodyStructureItem):
            name = b"BODYSTRUCTURE " if item.extensible else b"BODY "
            yield name + encode_body(item.part, extensible=item.extensible, utf8=u)
        elif isinstance(item, BodySectionItem):
            if item.legacy is not None:
                name = item.legacy.value.encode()
            else:
                name = b"BODY[" + item.section.spec().encode() + b"]"
                if item.origin is not None:
                    name += b"<%d>" % item.origin
            yield from self._data(name, item.data, binary=False)
        elif isinstance(item, BinaryItem):
            name = b"BINARY[" + _part(item.part) + b"]"
            if item.origin is not None:
                name += b"<%d>" % item.origin
            binary = item.has_nul or (isinstance(item.data, bytes) and b"\x00" in item.data)
            yield from self._data(name, item.data, binary=binary)
        elif isinstance(item, BinarySizeItem):
            yield b"BINARY.SIZE[" + _part(item.part) + b"] %d" % item.size
        else:
            raise TypeError(f"not a fetch item: {item!r}")

    @staticmethod
    def _data(
        name: bytes, data: bytes | StreamedData | None, *, binary: bool
    ) -> Iterator[bytes | StreamedData]:
        if data is None:
            yield name + b" NIL"
        elif isinstance(data, StreamedData):
            # RFC 3516 section 4.2: literal8 for BINARY data that holds NUL.
            yield name + b" " + literal_prefix(data.length, binary=binary)
            yield data
        else:
            # Message data always goes as a literal (RFC 9051 7.5.2 nstring), the same shape
            # whether held in memory or streamed; literal8 only for BINARY data with NUL.
            yield name + b" " + literal_prefix(len(data), binary=binary) + data
