"""Decoded text of a message for the full-text index (IMAP SEARCH TEXT, BODY, SUBJECT...).

Headers: each field as "Name: value" with RFC 2047 encoded words decoded. Body: the text/plain
and text/html parts (HTML roughly reduced to its words), transfer-decoded and charset-decoded with
fallbacks, plus the headers of encapsulated messages, which are body text of the outer message.
Both are bounded, so a huge message makes an index entry of bounded size; the budget applies to
the encoded input read as well as to the text kept.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator

from postar.mime.charset import decode_text
from postar.mime.encoding import UnknownEncoding, decode_body
from postar.mime.headers import decode_words, split_fields
from postar.mime.structure import BodyPart, ParsedMessage

MAX_HEADER_TEXT = 64 * 1024  # characters of decoded header text per message
MAX_BODY_TEXT = 1024 * 1024  # characters of decoded body text per message
# Encoded bytes read per character still wanted: base64 is 4/3, quoted-printable up to 3, and
# HTML markup often several times the words it carries.
_INPUT_FACTOR = 4

_INDEXED = {("text", "plain"), ("text", "html")}


# Reads raw[start:end] of the message as bytes, whatever holds it (bytes, mmap, a blob store).
ReadRange = Callable[[int, int], bytes]


def _fields_text(fields: list[tuple[str, str]], limit: int) -> str:
    out: list[str] = []
    used = 0
    for name, value in fields:
        line = f"{name}: {decode_words(value)}"
        out.append(line[: limit - used])
        used += len(out[-1]) + 1
        if used >= limit:
            break
    return "\n".join(out)


# --- HTML to words ------------------------------------------------------------------------------

_HIDDEN = re.compile(r"<(script|style)\b", re.IGNORECASE)
_CLOSERS = {
    "script": re.compile(r"</script\s*>", re.IGNORECASE),
    "style": re.compile(r"</style\s*>", re.IGNORECASE),
}
# A tag starts with "<" and a letter, "/", "!" or "?"; "[^<>]" keeps an unclosed "<" from making
# the scan quadratic.
_TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")
_BLOCK_TAG = re.compile(r"<(?:br|p|div|tr|li|h[1-6]|/p|/div|/tr|/li|/h[1-6])\b[^<>]*>", re.I)
# Runs that are not already a single space or a single line break, so the common case of one
# space between words costs no substitution.
_SPACES = re.compile(r"[\t\r\f\v\xa0][ \t\r\f\v\xa0]*| [ \t\r\f\v\xa0]+")
_LINE_BREAKS = re.compile(r" +\n\s*|\n\s+")
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def _drop_hidden(text: str) -> str:
    """Remove comments, script and style blocks; an unterminated one runs to the end."""
    out: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        comment = text.find("<!--", pos)
        hidden = _HIDDEN.search(text, pos)
        if comment < 0 and hidden is None:
            break
        if hidden is None or (0 <= comment < hidden.start()):
            out.append(text[pos:comment])
            close = text.find("-->", comment + 4)
            pos = n if close < 0 else close + 3
        else:
            out.append(text[pos : hidden.start()])
            closer = _CLOSERS[hidden.group(1).lower()].search(text, hidden.end())
            pos = n if closer is None else closer.end()
        out.append(" ")
    out.append(text[pos:])
    return "".join(out)


def html_to_text(markup: str) -> str:
    """The words of an HTML document, roughly: good enough to index, not to display."""
    text = _drop_hidden(markup)
    text = _BLOCK_TAG.sub("\n", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text)
    text = _SPACES.sub(" ", text)
    return _LINE_BREAKS.sub("\n", text).strip()


# --- parts ----------------------------------------------------------------------------------


def part_text(read: ReadRange, part: BodyPart, limit: int = MAX_BODY_TEXT) -> str:
    """Decoded text of one text/* part (HTML reduced to words), at most limit characters."""
    take = min(part.end, part.body_start + limit * _INPUT_FACTOR + 4)
    data = read(part.body_start, take)
    try:
        data = decode_body(data, part.encoding)
    except UnknownEncoding:
        pass  # x-uuencode and friends: index what is there rather than nothing
    charset = part.param("charset")
    is_html = part.subtype == "html"
    if is_html and charset is None:
        # HTML often declares its charset only in a <meta> tag near the top.
        meta = _META_CHARSET.search(data, 0, 2048)
        if meta is not None:
            charset = meta.group(1).decode("ascii")
    text = decode_text(data, charset).replace("\r\n", "\n")
    if is_html:
        text = html_to_text(text)
    return text[:limit]


def _walk(part: BodyPart) -> Iterator[BodyPart]:
    yield part
    for child in part.children:
        yield from _walk(child)
    if part.message is not None:
        yield from _walk(part.message)


def fill_search_text(parsed: ParsedMessage, read: ReadRange, fields: list[tuple[str, str]]) -> None:
    """Set parsed.search_headers and parsed.search_body; fields are the root header fields."""
    parsed.search_headers = _fields_text(fields, MAX_HEADER_TEXT)
    pieces: list[str] = []
    budget = MAX_BODY_TEXT
    for part in _walk(parsed.root):
        if budget <= 0:
            break
        if part is not parsed.root and part.message is not None:
            inner = part.message
            block = read(inner.start, min(inner.body_start, inner.start + MAX_HEADER_TEXT))
            text = _fields_text(split_fields(block), min(budget, MAX_HEADER_TEXT))
        elif (part.type, part.subtype) in _INDEXED:
            text = part_text(read, part, budget)
        else:
            continue
        if text:
            pieces.append(text)
            budget -= len(text) + 1
    parsed.search_body = "\n".join(pieces)
