"""Grammar: one received command (text segments and literals) to a typed Command.

RFC 9051 section 9 (formal syntax) with RFC 3501 section 9 for the rev1-only forms, and the
grammar of each extension named in `postar.imap.commands`. Nothing here raises: every
mismatch becomes a ParseError with the tag, for a tagged BAD (or NO for BADCHARSET).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from postar.imap import commands as c
from postar.imap import mutf7
from postar.imap.dates import DateError, parse_date_time
from postar.imap.errors import ParseError, SyntaxProblem
from postar.imap.fetch import fetch_atts
from postar.imap.limits import ImapLimits
from postar.imap.reader import ASTRING_CHARS, Literal, Reader
from postar.imap.search import SearchParser, check_charset, return_options
from postar.store.model import FlagMode

_BASE64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_TAG_CHARS = ASTRING_CHARS - {ord("+")}  # RFC 9051 tag: 1*<any ASTRING-CHAR except "+">


def read_tag(first_line: bytes) -> str | None:
    """The tag of a command line, or None if it has none we could answer with."""
    end = 0
    while end < len(first_line) and first_line[end] in _TAG_CHARS:
        end += 1
    if end == 0 or (end < len(first_line) and first_line[end] != 0x20):
        return None
    return first_line[:end].decode("ascii")


def parse_command(
    segments: list[bytes | Literal], *, utf8: bool, limits: ImapLimits
) -> c.Command | ParseError:
    first = segments[0]
    assert isinstance(first, bytes)
    tag = read_tag(first)
    if tag is None:
        return ParseError(None, "Missing or invalid tag")
    r = Reader(
        segments,
        utf8=utf8,
        max_depth=limits.max_nesting_depth,
        max_ranges=limits.max_sequence_ranges,
    )
    r.pos = len(tag)
    try:
        r.sp()
        name = r.keyword()
        if name == "UID":
            r.sp()
            name = r.keyword()
            uid_handler = _UID_HANDLERS.get(name)
            if uid_handler is None:
                return ParseError(tag, "Unknown UID command")
            command = uid_handler(_Context(r, tag, limits), True)
        else:
            handler = _HANDLERS.get(name)
            if handler is None:
                return ParseError(tag, "Unknown command")
            command = handler(_Context(r, tag, limits), False)
        r.expect_end()
        return command
    except SyntaxProblem as problem:
        return ParseError(tag, problem.message, problem.code, problem.status)


class _Context:
    __slots__ = ("limits", "r", "tag")

    def __init__(self, r: Reader, tag: str, limits: ImapLimits) -> None:
        self.r = r
        self.tag = tag
        self.limits = limits


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SyntaxProblem(f"Invalid UTF-8 in {what}") from None


def _name(r: Reader, raw: bytes) -> str:
    """RFC 9051 5.1: UTF-8 names after UTF8=ACCEPT/IMAP4rev2; modified UTF-7 before
    (RFC 3501 5.1.3), rejected when not in canonical form."""
    if r.utf8:
        return _utf8(raw, "mailbox name")
    if not raw.isascii():
        raise SyntaxProblem("8-bit mailbox name without UTF8=ACCEPT")
    try:
        return mutf7.decode(raw.decode("ascii"))
    except mutf7.MailboxNameError:
        raise SyntaxProblem("Invalid modified UTF-7 mailbox name") from None


def _mailbox(r: Reader) -> str:
    name = _name(r, r.astring())
    # RFC 9051 section 5.1: INBOX is case-insensitive.
    return "INBOX" if name.upper() == "INBOX" else name


def _no_args(cls: type[c.Command]) -> Callable[[_Context, bool], c.Command]:
    def handler(ctx: _Context, uid: bool) -> c.Command:
        return cls(tag=ctx.tag)

    return handler


def _authenticate(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    mechanism = r.keyword()
    initial: bytes | None = None
    if r.try_sp():
        # RFC 4959 section 3: initial response in base64, "=" for an empty one.
        raw = r.take(_BASE64_CHARS)
        if raw == b"=":
            initial = b""
        else:
            try:
                initial = base64.b64decode(raw, validate=True)
            except binascii.Error:
                raise SyntaxProblem("Invalid base64 initial response") from None
            if not raw:
                raise SyntaxProblem("Expected an initial response")
    return c.Authenticate(tag=ctx.tag, mechanism=mechanism, initial_response=initial)


def _login(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    user = _utf8(r.astring(), "user name")
    r.sp()
    password = _utf8(r.astring(), "password")
    return c.Login(tag=ctx.tag, username=user, password=password)


def _enable(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    caps: list[str] = []
    while r.try_sp():
        caps.append(r.keyword())
    if not caps:
        raise SyntaxProblem("ENABLE needs a capability")
    return c.Enable(tag=ctx.tag, capabilities=tuple(caps))


def _qresync(r: Reader) -> c.QresyncParams:
    # RFC 7162 section 3.2.5 / 9: "(" uidvalidity SP mod-sequence-value [SP known-uids]
    # [SP seq-match-data] ")"
    r.sp()
    r.open_paren()
    uidvalidity = r.number(nonzero=True)
    r.sp()
    modseq = r.number(nonzero=True, bits=64)
    known = seqs = uids = None
    if r.try_sp():
        if r.peek() != ord("("):
            known = r.sequence_set()
            if not r.try_sp():
                r.close_paren()
                return c.QresyncParams(uidvalidity, modseq, known)
        r.open_paren()
        seqs = r.sequence_set()
        r.sp()
        uids = r.sequence_set()
        r.close_paren()
    r.close_paren()
    return c.QresyncParams(uidvalidity, modseq, known, seqs, uids)


def _select(cls: type[c.Select]) -> Callable[[_Context, bool], c.Command]:
    def handler(ctx: _Context, uid: bool) -> c.Command:
        r = ctx.r
        r.sp()
        given = _name(r, r.astring())
        mailbox = "INBOX" if given.upper() == "INBOX" else given  # as _mailbox()
        condstore = False
        qresync = None
        if r.try_sp():
            # RFC 4466 select-params = SP "(" select-param *(SP select-param) ")"
            r.open_paren()
            while True:
                param = r.keyword()
                if param == "CONDSTORE":
                    condstore = True
                elif param == "QRESYNC" and qresync is None:
                    qresync = _qresync(r)
                else:
                    raise SyntaxProblem("Unknown SELECT parameter")
                if not r.try_sp():
                    break
            r.close_paren()
        return cls(
            tag=ctx.tag,
            mailbox=mailbox,
            condstore=condstore,
            qresync=qresync,
            given_name=given if given != mailbox else None,
        )

    return handler


def _create(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    mailbox = _mailbox(r)
    uses: tuple[str, ...] = ()
    if r.try_sp():
        r.open_paren()
        if r.keyword() != "USE":  # RFC 6154 section 3 create-param
            raise SyntaxProblem("Unknown CREATE parameter")
        r.sp()
        uses = r.flag_list()
        if any(not u.startswith("\\") for u in uses):
            raise SyntaxProblem("USE takes special-use attributes")
        r.close_paren()
    return c.Create(tag=ctx.tag, mailbox=mailbox, special_use=uses)


def _one_mailbox(
    cls: type[c.Delete | c.Subscribe | c.Unsubscribe | c.GetQuotaRoot],
) -> Callable[[_Context, bool], c.Command]:
    def handler(ctx: _Context, uid: bool) -> c.Command:
        ctx.r.sp()
        return cls(tag=ctx.tag, mailbox=_mailbox(ctx.r))

    return handler


def _rename(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    old = _mailbox(r)
    r.sp()
    return c.Rename(tag=ctx.tag, mailbox=old, new_name=_mailbox(r))


def _status_items(r: Reader) -> tuple[c.StatusItem, ...]:
    r.open_paren()
    items: list[c.StatusItem] = []
    while True:
        try:
            items.append(c.StatusItem(r.keyword()))
        except ValueError:
            raise SyntaxProblem("Unknown status item") from None
        if not r.try_sp():
            break
    r.close_paren()
    return tuple(dict.fromkeys(items))


def _list_select(r: Reader) -> c.ListSelect:
    r.open_paren()
    names: set[str] = set()
    if r.peek() != ord(")"):
        while True:
            names.add(r.keyword())
            if not r.try_sp():
                break
    r.close_paren()
    # RFC 5258 section 3: unknown selection options are a BAD; so is RECURSIVEMATCH alone.
    if names - {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}:
        raise SyntaxProblem("Unknown LIST selection option")
    if "RECURSIVEMATCH" in names and not names & {"SUBSCRIBED", "SPECIAL-USE"}:
        raise SyntaxProblem("RECURSIVEMATCH needs another selection option")
    return c.ListSelect(
        subscribed="SUBSCRIBED" in names,
        remote="REMOTE" in names,
        recursive_match="RECURSIVEMATCH" in names,
        special_use="SPECIAL-USE" in names,
    )


def _list_return(r: Reader) -> c.ListReturn:
    r.open_paren()
    names: set[str] = set()
    status: tuple[c.StatusItem, ...] | None = None
    if r.peek() != ord(")"):
        while True:
            word = r.keyword()
            if word == "STATUS" and status is None:  # RFC 5819 section 2
                r.sp()
                status = _status_items(r)
            elif word in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE"):
                names.add(word)
            else:
                raise SyntaxProblem("Unknown LIST return option")
            if not r.try_sp():
                break
    r.close_paren()
    return c.ListReturn(
        subscribed="SUBSCRIBED" in names,
        children="CHILDREN" in names,
        special_use="SPECIAL-USE" in names,
        status=status,
    )


def _pattern(r: Reader) -> str:
    return _name(r, r.list_mailbox())


def _list(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    extended = False
    selection = c.ListSelect()
    if r.peek() == ord("("):
        selection = _list_select(r)
        extended = True
        r.sp()
    reference = _name(r, r.astring())
    r.sp()
    if r.peek() == ord("("):  # RFC 5258 patterns
        r.open_paren()
        patterns = [_pattern(r)]
        while r.try_sp():
            patterns.append(_pattern(r))
        r.close_paren()
        extended = True
    else:
        patterns = [_pattern(r)]
    returns = c.ListReturn()
    if r.try_sp():
        if r.keyword() != "RETURN":
            raise SyntaxProblem("Expected RETURN")
        r.sp()
        returns = _list_return(r)
        extended = True
    return c.List(
        tag=ctx.tag,
        reference=reference,
        patterns=tuple(patterns),
        selection=selection,
        returns=returns,
        extended=extended,
    )


def _lsub(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    reference = _name(r, r.astring())
    r.sp()
    return c.Lsub(tag=ctx.tag, reference=reference, pattern=_pattern(r))


def _status(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    mailbox = _mailbox(r)
    r.sp()
    return c.Status(tag=ctx.tag, mailbox=mailbox, items=_status_items(r))


def _append_message(r: Reader) -> c.AppendMessage:
    flags: tuple[str, ...] = ()
    when = None
    if r.peek() == ord("("):
        flags = r.flag_list()
        r.sp()
    if r.peek() == 0x22:
        try:
            when = parse_date_time(r.quoted().decode("ascii"))
        except (DateError, UnicodeDecodeError):
            raise SyntaxProblem("Invalid date-time") from None
        r.sp()
    if r.at_literal():
        lit = r.literal(binary_ok=True)
        return c.AppendMessage(flags, when, lit.data, binary=lit.binary)
    # RFC 6855 section 4: "UTF8" SP "(" literal8 ")"
    if r.keyword() != "UTF8":
        raise SyntaxProblem("Expected message literal")
    r.sp()
    r.open_paren()
    lit = r.literal(binary_ok=True)
    if not lit.binary:
        raise SyntaxProblem("UTF8 takes a literal8")
    r.close_paren()
    return c.AppendMessage(flags, when, lit.data, binary=False, utf8=True)


def _append(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    mailbox = _mailbox(r)
    messages: list[c.AppendMessage] = []
    # RFC 3502: 1*append-message, each preceded by SP.
    while r.try_sp():
        if len(messages) >= ctx.limits.max_append_messages:
            raise SyntaxProblem("Too many messages in one APPEND")
        messages.append(_append_message(r))
    if not messages:
        raise SyntaxProblem("APPEND needs a message")
    return c.Append(tag=ctx.tag, mailbox=mailbox, messages=tuple(messages))


def _getquota(ctx: _Context, uid: bool) -> c.Command:
    ctx.r.sp()
    return c.GetQuota(tag=ctx.tag, root=_utf8(ctx.r.astring(), "quota root"))


def _setquota(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    root = _utf8(r.astring(), "quota root")
    r.sp()
    r.open_paren()
    limits: list[tuple[str, int]] = []
    if r.peek() != ord(")"):
        while True:
            resource = r.keyword()
            r.sp()
            limits.append((resource, r.number(bits=64)))
            if not r.try_sp():
                break
    r.close_paren()
    return c.SetQuota(tag=ctx.tag, root=root, limits=tuple(limits))


def _id(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    if r.peek() != ord("("):
        if r.keyword() != "NIL":
            raise SyntaxProblem("ID takes a list or NIL")
        return c.Id(tag=ctx.tag, params=None)
    r.open_paren()
    params: list[tuple[str, str | None]] = []
    while True:
        key = r.string()
        r.sp()
        value = r.nstring()
        # RFC 2971 section 3.3: at most 30 pairs.
        if len(params) >= 30:
            raise SyntaxProblem("Too many ID fields")
        params.append((_utf8(key, "ID field"), None if value is None else _utf8(value, "ID value")))
        if not r.try_sp():
            break
    r.close_paren()
    return c.Id(tag=ctx.tag, params=tuple(params))


def _compress(ctx: _Context, uid: bool) -> c.Command:
    ctx.r.sp()
    return c.Compress(tag=ctx.tag, mechanism=ctx.r.keyword())


def _uid_expunge(ctx: _Context, uid: bool) -> c.Command:
    ctx.r.sp()
    return c.UidExpunge(tag=ctx.tag, sequence_set=ctx.r.sequence_set())


def _peek_word(r: Reader, word: str) -> bool:
    """Consume `word` (case-insensitive) if it is the next atom."""
    save = r.pos
    try:
        if r.keyword() == word:
            return True
    except SyntaxProblem:
        pass
    r.pos = save
    return False


def _charset(r: Reader) -> str:
    return check_charset(r.astring().decode("ascii", "replace"))


def _search(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    returns = None
    if _peek_word(r, "RETURN"):  # RFC 9051 search-return-opts
        r.sp()
        returns = return_options(r)
        r.sp()
    charset = None
    if _peek_word(r, "CHARSET"):
        r.sp()
        charset = _charset(r)
        r.sp()
    criteria = SearchParser(r, charset or "UTF-8").keys()
    return c.Search(tag=ctx.tag, uid=uid, charset=charset, criteria=criteria, returns=returns)


def _fetch(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    seq = r.sequence_set()
    r.sp()
    items = fetch_atts(r)
    changed_since = None
    vanished = False
    if r.try_sp():
        r.open_paren()
        while True:
            word = r.keyword()
            if word == "CHANGEDSINCE" and changed_since is None:
                r.sp()
                changed_since = r.number(nonzero=True, bits=64)
            elif word == "VANISHED" and uid and not vanished:
                vanished = True
            else:
                raise SyntaxProblem("Unknown FETCH modifier")
            if not r.try_sp():
                break
        r.close_paren()
        # RFC 7162 section 3.2.6: VANISHED without CHANGEDSINCE is a BAD.
        if vanished and changed_since is None:
            raise SyntaxProblem("VANISHED needs CHANGEDSINCE")
    return c.Fetch(
        tag=ctx.tag,
        uid=uid,
        sequence_set=seq,
        items=items,
        changed_since=changed_since,
        vanished=vanished,
    )


def _store(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    seq = r.sequence_set()
    r.sp()
    unchanged = None
    if r.peek() == ord("("):  # RFC 7162 section 3.1.3 store-modifiers
        r.open_paren()
        if r.keyword() != "UNCHANGEDSINCE":
            raise SyntaxProblem("Unknown STORE modifier")
        r.sp()
        unchanged = r.number(bits=64)
        r.close_paren()
        r.sp()
    mode = FlagMode.REPLACE
    if r.try_char(b"+"):
        mode = FlagMode.ADD
    elif r.try_char(b"-"):
        mode = FlagMode.REMOVE
    word = r.keyword()
    if word not in ("FLAGS", "FLAGS.SILENT"):
        raise SyntaxProblem("Expected FLAGS")
    r.sp()
    if r.peek() == ord("("):
        flags = r.flag_list()
    else:
        items = [r.flag()]
        while r.try_sp():
            items.append(r.flag())
        flags = tuple(items)
    return c.Store(
        tag=ctx.tag,
        uid=uid,
        sequence_set=seq,
        mode=mode,
        silent=word == "FLAGS.SILENT",
        flags=flags,
        unchanged_since=unchanged,
    )


def _copy_move(cls: type[c.Copy | c.Move]) -> Callable[[_Context, bool], c.Command]:
    def handler(ctx: _Context, uid: bool) -> c.Command:
        r = ctx.r
        r.sp()
        seq = r.sequence_set()
        r.sp()
        return cls(tag=ctx.tag, uid=uid, sequence_set=seq, mailbox=_mailbox(r))

    return handler


def _sort(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    r.open_paren()
    criteria: list[c.SortCriterion] = []
    while True:
        word = r.keyword()
        reverse = word == "REVERSE"
        if reverse:
            r.sp()
            word = r.keyword()
        try:
            criteria.append(c.SortCriterion(c.SortKey(word), reverse))
        except ValueError:
            raise SyntaxProblem("Unknown sort key") from None
        if not r.try_sp():
            break
    r.close_paren()
    r.sp()
    charset = _charset(r)  # RFC 5256: the charset is mandatory
    r.sp()
    search = SearchParser(r, charset).keys()
    return c.Sort(tag=ctx.tag, uid=uid, criteria=tuple(criteria), charset=charset, search=search)


def _thread(ctx: _Context, uid: bool) -> c.Command:
    r = ctx.r
    r.sp()
    try:
        algorithm = c.ThreadAlgorithm(r.keyword())
    except ValueError:
        raise SyntaxProblem("Unknown threading algorithm") from None
    r.sp()
    charset = _charset(r)
    r.sp()
    search = SearchParser(r, charset).keys()
    return c.Thread(tag=ctx.tag, uid=uid, algorithm=algorithm, charset=charset, search=search)


_HANDLERS: dict[str, Callable[[_Context, bool], c.Command]] = {
    "CAPABILITY": _no_args(c.Capability),
    "NOOP": _no_args(c.Noop),
    "LOGOUT": _no_args(c.Logout),
    "STARTTLS": _no_args(c.StartTls),
    "NAMESPACE": _no_args(c.Namespace),
    "IDLE": _no_args(c.Idle),
    "CHECK": _no_args(c.Check),
    "CLOSE": _no_args(c.Close),
    "UNSELECT": _no_args(c.Unselect),
    "EXPUNGE": _no_args(c.Expunge),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _select(c.Select),
    "EXAMINE": _select(c.Examine),
    "CREATE": _create,
    "DELETE": _one_mailbox(c.Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(c.Subscribe),
    "UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(c.GetQuotaRoot),
    "SETQUOTA": _setquota,
    "ID": _id,
    "COMPRESS": _compress,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_move(c.Copy),
    "MOVE": _copy_move(c.Move),
    "SORT": _sort,
    "THREAD": _thread,
}
# RFC 9051 6.4.9 and extensions: the commands that have a UID form.
_UID_HANDLERS: dict[str, Callable[[_Context, bool], c.Command]] = {
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_move(c.Copy),
    "MOVE": _copy_move(c.Move),
    "SEARCH": _search,
    "SORT": _sort,
    "THREAD": _thread,
    "EXPUNGE": _uid_expunge,
}
