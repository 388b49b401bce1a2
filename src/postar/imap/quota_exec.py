"""QUOTA (RFC 9208): GETQUOTAROOT, GETQUOTA, SETQUOTA, and the STORAGE resource.

Each account has one quota root, named "" (RFC 9208 section 3.2 leaves naming to the server),
covering every mailbox of the account. Its one resource is STORAGE, the sum of the sizes of
the account's messages (store.quota_usage), reported in units of 1024 octets (section 5.1).
Limits are the administrator's to set (`postar` CLI), so SETQUOTA is refused (section 4.3).
APPEND and COPY over the limit answer NO [OVERQUOTA] (section 4.4) through
mailbox_exec.store_error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postar.imap import commands as c
from postar.imap.codes import Code
from postar.imap.response import QuotaData, QuotaRootData, Tagged
from postar.imap.response import Status as S

if TYPE_CHECKING:
    from postar.imap.session import ImapSession

ROOT = ""  # the account's one quota root


def kib_up(octets: int) -> int:
    """Usage in 1024-octet units, rounded up: a started unit is used (RFC 9208 5.1)."""
    return -(-octets // 1024)


async def quota_data(session: ImapSession) -> QuotaData:
    used, limit = await session.store.quota_usage(session.account_id)
    if not limit:
        # No limit: the root exists but lists no resource (RFC 9208 5.1 lists only limited ones).
        return QuotaData(ROOT, ())
    # The limit rounds down, so a client never believes more fits than does.
    return QuotaData(ROOT, (("STORAGE", kib_up(used), limit // 1024),))


async def quota(session: ImapSession, command: c.GetQuota | c.GetQuotaRoot | c.SetQuota) -> Tagged:
    from postar.imap.session import no

    match command:
        case c.GetQuotaRoot():
            mailbox = await session.store.get_mailbox(session.account_id, command.mailbox)
            if mailbox is None or mailbox.noselect:
                raise no("No such mailbox", Code.NONEXISTENT)
            # RFC 9208 4.3: QUOTAROOT first, then one QUOTA per root.
            await session.send(QuotaRootData(mailbox.name, (ROOT,)))
            await session.send(await quota_data(session))
            return Tagged(command.tag, S.OK, "GETQUOTAROOT completed")
        case c.GetQuota():
            if command.root != ROOT:
                raise no("No such quota root", Code.NONEXISTENT)
            await session.send(await quota_data(session))
            return Tagged(command.tag, S.OK, "GETQUOTA completed")
        case c.SetQuota():
            raise no("Quotas are set by the administrator", Code.NOPERM)
