"""Turn bytes in a declared charset into text, never failing.

Mail declares charsets that Python does not know (``ks_c_5601-1987``, ``x-unknown``), declares
``us-ascii`` over UTF-8 or Windows-1252 bytes, and labels GB18030 text ``gb2312``. A reader wants
the words anyway, so every path ends in a decode that cannot raise: the declared codec strictly,
then UTF-8, then the declared codec with replacement characters, then Latin-1 (which maps every
byte).
"""

from __future__ import annotations

import codecs
from functools import lru_cache

# Labels seen in real mail that Python's codec registry lacks or maps too narrowly. The WHATWG
# Encoding Standard makes the same choices (gb2312 -> gb18030, iso-8859-1 -> windows-1252 would be
# one more, but Latin-1 keeps bytes exact for our purposes).
_ALIASES: dict[str, str] = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "shift-jis": "shift_jis",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode-2-0-utf-7": "utf-7",
    "utf8": "utf-8",
    "x-user-defined": "latin-1",
    "unknown-8bit": "latin-1",
    "x-unknown": "latin-1",
    "unknown": "latin-1",
    "default": "latin-1",
    "_autodetect_all": "latin-1",
}


@lru_cache(maxsize=256)
def codec_name(charset: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when it is unknown."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    # RFC 2231 section 5 lets a language tag ride on the charset: "utf-8*en".
    label = label.split("*", 1)[0]
    label = _ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    # Codecs such as "rot13", "base64" or "zlib" are not text encodings; a header must not be
    # able to select them.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode data declared as charset; unknown or wrong declarations fall back, never raise."""
    name = codec_name(charset)
    if name is not None:
        try:
            return data.decode(name)
        except (UnicodeDecodeError, LookupError, ValueError):
            pass
    if name != "utf-8":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    if name is not None and name != "ascii":
        try:
            return data.decode(name, "replace")
        except (LookupError, ValueError):
            pass
    # An undeclared or ASCII-labelled 8-bit text is most often Windows-1252 in mail of this
    # age; Latin-1 is the same for the letters and never fails.
    return data.decode("cp1252", "replace") if name == "ascii" else data.decode("latin-1")
