"""Parse a message once, at delivery and APPEND, into the structure that is stored with it.

parse_message gives offsets, types, parameters, line counts, the ENVELOPE and bounded search
text; FETCH, SEARCH and the webmail answer from that without parsing MIME again. See parser.py
for the offset invariants.
"""

from postar.mime.address import parse_address_list
from postar.mime.encoding import UnknownEncoding, decode_body
from postar.mime.headers import decode_words
from postar.mime.parser import parse_message

__all__ = [
    "UnknownEncoding",
    "decode_body",
    "decode_words",
    "parse_address_list",
    "parse_message",
]
