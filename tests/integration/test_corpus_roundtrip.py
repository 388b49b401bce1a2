"""Every message of the SpamAssassin corpus, in by SMTP and out by POP3, byte for byte.

About 6,000 real messages from 2002: mbox "From " lines, 8-bit bytes, lines starting with ".",
lines of tens of kilobytes, messy MIME. The server may add its trace fields (Return-Path and
one Received, at the top) and nothing else: the rest must come back exactly as sent.

What is sent is each file in canonical CRLF form (CRLF, lone LF and lone CR all become CRLF),
as an MTA puts a Unix file on the wire, with a final CRLF if the file lacked one (SMTP DATA
ends with CRLF "." CRLF). Each message travels with the envelope sender corpus-<index>@..., so
the Return-Path of a retrieved message names its original even if its body were mangled.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.bulkmail import BulkPOP3, BulkSMTP
from tests.support.corpus import require_corpus
from tests.support.mailclients import ALICE, strip_trace
from tests.support.server import DOMAIN, PASSWORD, PostarServer

CONNECTIONS = 6  # parallel SMTP sessions
_LINE_END = re.compile(rb"\r\n|\r|\n")
_RETURN_PATH = re.compile(rb"^Return-Path: <corpus-(\d+)@remote\.test>\r\n")


def canonical(raw: bytes) -> bytes:
    message = _LINE_END.sub(b"\r\n", raw)
    return message if message.endswith(b"\r\n") else message + b"\r\n"


def _deliver_share(port: int, originals: list[bytes], first: int) -> int:
    client = BulkSMTP("127.0.0.1", port)
    sent = 0
    try:
        for index in range(first, len(originals), CONNECTIONS):
            client.send(f"corpus-{index}@remote.test", [ALICE], originals[index])
            sent += 1
    finally:
        client.close()
    return sent


def _describe(index: int, paths: list[Path], expected: bytes, got: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), None)
    if at is None:
        at = min(len(expected), len(got))
    return (
        f"{paths[index].parent.name}/{paths[index].name}: {len(got)} bytes back for "
        f"{len(expected)} sent, first difference at {at}: "
        f"sent {expected[at : at + 40]!r}, got {got[at : at + 40]!r}"
    )


def test_corpus_round_trip_byte_for_byte(tmp_path: Path) -> None:
    paths = require_corpus()
    originals = [canonical(p.read_bytes()) for p in paths]
    server = PostarServer(tmp_path, roles=("smtp", "pop3"))
    server.add_domain(DOMAIN)
    server.add_user(ALICE)
    server.start()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            shares = pool.map(
                lambda first: _deliver_share(server.ports["smtp"], originals, first),
                range(CONNECTIONS),
            )
            assert sum(shares) == len(originals)
        delivered = time.monotonic()

        returned: dict[int, bytes] = {}
        problems: list[str] = []
        pop = BulkPOP3("127.0.0.1", server.ports["pop3"], ALICE, PASSWORD)
        count = pop.stat()
        assert count == len(originals)
        for number, raw in pop.retrieve_all(count):
            fields, body = strip_trace(raw)
            match = _RETURN_PATH.match(raw)
            if match is None or len(fields) != 2 or not fields[1].startswith(b"Received: "):
                problems.append(f"message {number}: unexpected trace fields {fields!r}")
                continue
            index = int(match.group(1))
            if index in returned:
                problems.append(f"message {number}: corpus message {index} stored twice")
            returned[index] = body
        pop.quit()
        retrieved = time.monotonic()
    finally:
        code = server.stop()
    assert code == 0, server.log()[-3000:]

    for index, body in sorted(returned.items()):
        if body != originals[index]:
            problems.append(_describe(index, paths, originals[index], body))
    missing = sorted(set(range(len(originals))) - set(returned))
    problems += [f"{paths[i].parent.name}/{paths[i].name}: never came back" for i in missing]
    assert not problems, f"{len(problems)} messages differ:\n" + "\n".join(problems[:20])
    size = sum(len(m) for m in originals) / 1e6
    # Reported with -s or -rP: the time budget of this test is watched (brief: under 2 min).
    print(
        f"\ncorpus: {len(originals)} messages, {size:.1f} MB; SMTP in "
        f"{delivered - started:.1f}s over {CONNECTIONS} connections, "
        f"POP3 out {retrieved - delivered:.1f}s in one session"
    )
