"""FETCH (RFC 9051 6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE/VANISHED, RFC 8474 OBJECTID).

Everything is answered from the stored parse and ranged reads of the blob: BODY[section]
and its <partial> form read only the octets they send, and sections bigger than one chunk
are streamed (StreamedData) rather than held in memory. BINARY decodes one part, which has to
be read whole, so it is the one item whose memory grows with the part it returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postar.imap import commands as c
from postar.imap.codes import Code
from postar.imap.fetch import (
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    Section,
    SectionText,
)
from postar.imap.response import (
    BinaryItem,
    BinarySizeItem,
    BodySectionItem,
    BodyStructureItem,
    EnvelopeItem,
    FetchData,
    FetchValue,
    FlagsItem,
    InternalDateItem,
    NumberItem,
    ObjectIdItem,
    StreamedData,
    Tagged,
    VanishedData,
)
from postar.imap.response import Status as S
from postar.imap.sequence import SequenceSet
from postar.mime.encoding import UnknownEncoding, decode_body
from postar.mime.structure import BodyPart, ParsedMessage
from postar.store.model import FlagMode, MessageRecord

if TYPE_CHECKING:
    from postar.imap.mailbox_view import MailboxView
    from postar.imap.session import ImapSession

BATCH = 256  # records read from the store at a time
INLINE_MAX = 16 * 1024  # sections up to this size are read into memory, larger ones streamed

_NEEDS_PARSE = (FetchItem.ENVELOPE, FetchItem.BODY, FetchItem.BODYSTRUCTURE)
# RFC 3501 legacy items and their RFC 9051 equivalents.
_LEGACY = {
    FetchItem.RFC822: FetchBody(Section()),
    FetchItem.RFC822_HEADER: FetchBody(Section(text=SectionText.HEADER), peek=True),
    FetchItem.RFC822_TEXT: FetchBody(Section(text=SectionText.TEXT)),
}


def _is_encapsulated(part: BodyPart) -> bool:
    return (
        part.type == "message" and part.subtype in ("rfc822", "global") and part.message is not None
    )


def find_part(root: BodyPart, numbers: tuple[int, ...]) -> BodyPart | None:
    """The part a section's part numbers name (RFC 9051 6.4.5): numbers index a multipart's
    children; a message/rfc822 part is entered; a single-part message's body is part 1."""
    node = root
    at_message = True  # node is the root of a (possibly encapsulated) message
    for n in numbers:
        if not at_message and _is_encapsulated(node):
            assert node.message is not None
            node = node.message
            at_message = True
        if node.is_multipart:
            if not 1 <= n <= len(node.children):
                return None
            node = node.children[n - 1]
            at_message = False
        elif at_message and n == 1:
            at_message = False
        else:
            return None
    return node


def _header_fields(block: bytes, names: tuple[str, ...], *, keep: bool) -> bytes:
    """The raw (still folded) fields of `block` named (keep) or not named in `names`, with the
    blank line that ends a header (RFC 9051 6.4.5 HEADER.FIELDS)."""
    wanted = {n.lower() for n in names}
    out = bytearray()
    take = False
    for line in block.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            if take:
                out += line
            continue
        name = line.split(b":", 1)[0].strip().decode("latin-1").lower()
        take = (name in wanted) == keep
        if take:
            out += line
    return bytes(out) + b"\r\n"


class _Fetcher:
    def __init__(self, session: ImapSession, command: c.Fetch) -> None:
        self.session = session
        self.command = command
        self.store = session.store

    async def section(
        self, record: MessageRecord, parsed: ParsedMessage | None, att: FetchBody
    ) -> bytes | StreamedData | None:
        sec = att.section
        if parsed is None:
            parsed = await self.session.parsed(record.blob_id)
        start, end = 0, record.size
        computed: bytes | None = None
        if sec.part:
            node = find_part(parsed.root, sec.part)
            if node is None:
                return None
        else:
            node = parsed.root
        if sec.text is None:
            if sec.part:
                start, end = node.body_start, node.end
        elif sec.text is SectionText.MIME:
            start, end = node.start, node.body_start
        else:
            message = node
            if sec.part:
                if not _is_encapsulated(node):
                    return b""  # HEADER/TEXT of a part that is no message: nothing
                assert node.message is not None
                message = node.message
            if sec.text is SectionText.TEXT:
                start, end = message.body_start, message.end
            else:
                start, end = message.start, message.body_start
                if sec.text is not SectionText.HEADER:
                    block = await self.store.read_blob(
                        record.blob_id, start, end - start, size=record.size
                    )
                    computed = _header_fields(
                        block, sec.fields, keep=sec.text is SectionText.HEADER_FIELDS
                    )
        if computed is not None:
            if att.partial is not None:
                o, n = att.partial.origin, att.partial.count
                return computed[o : o + n]
            return computed
        end = max(start, min(end, record.size))
        if att.partial is not None:
            start = min(start + att.partial.origin, end)
            end = min(start + att.partial.count, end)
        length = end - start
        if length <= INLINE_MAX:
            if not length:
                return b""
            return await self.store.read_blob(record.blob_id, start, length, size=record.size)
        return StreamedData(length, (record.blob_id, start, record.size))

    async def binary(
        self, record: MessageRecord, parsed: ParsedMessage | None, part: tuple[int, ...]
    ) -> bytes:
        from postar.imap.session import no

        if parsed is None:
            parsed = await self.session.parsed(record.blob_id)
        if not part:
            return await self.store.read_blob(record.blob_id, 0, record.size, size=record.size)
        node = find_part(parsed.root, part)
        if node is None or node.is_multipart:
            raise no("No such body part", Code.UNKNOWN_CTE) if node else no("No such part")
        raw = await self.store.read_blob(
            record.blob_id, node.body_start, node.size, size=record.size
        )
        try:
            return decode_body(raw, node.encoding)
        except UnknownEncoding:
            # RFC 3516 section 4.3: the encoding is one we cannot undo.
            raise no("Unknown Content-Transfer-Encoding", Code.UNKNOWN_CTE) from None

    async def items_for(
        self, seq: int, record: MessageRecord, atts: tuple[c.FetchAtt, ...], flags: frozenset[str]
    ) -> FetchData:
        session = self.session
        parsed: ParsedMessage | None = None
        if any(a in _NEEDS_PARSE for a in atts):
            parsed = await session.parsed(record.blob_id)
        out: list[FetchValue] = []
        for att in atts:
            if isinstance(att, FetchItem):
                legacy = _LEGACY.get(att)
                if legacy is not None:
                    data = await self.section(record, parsed, legacy)
                    out.append(BodySectionItem(legacy.section, data, legacy=att))
                elif att is FetchItem.FLAGS:
                    view = session.selected()
                    recent = view.show_recent and record.uid in view.recent
                    # RFC 3501 2.3.2: \Recent shows in FLAGS for a rev1 client.
                    out.append(FlagsItem((*sorted(flags), *(("\\Recent",) if recent else ()))))
                elif att is FetchItem.UID:
                    out.append(NumberItem(att, record.uid))
                elif att is FetchItem.RFC822_SIZE:
                    out.append(NumberItem(att, record.size))
                elif att is FetchItem.INTERNALDATE:
                    out.append(InternalDateItem(record.internal_date))
                elif att is FetchItem.MODSEQ:
                    modseq = session.selected().modseqs.get(record.uid, record.modseq)
                    out.append(NumberItem(att, max(modseq, record.modseq)))
                elif att is FetchItem.EMAILID:
                    out.append(ObjectIdItem(att, record.email_id))
                elif att is FetchItem.THREADID:
                    out.append(ObjectIdItem(att, record.thread_id or None))
                elif att is FetchItem.ENVELOPE:
                    assert parsed is not None
                    out.append(EnvelopeItem(parsed.envelope))
                else:  # BODY, BODYSTRUCTURE
                    assert parsed is not None
                    out.append(BodyStructureItem(parsed.root, att is FetchItem.BODYSTRUCTURE))
            elif isinstance(att, FetchBody):
                data = await self.section(record, parsed, att)
                origin = att.partial.origin if att.partial is not None else None
                out.append(BodySectionItem(att.section, data, origin))
            elif isinstance(att, FetchBinary):
                decoded = await self.binary(record, parsed, att.part)
                origin = None
                if att.partial is not None:
                    origin = att.partial.origin
                    decoded = decoded[origin : origin + att.partial.count]
                out.append(BinaryItem(att.part, decoded, origin))
            else:  # FetchBinarySize
                assert isinstance(att, FetchBinarySize)
                out.append(
                    BinarySizeItem(att.part, len(await self.binary(record, parsed, att.part)))
                )
        return FetchData(seq, tuple(out))


_FROM_VIEW = (FetchItem.FLAGS, FetchItem.UID)


def _view_item(view: MailboxView, att: c.FetchAtt, uid: int) -> FetchValue:
    if att is FetchItem.UID:
        return NumberItem(FetchItem.UID, uid)
    return FlagsItem(view.flags_of(uid))  # with \Recent for a rev1 client (RFC 3501 2.3.2)


def _sets_seen(att: c.FetchAtt) -> bool:
    # RFC 9051 6.4.5: BODY[...] and BINARY[...] without .PEEK, RFC822 and RFC822.TEXT set \Seen.
    if isinstance(att, FetchBody | FetchBinary):
        return not att.peek
    return att in (FetchItem.RFC822, FetchItem.RFC822_TEXT)


async def fetch(session: ImapSession, command: c.Fetch) -> Tagged:
    view = session.selected()
    atts = list(command.items)
    if command.changed_since is not None or FetchItem.MODSEQ in atts:
        session.condstore = True  # RFC 7162 3.1: CONDSTORE-enabling
    if command.changed_since is not None and FetchItem.MODSEQ not in atts:
        atts.append(FetchItem.MODSEQ)  # RFC 7162 3.1.4.1: CHANGEDSINCE implies MODSEQ
    if command.uid and FetchItem.UID not in atts:
        atts.insert(0, FetchItem.UID)  # RFC 9051 6.4.9: UID FETCH always returns UID
    pairs = session.resolve(command.sequence_set, uid=command.uid)
    if command.vanished:
        from postar.imap.session import bad

        if not session.qresync or command.changed_since is None:
            raise bad("VANISHED needs QRESYNC and CHANGEDSINCE")
        # RFC 7162 3.2.6: UIDs in the set expunged since CHANGEDSINCE.
        gone = await session.store.expunged_since(view.id, command.changed_since)
        if gone:
            resolved = command.sequence_set.resolve(max(gone + view.uids[-1:]))
            gone = [u for u in gone if u in resolved]
        if gone:
            await session.send(VanishedData(SequenceSet.from_numbers(gone), earlier=True))
    pairs = [(s, u) for s, u in pairs if view.live(u)]
    if command.changed_since is None and all(a in _FROM_VIEW for a in atts):
        # FLAGS and UID are what the view holds, kept current by the change feed: no store
        # read (a client's resync asks this of every message). A message expunged elsewhere
        # and not yet announced still answers, as RFC 9051 7.5.1 lets a server do.
        for seq, uid in pairs:
            await session.send(FetchData(seq, tuple(_view_item(view, a, uid) for a in atts)))
        return Tagged(command.tag, S.OK, "FETCH completed")
    sets_seen = not view.read_only and any(_sets_seen(a) for a in atts)
    wants_flags = FetchItem.FLAGS in atts
    fetcher = _Fetcher(session, command)
    items = tuple(atts)
    for i in range(0, len(pairs), BATCH):
        batch = pairs[i : i + BATCH]
        records = {
            r.uid: r for r in await session.store.get_messages(view.id, [u for _, u in batch])
        }
        if command.changed_since is not None:
            batch = [
                (s, u)
                for s, u in batch
                if u in records
                and max(records[u].modseq, view.modseqs.get(u, 0)) > command.changed_since
            ]
        newly_seen: set[int] = set()
        if sets_seen:
            unseen = [u for _, u in batch if u in records and "\\Seen" not in view.flags[u]]
            if unseen:
                changed, _ = await session.store.set_flags(
                    view.id, unseen, FlagMode.ADD, ["\\Seen"]
                )
                view.apply_own(changed)
                newly_seen = {r.uid for r in changed}
        for seq, uid in batch:
            record = records.get(uid)
            if record is None:
                continue  # expunged by another session since our last look
            message_items = items
            if uid in newly_seen and not wants_flags:
                # RFC 9051 6.4.5: flags changed by an implicit \Seen are sent along.
                message_items = (*items, FetchItem.FLAGS)
            await session.send(await fetcher.items_for(seq, record, message_items, view.flags[uid]))
    return Tagged(command.tag, S.OK, "FETCH completed")
