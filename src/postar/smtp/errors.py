"""The two kinds of error in the SMTP core, kept apart (guide principle 6).

`ClientError` is the peer's mistake: it carries the reply the core sends back, and is raised
from the parsers and caught in one place, `SMTPConnection._run_command`. `UsageError` is a bug in
the code driving the core (answering a decision that is not pending, say); it is never answered
on the wire, it propagates.
"""

from __future__ import annotations

from postar.smtp.replies import Reply


class ClientError(Exception):
    """The client broke the protocol; `reply` is what it gets told."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class UsageError(RuntimeError):
    """The glue called the core out of turn; a programming error, not a protocol one."""
