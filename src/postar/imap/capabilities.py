"""What the server advertises in CAPABILITY, per connection state (RFC 9051 7.2.2).

Only extensions whose behaviour is implemented and tested are listed; ENABLE accepts only the
names listed in ENABLEABLE.
"""

from __future__ import annotations

from postar.imap.limits import LiteralMode

# IMAP4rev2 folds in NAMESPACE, UNSELECT, UIDPLUS, ESEARCH, SEARCHRES, ENABLE, IDLE, SASL-IR,
# LIST-EXTENDED, LIST-STATUS, MOVE, LITERAL-, BINARY, SPECIAL-USE, STATUS=SIZE (RFC 9051
# appendix E); we advertise them by name too, for rev1 clients. LITERAL+ or LITERAL- follows
# them: which one depends on the receiver's LiteralMode (see literal_capability).
_COMMON = ("IMAP4rev1", "IMAP4rev2")
_AFTER_LITERAL = ("SASL-IR", "ID", "ENABLE")

_AUTHENTICATED = (
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "SEARCHRES",
    "STATUS=SIZE",
    "BINARY",
    "MULTIAPPEND",
    "UTF8=ACCEPT",
    "WITHIN",
    # RFC 5256 and RFC 5957 (DISPLAYFROM/DISPLAYTO): sort_exec.
    "SORT",
    "SORT=DISPLAY",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    # RFC 9208: quota_exec; STORAGE is the one resource (with STATUS DELETED-STORAGE).
    "QUOTA",
    "QUOTA=RES-STORAGE",
    # RFC 8474: MAILBOXID (SELECT, STATUS, CREATE), EMAILID/THREADID (FETCH, SEARCH).
    "OBJECTID",
    # RFC 4978: compress.DeflateTransport.
    "COMPRESS=DEFLATE",
)

# RFC 5161: the capabilities a client may ENABLE.
ENABLEABLE = frozenset({"IMAP4REV2", "CONDSTORE", "QRESYNC", "UTF8=ACCEPT"})


def literal_capability(mode: LiteralMode) -> str:
    """The one name that tells clients which non-synchronizing literals the receiver takes.

    RFC 7888 section 5: a server MUST NOT advertise both LITERAL+ and LITERAL- (LITERAL- is
    the restricted form). RFC 9051 section 4.3 makes LITERAL- part of IMAP4rev2, so a server
    advertising IMAP4rev2 cannot refuse {n+} altogether: LiteralMode.NONE has no place here.
    """
    if mode is LiteralMode.NONE:
        raise ValueError("IMAP4rev2 (RFC 9051 4.3) takes {n+} up to 4096 octets: PLUS or MINUS")
    return mode.value


def capabilities(
    *,
    authenticated: bool,
    can_start_tls: bool,
    plaintext_allowed: bool,
    mechanisms: list[str],
    append_limit: int,
    literal_mode: LiteralMode = LiteralMode.PLUS,
) -> tuple[str, ...]:
    caps: list[str] = [*_COMMON, literal_capability(literal_mode), *_AFTER_LITERAL]
    if authenticated:
        caps.extend(_AUTHENTICATED)
        caps.append(f"APPENDLIMIT={append_limit}")
        return tuple(caps)
    if can_start_tls:
        caps.append("STARTTLS")
    if not plaintext_allowed:
        # RFC 9051 6.2.3: LOGIN is refused until TLS is active.
        caps.append("LOGINDISABLED")
    caps.extend(f"AUTH={m}" for m in mechanisms)
    return tuple(caps)
