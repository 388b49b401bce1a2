"""Bytes a client sends -> the typed command (RFC 9051 section 6 and the extensions)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from postar.imap import commands as c
from postar.imap import search as s
from postar.imap.codes import BadCharset
from postar.imap.errors import ErrorStatus
from postar.imap.fetch import (
    FetchBinary,
    FetchBinarySize,
    FetchBody,
    FetchItem,
    Partial,
    Section,
    SectionText,
)
from postar.imap.sequence import SequenceSet
from postar.imap.testing import command, error
from postar.store.model import FlagMode


def seq(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


@pytest.mark.parametrize(
    ("line", "cls"),
    [
        (b"a CAPABILITY", c.Capability),
        (b"a noop", c.Noop),
        (b"a LOGOUT", c.Logout),
        (b"a STARTTLS", c.StartTls),
        (b"a NAMESPACE", c.Namespace),
        (b"a IDLE", c.Idle),
        (b"a CHECK", c.Check),
        (b"a CLOSE", c.Close),
        (b"a UNSELECT", c.Unselect),
        (b"a EXPUNGE", c.Expunge),
    ],
)
def test_commands_without_arguments(line: bytes, cls: type[c.Command]) -> None:
    assert command(line + b"\r\n") == cls(tag="a")
    assert error(line + b" extra\r\n").tag == "a"


def test_login_with_quoted_and_literal() -> None:
    assert command(b'a001 LOGIN SMITH "sesame \\"x\\""\r\n') == c.Login(
        tag="a001", username="SMITH", password='sesame "x"'
    )
    assert command(b"a LOGIN {4}\r\nfred {6+}\r\nfoo ba\r\n") == c.Login(
        tag="a", username="fred", password="foo ba"
    )


def test_authenticate_with_sasl_ir() -> None:
    assert command(b"a AUTHENTICATE plain\r\n") == c.Authenticate(tag="a", mechanism="PLAIN")
    assert command(b"a AUTHENTICATE PLAIN AHRlc3QAdGVzdA==\r\n") == c.Authenticate(
        tag="a", mechanism="PLAIN", initial_response=b"\x00test\x00test"
    )
    # RFC 4959 section 3: "=" is an empty initial response.
    assert command(b"a AUTHENTICATE EXTERNAL =\r\n").initial_response == b""  # type: ignore[attr-defined]
    assert error(b"a AUTHENTICATE PLAIN AHRl*\r\n").tag == "a"


def test_enable() -> None:
    assert command(b"a ENABLE condstore utf8=accept\r\n") == c.Enable(
        tag="a", capabilities=("CONDSTORE", "UTF8=ACCEPT")
    )
    assert error(b"a ENABLE\r\n").tag == "a"


def test_select_examine_with_condstore_and_qresync() -> None:
    assert command(b"A142 SELECT INBOX\r\n") == c.Select(tag="A142", mailbox="INBOX")
    assert command(b"a EXAMINE inbox (CONDSTORE)\r\n") == c.Examine(
        tag="a", mailbox="INBOX", condstore=True, given_name="inbox"
    )
    # RFC 7162 section 3.2.5.2 example.
    cmd = command(b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n")
    assert isinstance(cmd, c.Select) and cmd.qresync == c.QresyncParams(
        67890007, 20050715194045000, seq("41,43:211,214:541")
    )
    cmd = command(
        b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999"
        b" 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n"
    )
    assert isinstance(cmd, c.Select) and cmd.qresync is not None
    assert cmd.qresync.known_sequences == seq("5000,7500,9000,9990:9999")
    assert error(b"a SELECT INBOX (FOO)\r\n").tag == "a"


def test_mailbox_names_modified_utf7_and_utf8() -> None:
    assert command(b"a CREATE ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n") == c.Create(
        tag="a", mailbox="~peter/mail/台北/日本語"
    )
    assert error(b"a CREATE &Jjo!\r\n").message.startswith("Invalid modified UTF-7")
    assert error('a CREATE "台北"\r\n'.encode()).tag == "a"  # 8-bit before UTF8=ACCEPT
    assert command('a CREATE "台北"\r\n'.encode(), utf8=True) == c.Create(tag="a", mailbox="台北")
    assert error(b'a CREATE "\xff"\r\n', utf8=True).tag == "a"


def test_create_with_special_use() -> None:
    # RFC 6154 section 5.2 example.
    assert command(b"t1 CREATE MySpecial (USE (\\Drafts \\Sent))\r\n") == c.Create(
        tag="t1", mailbox="MySpecial", special_use=("\\Drafts", "\\Sent")
    )


def test_mailbox_commands() -> None:
    assert command(b"A683 RENAME blurdybloop sarasoop\r\n") == c.Rename(
        tag="A683", mailbox="blurdybloop", new_name="sarasoop"
    )
    assert command(b"a DELETE foo\r\n") == c.Delete(tag="a", mailbox="foo")
    assert command(b'a SUBSCRIBE "#news.comp.mail.mime"\r\n') == c.Subscribe(
        tag="a", mailbox="#news.comp.mail.mime"
    )
    assert command(b"a UNSUBSCRIBE {3+}\r\nfoo\r\n") == c.Unsubscribe(tag="a", mailbox="foo")


def test_list_basic_and_extended() -> None:
    assert command(b'A101 LIST "" ""\r\n') == c.List(tag="A101", reference="", patterns=("",))
    assert command(b"A102 LIST #news.comp.mail.misc %\r\n") == c.List(
        tag="A102", reference="#news.comp.mail.misc", patterns=("%",)
    )
    # RFC 5258 section 5, multiple patterns and selection options.
    cmd = command(
        b'A01 LIST (REMOTE SUBSCRIBED) "" ("INBOX" "Drafts" "Sent/%") RETURN (CHILDREN)\r\n'
    )
    assert cmd == c.List(
        tag="A01",
        reference="",
        patterns=("INBOX", "Drafts", "Sent/%"),
        selection=c.ListSelect(subscribed=True, remote=True),
        returns=c.ListReturn(children=True),
        extended=True,
    )
    # RFC 5819 LIST-STATUS and RFC 6154 SPECIAL-USE.
    cmd = command(b'a LIST "" % RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))\r\n')
    assert isinstance(cmd, c.List)
    assert cmd.returns == c.ListReturn(
        special_use=True, status=(c.StatusItem.MESSAGES, c.StatusItem.UNSEEN)
    )
    assert command(b'a LIST (SPECIAL-USE) "" *\r\n').selection == c.ListSelect(  # type: ignore[attr-defined]
        special_use=True
    )
    assert error(b'a LIST (RECURSIVEMATCH) "" %\r\n').tag == "a"  # RFC 5258 section 3
    assert error(b'a LIST (BOGUS) "" %\r\n').tag == "a"


def test_lsub_namespace_status() -> None:
    assert command(b'a LSUB "#news." "comp.mail.*"\r\n') == c.Lsub(
        tag="a", reference="#news.", pattern="comp.mail.*"
    )
    assert command(
        b"A042 STATUS blurdybloop (UIDNEXT MESSAGES SIZE HIGHESTMODSEQ APPENDLIMIT DELETED"
        b" RECENT UIDVALIDITY UNSEEN MAILBOXID DELETED-STORAGE)\r\n"
    ) == c.Status(
        tag="A042",
        mailbox="blurdybloop",
        items=(
            c.StatusItem.UIDNEXT,
            c.StatusItem.MESSAGES,
            c.StatusItem.SIZE,
            c.StatusItem.HIGHESTMODSEQ,
            c.StatusItem.APPENDLIMIT,
            c.StatusItem.DELETED,
            c.StatusItem.RECENT,
            c.StatusItem.UIDVALIDITY,
            c.StatusItem.UNSEEN,
            c.StatusItem.MAILBOXID,
            c.StatusItem.DELETED_STORAGE,
        ),
    )
    assert error(b"a STATUS foo (BOGUS)\r\n").tag == "a"


MESSAGE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example>"
    b"\r\nSubject: afternoon meeting\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?"
    b"\r\n"
)


def test_append_rfc_example() -> None:
    data = (
        b'A003 APPEND saved-messages (\\Seen) " 7-Feb-1994 21:52:25 -0800" {%d}\r\n' % len(MESSAGE)
        + MESSAGE
        + b"\r\n"
    )
    cmd = command(data)
    assert cmd == c.Append(
        tag="A003",
        mailbox="saved-messages",
        messages=(
            c.AppendMessage(
                ("\\Seen",),
                datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(-timedelta(hours=8))),
                MESSAGE,
            ),
        ),
    )


def test_multiappend_binary_and_utf8() -> None:
    cmd = command(b"a APPEND Drafts {3+}\r\nabc (\\Draft) ~{3+}\r\na\x00b UTF8 (~{2+}\r\nhi)\r\n")
    assert isinstance(cmd, c.Append)
    assert cmd.messages == (
        c.AppendMessage((), None, b"abc"),
        c.AppendMessage(("\\Draft",), None, b"a\x00b", binary=True),
        c.AppendMessage((), None, b"hi", utf8=True),
    )
    assert error(b"a APPEND Drafts {3+}\r\na\x00b\r\n").tag == "a"  # NUL only in literal8
    assert error(b"a APPEND Drafts\r\n").tag == "a"
    assert error(b'a APPEND Drafts "abc"\r\n').tag == "a"


def test_quota_commands() -> None:
    assert command(b'G0001 GETQUOTA "!partition/sda4"\r\n') == c.GetQuota(
        tag="G0001", root="!partition/sda4"
    )
    assert command(b"A003 GETQUOTAROOT INBOX\r\n") == c.GetQuotaRoot(tag="A003", mailbox="INBOX")
    assert command(b'S0000 SETQUOTA "#user/alice" (Storage 510 message 100)\r\n') == c.SetQuota(
        tag="S0000", root="#user/alice", limits=(("STORAGE", 510), ("MESSAGE", 100))
    )


def test_id_and_compress() -> None:
    assert command(b"a023 ID NIL\r\n") == c.Id(tag="a023", params=None)
    assert command(b'a023 ID ("name" "sodr" "version" NIL)\r\n') == c.Id(
        tag="a023", params=(("name", "sodr"), ("version", None))
    )
    assert error(b"a ID (" + b" ".join(b'"k%d" "v"' % i for i in range(31)) + b")\r\n").tag == "a"
    assert command(b"a COMPRESS DEFLATE\r\n") == c.Compress(tag="a", mechanism="DEFLATE")


def test_store_forms() -> None:
    assert command(b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n") == c.Store(
        tag="A003",
        sequence_set=seq("2:4"),
        mode=FlagMode.ADD,
        silent=False,
        flags=("\\Deleted",),
    )
    assert command(b"a UID STORE 1 -FLAGS.SILENT \\seen $Junk\r\n") == c.Store(
        tag="a",
        uid=True,
        sequence_set=seq("1"),
        mode=FlagMode.REMOVE,
        silent=True,
        flags=("\\Seen", "$Junk"),
    )
    # RFC 7162 section 3.1.3 example.
    assert command(b"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT ()\r\n") == (
        c.Store(
            tag="a103",
            uid=True,
            sequence_set=seq("6,4,8"),
            mode=FlagMode.ADD,
            silent=True,
            flags=(),
            unchanged_since=12121230045,
        )
    )
    assert command(b"a STORE 1 FLAGS (x)\r\n").mode is FlagMode.REPLACE  # type: ignore[attr-defined]
    assert error(b"a STORE 1 FLAG (x)\r\n").tag == "a"


def test_copy_move_uid_expunge() -> None:
    assert command(b"A003 COPY 2:4 MEETING\r\n") == c.Copy(
        tag="A003", sequence_set=seq("2:4"), mailbox="MEETING"
    )
    assert command(b"a UID MOVE 42:69 foo\r\n") == c.Move(
        tag="a", uid=True, sequence_set=seq("42:69"), mailbox="foo"
    )
    assert command(b"A202 UID EXPUNGE 3000:3002\r\n") == c.UidExpunge(
        tag="A202", sequence_set=seq("3000:3002")
    )
    assert error(b"a UID LOGIN a b\r\n").message == "Unknown UID command"


# -- FETCH ----------------------------------------------------------------------------------


def fetch_items(atts: bytes) -> tuple[object, ...]:
    cmd = command(b"a FETCH 1 " + atts + b"\r\n")
    assert isinstance(cmd, c.Fetch)
    return cmd.items


@pytest.mark.parametrize("item", list(FetchItem))
def test_every_simple_fetch_item(item: FetchItem) -> None:
    assert fetch_items(item.value.encode()) == (item,)
    assert fetch_items(item.value.lower().encode()) == (item,)


@pytest.mark.parametrize(
    ("text", "att"),
    [
        (b"BODY[]", FetchBody(Section())),
        (b"BODY.PEEK[]<0.2048>", FetchBody(Section(), Partial(0, 2048), peek=True)),
        (b"BODY[HEADER]", FetchBody(Section(text=SectionText.HEADER))),
        (b"BODY[TEXT]", FetchBody(Section(text=SectionText.TEXT))),
        (b"body[1]", FetchBody(Section((1,)))),
        (b"BODY[1.2.3]", FetchBody(Section((1, 2, 3)))),
        (b"BODY[1.MIME]", FetchBody(Section((1,), SectionText.MIME))),
        (b"BODY[3.HEADER]", FetchBody(Section((3,), SectionText.HEADER))),
        (b"BODY[4.2.TEXT]", FetchBody(Section((4, 2), SectionText.TEXT))),
        (
            b"BODY[HEADER.FIELDS (DATE FROM)]",
            FetchBody(Section((), SectionText.HEADER_FIELDS, ("DATE", "FROM"))),
        ),
        (
            b'BODY.PEEK[1.HEADER.FIELDS.NOT ("Received" X-Spam)]<10.20>',
            FetchBody(
                Section((1,), SectionText.HEADER_FIELDS_NOT, ("Received", "X-Spam")),
                Partial(10, 20),
                peek=True,
            ),
        ),
        (b"BINARY[]", FetchBinary(())),
        (b"BINARY.PEEK[1.2]<0.100>", FetchBinary((1, 2), Partial(0, 100), peek=True)),
        (b"BINARY.SIZE[3]", FetchBinarySize((3,))),
    ],
)
def test_fetch_sections(text: bytes, att: object) -> None:
    assert fetch_items(text) == (att,)


@pytest.mark.parametrize(
    "bad",
    [b"BODY[MIME]", b"BODY[0]", b"BODY[1.]", b"BODY[FOO]", b"BODY[]<1>", b"BODY[]<0.0>",
     b"BODY.PEEK", b"BINARY[TEXT]", b"(FLAGS", b"(FLAGS))", b"BODY[HEADER.FIELDS ()]", b"FOO",
     b"BODY[HEADER.FIELDS (A:B)]", b"()"],
)  # fmt: skip
def test_bad_fetch_atts(bad: bytes) -> None:
    assert error(b"a FETCH 1 " + bad + b"\r\n").tag == "a"


def test_fetch_macros() -> None:
    assert fetch_items(b"ALL") == (
        FetchItem.FLAGS,
        FetchItem.INTERNALDATE,
        FetchItem.RFC822_SIZE,
        FetchItem.ENVELOPE,
    )
    assert fetch_items(b"fast") == (FetchItem.FLAGS, FetchItem.INTERNALDATE, FetchItem.RFC822_SIZE)
    assert fetch_items(b"FULL")[-1] is FetchItem.BODY


def test_fetch_modifiers() -> None:
    # RFC 7162 section 3.2.6 example.
    cmd = command(b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n")
    assert cmd == c.Fetch(
        tag="s100",
        uid=True,
        sequence_set=seq("300:500"),
        items=(FetchItem.FLAGS,),
        changed_since=12345,
        vanished=True,
    )
    assert error(b"a UID FETCH 1 FLAGS (VANISHED)\r\n").tag == "a"
    assert error(b"a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)\r\n").tag == "a"  # UID only
    assert command(b"a FETCH $ (UID)\r\n").sequence_set.saved  # type: ignore[attr-defined]


# -- SEARCH ---------------------------------------------------------------------------------


def criteria(keys: bytes, **kwargs: object) -> s.SearchKey:
    cmd = command(b"a SEARCH " + keys + b"\r\n", **kwargs)
    assert isinstance(cmd, c.Search)
    return cmd.criteria


FEB1 = date(1994, 2, 1)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (b"ALL", s.All()),
        (b"ANSWERED", s.Flag("\\Answered", True)),
        (b"BCC bob", s.EnvelopeContains(s.EnvelopeField.BCC, "bob")),
        (b"BEFORE 1-Feb-1994", s.DateCompare(s.DateField.INTERNAL, s.DateOp.BEFORE, FEB1)),
        (b'BODY "hello world"', s.Text("hello world", body_only=True)),
        (b"CC {3}\r\nbob", s.EnvelopeContains(s.EnvelopeField.CC, "bob")),
        (b"DELETED", s.Flag("\\Deleted", True)),
        (b"DRAFT", s.Flag("\\Draft", True)),
        (b"FLAGGED", s.Flag("\\Flagged", True)),
        (b'FROM "Smith"', s.EnvelopeContains(s.EnvelopeField.FROM, "Smith")),
        (b'HEADER List-Id ""', s.Header("List-Id", "")),
        (b"KEYWORD $Junk", s.Flag("$Junk", True)),
        (b"LARGER 1024", s.Size(True, 1024)),
        (b"NEW", s.And((s.Recent(True), s.Flag("\\Seen", False)))),
        (b"NOT SEEN", s.Not(s.Flag("\\Seen", True))),
        (b"OLD", s.Recent(False)),
        (b'ON "1-Feb-1994"', s.DateCompare(s.DateField.INTERNAL, s.DateOp.ON, FEB1)),
        (b"OR SEEN FLAGGED", s.Or(s.Flag("\\Seen", True), s.Flag("\\Flagged", True))),
        (b"RECENT", s.Recent(True)),
        (b"SEEN", s.Flag("\\Seen", True)),
        (b"SENTBEFORE 1-Feb-1994", s.DateCompare(s.DateField.SENT, s.DateOp.BEFORE, FEB1)),
        (b"SENTON 1-Feb-1994", s.DateCompare(s.DateField.SENT, s.DateOp.ON, FEB1)),
        (b"SENTSINCE 1-Feb-1994", s.DateCompare(s.DateField.SENT, s.DateOp.SINCE, FEB1)),
        (b"SINCE 1-Feb-1994", s.DateCompare(s.DateField.INTERNAL, s.DateOp.SINCE, FEB1)),
        (b"SMALLER 10", s.Size(False, 10)),
        (b"SUBJECT afternoon", s.EnvelopeContains(s.EnvelopeField.SUBJECT, "afternoon")),
        (b"TEXT foo", s.Text("foo", body_only=False)),
        (b"TO joe", s.EnvelopeContains(s.EnvelopeField.TO, "joe")),
        (b"UID 1:*", s.Numbers(SequenceSet.parse("1:*"), uid=True)),
        (b"UNANSWERED", s.Flag("\\Answered", False)),
        (b"UNDELETED", s.Flag("\\Deleted", False)),
        (b"UNDRAFT", s.Flag("\\Draft", False)),
        (b"UNFLAGGED", s.Flag("\\Flagged", False)),
        (b"UNKEYWORD $Junk", s.Flag("$Junk", False)),
        (b"UNSEEN", s.Flag("\\Seen", False)),
        (b"2,4:7", s.Numbers(SequenceSet.parse("2,4:7"), uid=False)),
        (b"$", s.Numbers(SequenceSet.parse("$"), uid=False)),
        (b"(SEEN)", s.And((s.Flag("\\Seen", True),))),
        (b"MODSEQ 620162338", s.ModSeq(620162338)),
        (
            b'MODSEQ "/flags/\\\\draft" all 620162338',
            s.ModSeq(620162338, "/flags/\\draft", "all"),
        ),
        (b"OLDER 3600", s.Age(True, 3600)),
        (b"YOUNGER 60", s.Age(False, 60)),
        (b"EMAILID M6d99ac3275bb4e", s.ObjectId("EMAILID", "M6d99ac3275bb4e")),
        (b"THREADID T64b478a75b7ea9", s.ObjectId("THREADID", "T64b478a75b7ea9")),
    ],
)
def test_every_search_key(text: bytes, key: s.SearchKey) -> None:
    assert criteria(text) == key


def test_search_rfc_examples() -> None:
    # RFC 9051 6.4.4.
    assert criteria(b'FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"') == s.And(
        (
            s.Flag("\\Flagged", True),
            s.DateCompare(s.DateField.INTERNAL, s.DateOp.SINCE, FEB1),
            s.Not(s.EnvelopeContains(s.EnvelopeField.FROM, "Smith")),
        )
    )
    cmd = command(b"A285 SEARCH RETURN (MIN MAX) CHARSET UTF-8 TEXT {12}\r\nXXXXXXXXXXXX\r\n")
    assert cmd == c.Search(
        tag="A285",
        charset="UTF-8",
        criteria=s.Text("XXXXXXXXXXXX", body_only=False),
        returns=(s.SearchReturn.MIN, s.SearchReturn.MAX),
    )
    cmd = command(b"A283 UID SEARCH RETURN () UNSEEN\r\n")
    assert isinstance(cmd, c.Search) and cmd.uid and cmd.returns == (s.SearchReturn.ALL,)
    cmd = command(b"a SEARCH RETURN (SAVE COUNT) UNSEEN\r\n")
    assert cmd.returns == (s.SearchReturn.SAVE, s.SearchReturn.COUNT)  # type: ignore[attr-defined]


def test_search_charsets() -> None:
    cmd = command(b"a SEARCH CHARSET ISO-8859-1 SUBJECT {4}\r\ncaf\xe9\r\n")
    assert cmd == c.Search(
        tag="a",
        charset="ISO-8859-1",
        criteria=s.EnvelopeContains(s.EnvelopeField.SUBJECT, "café"),
    )
    err = error(b"A284 SEARCH CHARSET BOGUS TEXT x\r\n")
    assert err.status is ErrorStatus.NO and isinstance(err.code, BadCharset)
    assert error(b"a SEARCH CHARSET UTF-8 TEXT {2}\r\n\xff\xfe\r\n").tag == "a"
    # UTF-8 in a quoted string once UTF8=ACCEPT is on (RFC 6855 section 3).
    assert criteria('SUBJECT "日本"'.encode(), utf8=True) == s.EnvelopeContains(
        s.EnvelopeField.SUBJECT, "日本"
    )


@pytest.mark.parametrize(
    "bad",
    [b"", b"BOGUS", b"(SEEN", b"SEEN)", b"OR SEEN", b"NOT", b"BEFORE 1-Feb-94", b"LARGER x",
     b"HEADER : x", b"MODSEQ \"/x/y\" all 1", b"MODSEQ \"/flags/x\" none 1", b"EMAILID a.b",
     b"SMALLER 99999999999999999999", b"OLDER 0", b"RETURN (BOGUS) ALL"],
)  # fmt: skip
def test_bad_search(bad: bytes) -> None:
    assert error(b"a SEARCH " + bad + b"\r\n").tag == "a"


def test_sort_and_thread() -> None:
    # RFC 5256 section 5 examples.
    cmd = command(b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n")
    assert cmd == c.Sort(
        tag="A283",
        criteria=(c.SortCriterion(c.SortKey.SUBJECT), c.SortCriterion(c.SortKey.DATE, True)),
        charset="UTF-8",
        search=s.All(),
    )
    cmd = command(b"A285 UID SORT (REVERSE ARRIVAL DISPLAYFROM) US-ASCII UNSEEN\r\n")
    assert isinstance(cmd, c.Sort) and cmd.uid and cmd.charset == "US-ASCII"
    assert command(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n") == c.Thread(
        tag="A283",
        algorithm=c.ThreadAlgorithm.ORDEREDSUBJECT,
        charset="UTF-8",
        search=s.DateCompare(s.DateField.INTERNAL, s.DateOp.SINCE, date(2000, 3, 5)),
    )
    assert command(b"a UID THREAD REFERENCES US-ASCII ALL\r\n").uid  # type: ignore[attr-defined]
    assert error(b"a SORT (BOGUS) UTF-8 ALL\r\n").tag == "a"
    assert error(b"a THREAD BOGUS UTF-8 ALL\r\n").tag == "a"
    assert error(b"a SORT (DATE) ALL\r\n").status is ErrorStatus.NO  # ALL is no charset


def test_tags() -> None:
    assert error(b"+bad NOOP\r\n").tag is None
    assert error(b"(x NOOP\r\n").tag is None
    assert error(b"a BOGUS\r\n").tag == "a"
    assert command(b"a.b]c NOOP\r\n").tag == "a.b]c"
