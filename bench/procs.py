"""Process trees of the servers under test: their resident memory and CPU time, read from /proc.

Dovecot and Postfix run many processes, Postar one (or a few): each figure is summed over the
whole tree under the server's master pid, so the comparison is per server, not per process.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # exited while we looked
        # The command name is in parentheses and may hold spaces: split after the last ')'.
        fields = stat[stat.rindex(b")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids


def tree(root: int) -> list[int]:
    """root and all its descendants still alive."""
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if os.path.exists(f"/proc/{pid}"):
            out.append(pid)
            todo.extend(kids.get(pid, []))
    return out


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes, summed: shared pages (libraries) counted once per process
    pss: int  # bytes, proportional set size: shared pages split between sharers
    processes: int


def memory(root: int) -> Memory:
    """RSS is what the task asks for; PSS is printed beside it because summing RSS over
    thousands of forked Dovecot processes counts every shared library page thousands of times."""
    rss = pss = n = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            n += 1
        except OSError:
            continue
    return Memory(rss, pss, n)


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of these processes and their reaped children."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        f = stat[stat.rindex(b")") + 2 :].split()
        # utime, stime, cutime, cstime are fields 14-17 of stat(5); index 11.. after the name
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / _CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    return cpu_seconds(tree(root))


def stop_tree(root: int, timeout: float = 10.0) -> None:
    """SIGTERM the master (it stops its own children), then SIGKILL whatever of the tree is
    left after the timeout. Only pids we started or read from our own pid files get here."""
    pids = tree(root)
    if not pids:
        return
    try:
        os.kill(root, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(root, os.WNOHANG)  # reap it if it is our child
        except ChildProcessError:
            pass
        if not any(os.path.exists(f"/proc/{p}") and not _zombie(p) for p in pids):
            return
        time.sleep(0.1)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    return stat[stat.rindex(b")") + 2 :][:1] == b"Z"
