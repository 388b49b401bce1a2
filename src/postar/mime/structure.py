"""What parsing a message once yields, stored beside the message and read by FETCH and SEARCH.

All offsets are byte offsets into the raw message as stored (CRLF line endings). A part's
header block is raw[start:body_start]; its body is raw[body_start:end]. For the root part,
start == 0. The structure is enough to answer IMAP BODYSTRUCTURE, ENVELOPE and BODY[section]
with ranged reads of the blob, without parsing the message again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Address:
    """One mailbox of an address list, in IMAP ENVELOPE terms (RFC 9051 section 7.5.2).

    A group is two pseudo-addresses: start (mailbox = group name, host None) and end (both None).
    Names are kept as they appear in the header (encoded words not decoded), as ENVELOPE needs;
    use mime.headers.decode_words for display.
    """

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


@dataclass(frozen=True)
class Envelope:
    """RFC 9051 ENVELOPE fields, raw header values (unfolded) or None when absent."""

    date: str | None = None
    subject: str | None = None
    from_: tuple[Address, ...] = ()
    sender: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    in_reply_to: str | None = None
    message_id: str | None = None


@dataclass
class BodyPart:
    """One node of the MIME tree with the offsets of its headers and body."""

    start: int  # first byte of this part's header block
    body_start: int  # first byte of the body (after the blank line); == end of headers
    end: int  # one past the last byte of the body
    type: str = "text"  # lower-case media type, e.g. "text"
    subtype: str = "plain"  # lower-case subtype, e.g. "plain"
    params: tuple[tuple[str, str], ...] = ()  # Content-Type parameters, RFC 2231 decoded
    id: str | None = None  # Content-ID
    description: str | None = None  # Content-Description
    encoding: str = "7bit"  # Content-Transfer-Encoding, lower case
    md5: str | None = None  # Content-MD5
    disposition: str | None = None  # lower-case disposition type
    disposition_params: tuple[tuple[str, str], ...] = ()
    language: tuple[str, ...] = ()
    location: str | None = None
    lines: int = 0  # body line count (text/* and message/rfc822 report it)
    children: list[BodyPart] = field(default_factory=list)  # multipart/* sub-parts
    # For message/rfc822 (and message/global): the encapsulated message's root and envelope.
    message: BodyPart | None = None
    message_envelope: Envelope | None = None

    @property
    def size(self) -> int:
        return self.end - self.body_start

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart"

    def param(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.params:
            if key.lower() == name:
                return value
        return None


@dataclass
class ParsedMessage:
    """The result of parsing a message once, at delivery or APPEND."""

    size: int  # RFC822.SIZE: bytes of the stored message
    envelope: Envelope
    root: BodyPart
    # Decoded text of the headers and the text parts, for the full-text index (SEARCH TEXT/BODY).
    # Bounded by the parser so a huge message does not make a huge index entry.
    search_headers: str = ""
    search_body: str = ""
    # Problems found while parsing (missing boundary, bad charset...). Parsing never fails.
    defects: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
