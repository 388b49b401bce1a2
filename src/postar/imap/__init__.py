"""IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501): the sans-I/O grammar half.

Modules
-------
- `receiver`: `Receiver` turns bytes into `Command`s, `NeedContinuation`, `ParseError`s
  (framing, literals, limits); `expect_line()` for AUTHENTICATE and IDLE lines.
- `parser`, `reader`, `fetch`, `search`: the command grammar; `commands`: the typed commands.
- `response`: typed responses and `ResponseEncoder` (bytes, or chunks for streamed bodies);
  `bodystructure`: ENVELOPE and BODY/BODYSTRUCTURE from `postar.mime.structure`;
  `codes`: response codes; `strings`: atom/quoted/literal forms.
- `sequence`: `SequenceSet` (parse, resolve, compact encoding); `mutf7`: modified UTF-7;
  `dates`: date-time and search dates; `state`: the state table; `limits`: `ImapLimits`;
  `testing`: helpers to drive the receiver in tests.

The behaviour half
-----------------
- `session`: `ImapSession`, the loop above over a transport and the store: authentication,
  STARTTLS, ENABLE, SELECT, IDLE, untagged news; `server`: `IMAPServer` for the imap/imaps roles.
- `mailbox_view`: the selected mailbox's UID <-> sequence map and pending news (EXISTS, flag
  changes, EXPUNGE held back during FETCH/STORE/SEARCH, RFC 9051 7.5.1).
- `mailbox_exec` (LIST, LSUB, STATUS, CREATE, DELETE, RENAME, (UN)SUBSCRIBE), `message_exec`
  (APPEND, STORE, COPY, MOVE, EXPUNGE), `fetch_exec` (FETCH from the stored parse and ranged
  blob reads), `search_exec` (SEARCH/ESEARCH/SEARCHRES over flags, headers and the FTS index),
  `sort_exec` (SORT/THREAD glue) over `ordering` (RFC 5256 algorithms, no I/O), `quota_exec`;
  `compress`: the COMPRESS=DEFLATE transport wrapped around the connection;
  `capabilities`: what is advertised (only what works). LITERAL+ by default; LITERAL- with
  ImapSettings.literal_mode (RFC 7888 forbids advertising both).

RFC coverage (grammar and encoding)
-----------------------------------
RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1 (LSUB, CHECK, RECENT, NEW/OLD, RFC822.*, UNSEEN code),
RFC 7888 LITERAL+/LITERAL-, RFC 3516 BINARY, RFC 6855 UTF8=ACCEPT, RFC 4959 SASL-IR,
RFC 5161 ENABLE, RFC 4315 UIDPLUS, RFC 7162 CONDSTORE/QRESYNC, RFC 5258 LIST-EXTENDED,
RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE (+ CREATE USE), RFC 4731 ESEARCH, RFC 5182
SEARCHRES, RFC 5032 WITHIN, RFC 8474 OBJECTID, RFC 5256 SORT/THREAD, RFC 5957 DISPLAYFROM,
RFC 9208 QUOTA, RFC 2971 ID, RFC 4978 COMPRESS, RFC 6851 MOVE, RFC 3502 MULTIAPPEND,
RFC 2177 IDLE, RFC 2342 NAMESPACE, RFC 3691 UNSELECT, RFC 7889 APPENDLIMIT, RFC 4469 TOOBIG.
Not parsed: CATENATE, ESORT/CONTEXT, ACL, METADATA, NOTIFY, PREVIEW, SAVEDATE, FUZZY.
"""
