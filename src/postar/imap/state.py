"""The IMAP connection states and which commands each allows (RFC 9051 section 3 and 6).

This table is the one place that rejects a command out of state; the server asks `admit()`
before executing anything, and `after()` for the state a completed command leads to.
"""

from __future__ import annotations

from enum import Enum

from postar.imap import commands as c
from postar.imap.response import Status, Tagged


class State(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


# RFC 9051 6.1: valid in any state; RFC 2971 section 3.1: ID in any state.
_ANY: frozenset[type[c.Command]] = frozenset({c.Capability, c.Noop, c.Logout, c.Id})
# RFC 9051 6.2.
_NOT_AUTHENTICATED = _ANY | {c.StartTls, c.Authenticate, c.Login}
# RFC 9051 6.3, RFC 2177 IDLE, RFC 9208 quota, RFC 4978 COMPRESS (after authentication).
_AUTHENTICATED_COMMON = _ANY | {
    c.Select,
    c.Examine,
    c.Create,
    c.Delete,
    c.Rename,
    c.Subscribe,
    c.Unsubscribe,
    c.List,
    c.Lsub,
    c.Namespace,
    c.Status,
    c.Append,
    c.Idle,
    c.GetQuota,
    c.GetQuotaRoot,
    c.SetQuota,
    c.Compress,
}
# RFC 5161 section 3.1 / RFC 9051 6.3.1: ENABLE only before a mailbox is selected.
_AUTHENTICATED = _AUTHENTICATED_COMMON | {c.Enable}
# RFC 9051 6.4, RFC 3501 6.4.1 CHECK, RFC 6851 MOVE, RFC 5256 SORT/THREAD, RFC 3691 UNSELECT.
_SELECTED = _AUTHENTICATED_COMMON | {
    c.Check,
    c.Close,
    c.Unselect,
    c.Expunge,
    c.UidExpunge,
    c.Search,
    c.Fetch,
    c.Store,
    c.Copy,
    c.Move,
    c.Sort,
    c.Thread,
}

ALLOWED: dict[State, frozenset[type[c.Command]]] = {
    State.NOT_AUTHENTICATED: _NOT_AUTHENTICATED,
    State.AUTHENTICATED: _AUTHENTICATED,
    State.SELECTED: _SELECTED,
    State.LOGOUT: frozenset(),
}


def allowed(state: State, command: c.Command) -> bool:
    return type(command) in ALLOWED[state]


def admit(state: State, command: c.Command) -> Tagged | None:
    """None if `command` may run in `state`, else the BAD to answer (RFC 9051 section 3)."""
    if allowed(state, command):
        return None
    return Tagged(command.tag, Status.BAD, f"{command.name} not allowed in {state.value} state")


def after(state: State, command: c.Command, *, ok: bool) -> State:
    """The state once `command` has completed with OK (ok=True) or NO."""
    if isinstance(command, c.Logout):
        return State.LOGOUT
    if isinstance(command, c.Login | c.Authenticate):
        return State.AUTHENTICATED if ok else state
    if isinstance(command, c.Select):  # and Examine
        # RFC 9051 6.3.2: a failed SELECT leaves no mailbox selected.
        return State.SELECTED if ok else State.AUTHENTICATED
    if isinstance(command, c.Close | c.Unselect) and ok:
        return State.AUTHENTICATED
    return state
