"""Response encoding checked byte for byte against the examples of RFC 9051 section 7 (compared
with the published text) and of the extensions' RFCs; section 8 is test_imap_rfc9051_sample."""

from __future__ import annotations

import pytest

from postar.imap import codes
from postar.imap.commands import StatusItem
from postar.imap.errors import ErrorStatus, ParseError
from postar.imap.fetch import FetchItem, Section, SectionText
from postar.imap.response import (
    BinaryItem,
    BinarySizeItem,
    BodySectionItem,
    BodyStructureItem,
    CapabilityData,
    Continuation,
    EnabledData,
    EnvelopeItem,
    ESearchData,
    ExistsData,
    ExpungeData,
    FetchData,
    FlagsData,
    FlagsItem,
    IdData,
    InternalDateItem,
    ListData,
    NamespaceData,
    NumberItem,
    ObjectIdItem,
    QuotaData,
    QuotaRootData,
    RecentData,
    ResponseEncoder,
    SearchData,
    SortData,
    Status,
    StatusData,
    StreamedData,
    Tagged,
    ThreadData,
    ThreadNode,
    Untagged,
    VanishedData,
)
from postar.imap.sequence import SequenceSet
from postar.mime.structure import Address, BodyPart, Envelope

enc = ResponseEncoder()


def line(response: object) -> bytes:
    return enc.encode(response)  # type: ignore[arg-type]


# -- RFC 9051 section 7.1 status responses and codes ------------------------------------------


@pytest.mark.parametrize(
    ("response", "wire"),
    [
        (Untagged(Status.OK, "IMAP4rev2 server ready"), b"* OK IMAP4rev2 server ready"),
        (
            Untagged(Status.OK, "System shutdown in 10 minutes", codes.Code.ALERT),
            b"* OK [ALERT] System shutdown in 10 minutes",
        ),
        (Tagged("A001", Status.OK, "LOGIN Completed"), b"A001 OK LOGIN Completed"),
        (
            Untagged(Status.NO, "Disk is 98% full, please delete unnecessary data"),
            b"* NO Disk is 98% full, please delete unnecessary data",
        ),
        (
            Tagged("A223", Status.NO, "COPY failed: disk is full"),
            b"A223 NO COPY failed: disk is full",
        ),
        (Untagged(Status.BAD, "Command line too long"), b"* BAD Command line too long"),
        (Untagged(Status.BAD, "Empty command line"), b"* BAD Empty command line"),
        (
            Untagged(Status.BAD, "Disk crash, attempting salvage to a new disk!"),
            b"* BAD Disk crash, attempting salvage to a new disk!",
        ),
        (
            Untagged(Status.OK, "Salvage successful, no data lost"),
            b"* OK Salvage successful, no data lost",
        ),
        (Tagged("A443", Status.OK, "Expunge completed"), b"A443 OK Expunge completed"),
        (
            Untagged(Status.PREAUTH, "IMAP4rev2 server logged in as Smith"),
            b"* PREAUTH IMAP4rev2 server logged in as Smith",
        ),
        (
            Untagged(Status.BYE, "Autologout; idle for too long"),
            b"* BYE Autologout; idle for too long",
        ),
        (
            Tagged("a", Status.NO, "User's backend down for maintenance", codes.Code.UNAVAILABLE),
            b"a NO [UNAVAILABLE] User's backend down for maintenance",
        ),
        (
            Untagged(Status.OK, "UIDs valid", codes.uid_validity(3857529045)),
            b"* OK [UIDVALIDITY 3857529045] UIDs valid",
        ),
        (
            Untagged(Status.OK, "Predicted next UID", codes.uid_next(4392)),
            b"* OK [UIDNEXT 4392] Predicted next UID",
        ),
        (
            Untagged(Status.OK, "Limited", codes.PermanentFlags(("\\Deleted", "\\Seen", "\\*"))),
            b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited",
        ),
        (
            Tagged("a002", Status.OK, "SELECT completed", codes.Code.READ_WRITE),
            b"a002 OK [READ-WRITE] SELECT completed",
        ),
        (
            Untagged(Status.OK, "Message 17 is first unseen", codes.unseen(17)),
            b"* OK [UNSEEN 17] Message 17 is first unseen",
        ),
        (
            Tagged(
                "A003",
                Status.OK,
                "APPEND completed",
                codes.AppendUid(38505, SequenceSet([(3955, 3955)])),
            ),
            b"A003 OK [APPENDUID 38505 3955] APPEND completed",
        ),
        (
            Tagged(
                "A004",
                Status.OK,
                "Done",
                codes.CopyUid(
                    38505, SequenceSet.parse("304,319:320"), SequenceSet.parse("3956:3958")
                ),
            ),
            b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done",
        ),
        (
            Untagged(Status.OK, "Highest", codes.highest_modseq(715194045007)),
            b"* OK [HIGHESTMODSEQ 715194045007] Highest",
        ),
        (
            Tagged(
                "a103",
                Status.OK,
                "Conditional STORE failed",
                codes.Modified(SequenceSet.parse("7,9")),
            ),
            b"a103 OK [MODIFIED 7,9] Conditional STORE failed",
        ),
        (
            Untagged(Status.OK, "Previous mailbox closed.", codes.Code.CLOSED),
            b"* OK [CLOSED] Previous mailbox closed.",
        ),
        (
            Tagged(
                "3", Status.OK, "Completed", codes.MailboxId("F2212ea87-6097-4256-9d51-71338625")
            ),
            b"3 OK [MAILBOXID (F2212ea87-6097-4256-9d51-71338625)] Completed",
        ),
        (
            Tagged("A284", Status.NO, "No such charset", codes.BadCharset(("UTF-8", "US-ASCII"))),
            b"A284 NO [BADCHARSET (UTF-8 US-ASCII)] No such charset",
        ),
        (
            Untagged(Status.OK, "Ready", codes.CapabilityCode(("IMAP4rev2", "STARTTLS"))),
            b"* OK [CAPABILITY IMAP4rev2 STARTTLS] Ready",
        ),
        (Tagged("a", Status.NO, "Too big", codes.Code.TOOBIG), b"a NO [TOOBIG] Too big"),
        (
            Tagged("a", Status.NO, "", codes.OtherCode("X-FOO", "bar]baz")),
            b"a NO [X-FOO bar baz] Completed",
        ),
    ],
)
def test_status_responses(response: object, wire: bytes) -> None:
    assert line(response) == wire + b"\r\n"


@pytest.mark.parametrize(
    ("response", "wire"),
    [
        # RFC 9051 7.1, the response-code examples as published.
        (
            Tagged("b", Status.NO, "Authentication failed", codes.Code.AUTHENTICATIONFAILED),
            b"b NO [AUTHENTICATIONFAILED] Authentication failed",
        ),
        (
            Tagged("c1", Status.NO, "No such authorization-ID", codes.Code.AUTHORIZATIONFAILED),
            b"c1 NO [AUTHORIZATIONFAILED] No such authorization-ID",
        ),
        (
            Tagged(
                "c2", Status.NO, "Authenticator is not an admin", codes.Code.AUTHORIZATIONFAILED
            ),
            b"c2 NO [AUTHORIZATIONFAILED] Authenticator is not an admin",
        ),
        (
            Tagged("l", Status.NO, "Adjacent slashes are not supported", codes.Code.CANNOT),
            b"l NO [CANNOT] Adjacent slashes are not supported",
        ),
        (
            Tagged("k2", Status.OK, "Done", codes.Code.CLIENTBUG),
            b"k2 OK [CLIENTBUG] Done",
        ),
        (
            Tagged("i", Status.NO, "Cannot open mailbox", codes.Code.CORRUPTION),
            b"i NO [CORRUPTION] Cannot open mailbox",
        ),
        (
            Tagged("d", Status.NO, "That password isn't valid any more", codes.Code.EXPIRED),
            b"d NO [EXPIRED] That password isn't valid any more",
        ),
        (
            Tagged("h", Status.OK, "Search completed", codes.Code.EXPUNGEISSUED),
            b"h OK [EXPUNGEISSUED] Search completed",
        ),
        (
            Tagged("g", Status.NO, "Mailbox in use", codes.Code.INUSE),
            b"g NO [INUSE] Mailbox in use",
        ),
        (
            Tagged("m", Status.NO, "At most 32 flags in one mailbox supported", codes.Code.LIMIT),
            b"m NO [LIMIT] At most 32 flags in one mailbox supported",
        ),
        (
            Tagged("p", Status.NO, "No such mailbox", codes.Code.NONEXISTENT),
            b"p NO [NONEXISTENT] No such mailbox",
        ),
        (
            Tagged("f", Status.NO, "Access denied", codes.Code.NOPERM),
            b"f NO [NOPERM] Access denied",
        ),
        (
            Tagged("n1", Status.NO, "Sorry", codes.Code.OVERQUOTA),
            b"n1 NO [OVERQUOTA] Sorry",
        ),
        (
            Tagged("n2", Status.OK, "You are now over your soft quota", codes.Code.OVERQUOTA),
            b"n2 OK [OVERQUOTA] You are now over your soft quota",
        ),
        (
            Tagged("d", Status.NO, "Connection offers no privacy", codes.Code.PRIVACYREQUIRED),
            b"d NO [PRIVACYREQUIRED] Connection offers no privacy",
        ),
        (
            Tagged("j", Status.NO, "This should not happen", codes.Code.SERVERBUG),
            b"j NO [SERVERBUG] This should not happen",
        ),
    ],
)
def test_rfc_9051_response_code_examples(response: Tagged, wire: bytes) -> None:
    assert line(response) == wire + b"\r\n"


def test_response_code_without_text() -> None:
    # RFC 9051 7.1 shows "e NO [CONTACTADMIN]"; resp-text's text is optional in IMAP4rev2 but
    # required by RFC 3501, which rev1 clients still parse with: we send a word after it.
    assert line(Tagged("e", Status.NO, "", codes.Code.CONTACTADMIN)) == (
        b"e NO [CONTACTADMIN] Completed\r\n"
    )


def test_text_never_breaks_the_line() -> None:
    assert line(Tagged("a", Status.NO, "bad\r\nb OK injected")) == b"a NO bad  b OK injected\r\n"


def test_parse_errors_are_answered() -> None:
    assert enc.error(ParseError("a1", "Unknown command")) == b"a1 BAD Unknown command\r\n"
    assert (
        enc.error(ParseError(None, "Missing or invalid tag")) == b"* BAD Missing or invalid tag\r\n"
    )
    assert enc.error(ParseError("a", "Literal too large", codes.Code.TOOBIG, ErrorStatus.NO)) == (
        b"a NO [TOOBIG] Literal too large\r\n"
    )
    bye = ParseError(None, "Literal too large", codes.Code.TOOBIG, ErrorStatus.BYE)
    assert enc.error(bye) == b"* BYE [TOOBIG] Literal too large\r\n"


def test_continuation_requests() -> None:
    assert line(Continuation("Ready for additional command text")) == (
        b"+ Ready for additional command text\r\n"
    )
    assert line(Continuation(data=b"")) == b"+ \r\n"  # an empty SASL challenge
    assert line(Continuation(data=b"\x00abc")) == b"+ AGFiYw==\r\n"


# -- RFC 9051 section 7.2-7.5 data ------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "wire"),
    [
        (
            CapabilityData(("STARTTLS", "AUTH=GSSAPI", "IMAP4rev2", "LOGINDISABLED", "XPIG-LATIN")),
            b"* CAPABILITY STARTTLS AUTH=GSSAPI IMAP4rev2 LOGINDISABLED XPIG-LATIN",
        ),
        (EnabledData(("CONDSTORE", "QRESYNC")), b"* ENABLED CONDSTORE QRESYNC"),
        (EnabledData(()), b"* ENABLED"),
        (ListData(("\\Noselect",), "/", "~/Mail/foo"), b'* LIST (\\Noselect) "/" ~/Mail/foo'),
        (ListData((), "/", "INBOX"), b'* LIST () "/" INBOX'),
        (ListData(("\\Noselect",), None, ""), b'* LIST (\\Noselect) NIL ""'),
        (
            ListData((), "/", "Foo", child_info=("SUBSCRIBED",)),
            b'* LIST () "/" Foo ("CHILDINFO" ("SUBSCRIBED"))',
        ),
        (
            ListData((), "/", "NewName", old_name="OldName"),
            b'* LIST () "/" NewName ("OLDNAME" ("OldName"))',
        ),
        # OLDNAME keeps the client's spelling: "inbox" is not made "INBOX" (RFC 9051 sec. 8).
        (
            ListData((), "/", "INBOX", old_name="inbox"),
            b'* LIST () "/" INBOX ("OLDNAME" ("inbox"))',
        ),
        (ListData((), "/", "My Folder"), b'* LIST () "/" "My Folder"'),
        (ListData((), "/", "Nil"), b'* LIST () "/" "Nil"'),
        (ListData((), "/", "台北"), b'* LIST () "/" &U,BTFw-'),
        (ListData(("\\Sent",), ".", "Sent", lsub=True), b'* LSUB (\\Sent) "." Sent'),
        (
            StatusData("blurdybloop", ((StatusItem.MESSAGES, 231), (StatusItem.UIDNEXT, 44292))),
            b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)",
        ),
        (SearchData([2, 3, 6]), b"* SEARCH 2 3 6"),
        (SearchData([]), b"* SEARCH"),
        (SearchData([2, 5, 6], modseq=917162500), b"* SEARCH 2 5 6 (MODSEQ 917162500)"),
        (ESearchData("A282", False, min=2, count=3), b'* ESEARCH (TAG "A282") MIN 2 COUNT 3'),
        (
            ESearchData("A283", False, all=SequenceSet.from_numbers([2, 10, 11])),
            b'* ESEARCH (TAG "A283") ALL 2,10:11',
        ),
        (
            ESearchData("A285", True, min=7, max=3800),
            b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800',
        ),
        (ESearchData("A286", False, count=15), b'* ESEARCH (TAG "A286") COUNT 15'),
        (ESearchData("A284", False), b'* ESEARCH (TAG "A284")'),
        # RFC 9051 7.3.4, as published.
        (
            ESearchData(None, True, all=SequenceSet.parse("4:18,21,28"), count=17),
            b"* ESEARCH UID COUNT 17 ALL 4:18,21,28",
        ),
        (
            ESearchData("a567", True, all=SequenceSet.parse("4:18,21,28"), count=17),
            b'* ESEARCH (TAG "a567") UID COUNT 17 ALL 4:18,21,28',
        ),
        (
            ESearchData(None, False, all=SequenceSet.parse("1:17,21"), count=18),
            b"* ESEARCH COUNT 18 ALL 1:17,21",
        ),
        (ESearchData("A287", False, all=SequenceSet(), count=0), b'* ESEARCH (TAG "A287") COUNT 0'),
        (
            FlagsData(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")),
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
        ),
        (ExistsData(23), b"* 23 EXISTS"),
        (RecentData(5), b"* 5 RECENT"),
        (ExpungeData(44), b"* 44 EXPUNGE"),
        (
            VanishedData(SequenceSet.parse("41,43:116,118,120:211,214:540"), earlier=True),
            b"* VANISHED (EARLIER) 41,43:116,118,120:211,214:540",
        ),
        (VanishedData(SequenceSet.parse("405,407,410,425")), b"* VANISHED 405,407,410,425"),
        (NamespaceData(((("", "/"),)), None, None), b'* NAMESPACE (("" "/")) NIL NIL'),
        (
            NamespaceData((("", "/"),), (("~", "/"),), None),
            b'* NAMESPACE (("" "/")) (("~" "/")) NIL',
        ),
        (
            NamespaceData(
                (("", "/"),),
                (("~", "/"),),
                (("#shared/", "/"), ("#public/", "/"), ("#ftp/", "/"), ("#news.", ".")),
            ),
            b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" "/")'
            b'("#ftp/" "/")("#news." "."))',
        ),
        (IdData(None), b"* ID NIL"),
        (
            IdData((("name", "Cyrus"), ("version", "1.5"), ("os", "sunos"), ("date", None))),
            b'* ID ("name" "Cyrus" "version" "1.5" "os" "sunos" "date" NIL)',
        ),
        (QuotaData("", (("STORAGE", 10, 512),)), b'* QUOTA "" (STORAGE 10 512)'),
        (QuotaRootData("INBOX", ("",)), b'* QUOTAROOT INBOX ""'),
        (QuotaRootData("comp.mail.mime", ()), b"* QUOTAROOT comp.mail.mime"),
        (SortData([2, 84, 882]), b"* SORT 2 84 882"),
        (SortData([]), b"* SORT"),
    ],
)
def test_untagged_data(response: object, wire: bytes) -> None:
    assert line(response) == wire + b"\r\n"


def test_thread_rfc_5256_example() -> None:
    # RFC 5256 section 4: "(2)(3 6 (4 23)(44 7 96))"
    tree = ThreadData(
        (
            ThreadNode(2),
            ThreadNode(
                3,
                (
                    ThreadNode(
                        6,
                        (
                            ThreadNode(4, (ThreadNode(23),)),
                            ThreadNode(44, (ThreadNode(7, (ThreadNode(96),)),)),
                        ),
                    ),
                ),
            ),
        )
    )
    assert line(tree) == b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    # A missing parent (dummy node) with two children: "((3)(5))".
    dummy = ThreadData((ThreadNode(None, (ThreadNode(3), ThreadNode(5))),))
    assert line(dummy) == b"* THREAD ((3)(5))\r\n"
    assert line(ThreadData(())) == b"* THREAD\r\n"


def test_utf8_mailbox_names_after_enable() -> None:
    utf8 = ResponseEncoder(utf8=True)
    assert utf8.encode(ListData((), "/", "台北")) == '* LIST () "/" "台北"\r\n'.encode()
    assert utf8.encode(StatusData("Entwürfe", ((StatusItem.UNSEEN, 0),))) == (
        '* STATUS "Entwürfe" (UNSEEN 0)\r\n'.encode()
    )


# -- FETCH: RFC 9051 7.5.2 (the section 8 sample is in test_imap_rfc9051_sample.py) ----------


def test_rfc_9051_fetch_response_example() -> None:
    # RFC 9051 7.5.2, as published: an unsolicited FETCH carries UID.
    response = FetchData(
        23,
        (
            FlagsItem(("\\Seen",)),
            NumberItem(FetchItem.RFC822_SIZE, 44827),
            NumberItem(FetchItem.UID, 447),
        ),
    )
    assert line(response) == b"* 23 FETCH (FLAGS (\\Seen) RFC822.SIZE 44827 UID 447)\r\n"


def test_rfc_9051_multipart_body_example() -> None:
    # RFC 9051 7.5.2, BODYSTRUCTURE of a two-part message (shown without extension data).
    root = BodyPart(
        start=0,
        body_start=0,
        end=6000,
        type="multipart",
        subtype="mixed",
        params=(("boundary", "xx"),),
        children=[
            BodyPart(0, 0, 1152, params=(("charset", "US-ASCII"),), lines=23),
            BodyPart(
                0,
                0,
                4554,
                params=(("charset", "US-ASCII"), ("name", "cc.diff")),
                id="<960723163407.20117h@cac.washington.edu>",
                description="Compiler diff",
                encoding="base64",
                lines=73,
            ),
        ],
    )
    assert line(FetchData(1, (BodyStructureItem(root, extensible=False),))) == (
        b'* 1 FETCH (BODY (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) '
        b'"MIXED"))\r\n'
    )
    # With extension data: md5, disposition, language, location per part; params for multipart.
    root.children[1].disposition = "attachment"
    root.children[1].disposition_params = (("filename", "cc.diff"),)
    root.children[1].language = ("en", "de")
    root.children[1].md5 = "Q2hlY2sgSW50ZWdyaXR5IQ=="
    root.children[0].language = ("en",)
    root.location = "http://example.com/x"
    assert line(FetchData(1, (BodyStructureItem(root, extensible=True),))) == (
        b'* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23'
        b' NIL NIL "en" NIL)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73 '
        b'"Q2hlY2sgSW50ZWdyaXR5IQ==" ("ATTACHMENT" ("FILENAME" "cc.diff")) ("en" "de") NIL) '
        b'"MIXED" ("BOUNDARY" "xx") NIL NIL "http://example.com/x"))\r\n'
    )


def test_message_rfc822_part_nests_envelope_body_and_lines() -> None:
    inner = BodyPart(0, 40, 52, lines=1)
    part = BodyPart(
        0,
        10,
        62,
        type="message",
        subtype="rfc822",
        lines=3,
        message=inner,
        message_envelope=Envelope(subject="inner"),
    )
    assert enc.encode(FetchData(2, (BodyStructureItem(part, extensible=False),))) == (
        b'* 2 FETCH (BODY ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 52 '
        b'(NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 12 1) 3))\r\n'
    )
    image = BodyPart(0, 0, 100, type="image", subtype="png", encoding="base64")
    assert enc.encode(FetchData(3, (BodyStructureItem(image, extensible=True),))) == (
        b'* 3 FETCH (BODYSTRUCTURE ("IMAGE" "PNG" NIL NIL NIL "BASE64" 100 NIL NIL NIL NIL))\r\n'
    )


def test_envelope_strings_with_8bit_or_quotes() -> None:
    env = Envelope(subject='say "hi" \\ bye', from_=(Address("Jörg", None, "j", "x.test"),))
    data = enc.encode(FetchData(1, (EnvelopeItem(env),)))
    assert b'"say \\"hi\\" \\\\ bye"' in data
    assert b'(({5}\r\nJ\xc3\xb6rg NIL "j" "x.test"))' in data  # 8-bit: a literal for rev1
    utf8 = ResponseEncoder(utf8=True).encode(FetchData(1, (EnvelopeItem(env),)))
    assert '(("Jörg" NIL "j" "x.test"))'.encode() in utf8


def test_other_fetch_items() -> None:
    items = (
        NumberItem(FetchItem.UID, 4827313),
        NumberItem(FetchItem.MODSEQ, 12121231000),
        ObjectIdItem(FetchItem.EMAILID, "M6d99ac3275bb4e"),
        ObjectIdItem(FetchItem.THREADID, None),
        InternalDateItem(0.0),
        BinarySizeItem((1, 2), 3),
        BodySectionItem(Section(), b"abc", legacy=FetchItem.RFC822),
        BodySectionItem(Section((1,), SectionText.MIME), None),
        BodySectionItem(
            Section((), SectionText.HEADER_FIELDS, ("From", "To")), b"From: a\r\n\r\n", origin=0
        ),
    )
    assert line(FetchData(1, items)) == (
        b"* 1 FETCH (UID 4827313 MODSEQ (12121231000) EMAILID (M6d99ac3275bb4e) THREADID NIL "
        b'INTERNALDATE " 1-Jan-1970 00:00:00 +0000" BINARY.SIZE[1.2] 3 RFC822 {3}\r\nabc '
        b"BODY[1.MIME] NIL BODY[HEADER.FIELDS (From To)]<0> {11}\r\nFrom: a\r\n\r\n)\r\n"
    )


def test_binary_uses_literal8_only_for_nul() -> None:
    assert line(FetchData(1, (BinaryItem((1,), b"a\x00b"),))) == (
        b"* 1 FETCH (BINARY[1] ~{3}\r\na\x00b)\r\n"
    )
    assert line(FetchData(1, (BinaryItem((), b"text", origin=5),))) == (
        b"* 1 FETCH (BINARY[]<5> {4}\r\ntext)\r\n"
    )


def test_streamed_body_is_yielded_as_a_marker() -> None:
    marker = StreamedData(1_000_000, source="blob:abc")
    chunks = list(
        enc.chunks(FetchData(7, (NumberItem(FetchItem.UID, 9), BodySectionItem(Section(), marker))))
    )
    assert chunks == [b"* 7 FETCH (UID 9 BODY[] {1000000}\r\n", marker, b")\r\n"]
    with pytest.raises(ValueError):
        enc.encode(FetchData(7, (BodySectionItem(Section(), marker),)))
    binary = list(enc.chunks(FetchData(7, (BinaryItem((), StreamedData(3), has_nul=True),))))
    assert binary[0] == b"* 7 FETCH (BINARY[] ~{3}\r\n"
