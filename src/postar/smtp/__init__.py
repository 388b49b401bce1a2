"""SMTP: the sans-I/O server core (this package) and, beside it, the server glue (server.py).

Modules, following the protocol's own parts:
- core.py      `SMTPConnection`: bytes in, events out, replies out; the session logic
- state.py     the phase table: which command may come when (one place answers 503)
- events.py    what the core tells the glue; Decision / Notice / Terminal
- replies.py   `Reply` and the standard replies with enhanced status codes
- address.py   RFC 5321 path grammar (MAIL FROM / RCPT TO), RFC 6531 UTF-8 addresses
- params.py    ESMTP parameters: SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH, NOTIFY, ORCPT; xtext
- data.py      DATA dot-unstuffing with smuggling-proof end detection; BDAT newline repair
- settings.py  `SMTPSettings`, built from the configuration per listener and connection
- trace.py     Received and Return-Path header fields

What the core implements:

| RFC  | what                                  | status |
|------|---------------------------------------|--------|
| 5321 | SMTP                                  | server side; VRFY answers 252, EXPN 502 |
| 1870 | SIZE                                  | at MAIL and while reading content |
| 2034 | ENHANCEDSTATUSCODES (codes of 3463/5248) | every reply but greeting, EHLO, 3xx |
| 2920 | PIPELINING                            | yes |
| 3030 | CHUNKING (BDAT)                       | yes; BINARYMIME not offered |
| 3207 | STARTTLS                              | yes, plaintext after it dropped |
| 3461 | DSN parameters                        | parsed and validated; DSNs are queue/'s |
| 3848 | ESMTPSA etc. in Received              | trace.py |
| 4954 | AUTH                                  | exchange framing; SASL itself is auth/'s |
| 6152 | 8BITMIME                              | yes |
| 6531 | SMTPUTF8                              | yes; UTF8SMTP* "with" names in trace.py |
"""

from postar.smtp.core import SMTPConnection
from postar.smtp.events import NEED_DATA, PAUSED
from postar.smtp.replies import Reply
from postar.smtp.settings import SMTPSettings

__all__ = ["NEED_DATA", "PAUSED", "Reply", "SMTPConnection", "SMTPSettings"]
