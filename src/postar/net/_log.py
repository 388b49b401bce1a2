"""Structured log events for the network layer, on the stdlib logging module.

Each record's message is the event name from a fixed vocabulary (e.g. ``conn.open``); the
connection id and the fields are record attributes, printed by postar.log as key=value:
"conn.open conn=1a2b3c4d role=smtp peer=192.0.2.1:5123".
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("postar.net")
# LogRecord attributes a field must not overwrite (logging raises KeyError on them).
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def log_event(
    level: int,
    event: str,
    conn_id: str | None = None,
    *,
    exc_info: bool = False,
    **fields: Any,
) -> None:
    if not logger.isEnabledFor(level):
        return
    # The message is the event name; conn and fields travel as record attributes, which
    # postar.log's formatter prints as key=value (one convention for every package).
    extra: dict[str, Any] = {"conn": conn_id} if conn_id is not None else {}
    for key, value in fields.items():
        extra[key if key not in _RESERVED else f"{key}_"] = value
    logger.log(level, event, exc_info=exc_info, extra=extra)
