"""Named hook points of an SMTP session, where the spam firewall plugs in.

The SMTP server calls one method per phase (connect, HELO, MAIL, RCPT, end of DATA), in the
style of aiosmtpd's handle_RCPT: a check is an object with any of these methods. The pipeline
runs the checks in order; the first verdict that is not ACCEPT decides, so a cheap check
(a DNS blocklist at connect) can spare the expensive ones (a content classifier at DATA).
Checks that only tag (add a header, raise a score) return TAG with headers to prepend.

The filter package stands below the protocol servers: checks receive plain data (a
SessionInfo and the message bytes), never a protocol object.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("postar.filter")


class Action(enum.Enum):
    ACCEPT = "accept"  # go on
    TAG = "tag"  # go on, with headers added to the message (X-Spam-*, Authentication-Results)
    JUNK = "junk"  # accept, but file into the recipients' Junk folder
    TEMPFAIL = "tempfail"  # 4xx: try later (greylisting, rate limit)
    REJECT = "reject"  # 5xx


@dataclass(frozen=True)
class Verdict:
    action: Action
    code: int = 250
    enhanced: str = "2.0.0"
    text: str = "OK"
    headers: tuple[tuple[str, str], ...] = ()  # for TAG and JUNK
    check: str = ""  # which check decided, for the log

    @classmethod
    def tempfail(cls, text: str, enhanced: str = "4.7.1", check: str = "") -> Verdict:
        return cls(Action.TEMPFAIL, 451, enhanced, text, check=check)

    @classmethod
    def reject(cls, text: str, enhanced: str = "5.7.1", check: str = "") -> Verdict:
        return cls(Action.REJECT, 550, enhanced, text, check=check)


ACCEPT = Verdict(Action.ACCEPT)


@dataclass
class SessionInfo:
    """What a check may know of the session so far; the server fills it as it goes."""

    peer_ip: str
    peer_port: int
    role: str
    conn_id: str
    tls: bool = False
    helo: str | None = None
    auth_user: str | None = None  # set once the client authenticated
    trusted: bool = False  # authenticated or from a trusted network: checks usually skip
    mail_from: str | None = None
    recipients: list[str] = field(default_factory=list)


class Check(Protocol):
    """A check implements any subset of these coroutines; missing ones mean ACCEPT."""

    name: str


async def _call(check: object, method: str, *args: object) -> Verdict | None:
    fn = getattr(check, method, None)
    if fn is None:
        return None
    verdict: Verdict | None = await fn(*args)
    return verdict


class FilterPipeline:
    """Runs the configured checks at each hook point. An empty pipeline accepts everything."""

    def __init__(self, checks: Sequence[object] = ()) -> None:
        self.checks = list(checks)

    async def _run(self, method: str, *args: object) -> Verdict:
        tags: list[tuple[str, str]] = []
        junk = False
        for check in self.checks:
            verdict = await _call(check, method, *args)
            if verdict is None or verdict.action is Action.ACCEPT:
                continue
            if verdict.action in (Action.TEMPFAIL, Action.REJECT):
                log.info(
                    "filter verdict",
                    extra={"check": verdict.check, "hook": method, "action": verdict.action.value},
                )
                return verdict
            tags.extend(verdict.headers)
            junk = junk or verdict.action is Action.JUNK
        if junk:
            return Verdict(Action.JUNK, headers=tuple(tags))
        if tags:
            return Verdict(Action.TAG, headers=tuple(tags))
        return ACCEPT

    async def on_connect(self, session: SessionInfo) -> Verdict:
        return await self._run("on_connect", session)

    async def on_helo(self, session: SessionInfo, name: str) -> Verdict:
        return await self._run("on_helo", session, name)

    async def on_mail(self, session: SessionInfo, sender: str) -> Verdict:
        return await self._run("on_mail", session, sender)

    async def on_rcpt(self, session: SessionInfo, recipient: str) -> Verdict:
        return await self._run("on_rcpt", session, recipient)

    async def on_data(self, session: SessionInfo, message: bytes) -> Verdict:
        return await self._run("on_data", session, message)
