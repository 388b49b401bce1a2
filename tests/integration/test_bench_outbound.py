"""The bench's outbound workload against Postar alone, small: queue, park, flush, count at
smtp-sink (bench/load/outbound.py). Needs smtp-source and smtp-sink (Debian's postfix package)
and root (smtp-sink drops to nobody after binding); skipped without them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ lives at the repository root, beside src/
    sys.path.insert(0, str(REPO))

from bench.load import outbound  # noqa: E402
from bench.targets.base import USERS, free_port  # noqa: E402
from bench.targets.postar import Postar, outbound_config  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (shutil.which("smtp-sink") and shutil.which("smtp-source")) or os.geteuid() != 0,
        reason="needs smtp-sink and smtp-source (postfix package) and root",
    ),
]


def test_outbound_round_against_postar(tmp_path: Path) -> None:
    message = tmp_path / "message.eml"
    body = "".join(f"line {i} of a small message\n" for i in range(40))
    message.write_text(f"From: sender@client.test\nSubject: bench\n\n{body}")
    port = free_port()
    target = Postar(
        roles=("smtp",), users=USERS[:1], extra_config=outbound_config(outbound.DOMAIN, port, 20)
    )
    target.start()
    try:
        result = outbound.run_round(target, port, 100, message, 60.0, tmp_path)
        assert target.queue_state() == (0, 0)
    finally:
        target.cleanup()
    # Every message once: no shortfall, no duplicate (a tiny run may all land within one
    # look at the sink's counter, which gives no rate: fine for a smoke test).
    assert result.delivered == 100, result.note
    assert result.first_seconds is not None
    assert result.per_s is None or result.per_s > 0
