"""Structured log events for the network layer, on the stdlib logging module.

Each record carries ``event`` (a name from a fixed vocabulary, e.g. ``conn.open``), ``conn_id``
and ``fields`` as attributes, so a JSON formatter can emit them as-is, while the plain message
stays readable ("conn.open conn=1a2b3c4d role=smtp peer=192.0.2.1:5123").
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("postar.net")


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
    parts = [event]
    if conn_id is not None:
        parts.append(f"conn={conn_id}")
    parts.extend(f"{key}={value}" for key, value in fields.items())
    logger.log(
        level,
        "%s",
        " ".join(parts),
        exc_info=exc_info,
        extra={"event": event, "conn_id": conn_id, "fields": fields},
    )
