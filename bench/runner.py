"""Each workload against each selected target, in turn, round by round.

Targets of a workload run side by side and are measured alternately (round 1 on Postar, round 1
on the reference, round 2 ...), so slow drift in the machine's load (it is shared) spreads over
both instead of favouring whichever ran first. A target that fails to start is noted and the
others still run.
"""

from __future__ import annotations

import imaplib
import poplib
import queue
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import corpus
from bench.load import imap as imap_load
from bench.load import large as large_load
from bench.load import memory as memory_load
from bench.load import outbound as outbound_load
from bench.load import pop3 as pop3_load
from bench.load import smtp as smtp_load
from bench.load.seed import seed
from bench.stats import Measurement
from bench.targets.base import PASSWORD, USERS, Target, TargetError, free_port
from bench.targets.dovecot import Dovecot
from bench.targets.postar import Postar, outbound_config
from bench.targets.postfix import Postfix, SmtpSink, outbound_main_cf
from bench.workloads import Plan

Log = Callable[[str], None]

# What a misbehaving server can cause: the target is dropped from the workload with a note,
# the others go on. Anything else is a bug in the bench and stops the workload.
RECOVERABLE: tuple[type[BaseException], ...] = (
    OSError,  # connection refused or reset, socket timeouts
    EOFError,
    RuntimeError,  # ImapError, TargetError, ...
    queue.Empty,  # a load process that never reported
    poplib.error_proto,
    smtplib.SMTPException,
    imaplib.IMAP4.error,
    ValueError,  # an answer we could not parse
)


@dataclass
class Context:
    plan: Plan
    targets: tuple[str, ...]
    messages: list[corpus.Message]
    log: Log
    workdir: Path
    keep: bool = False
    measurements: list[Measurement] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    live: list[Target] = field(default_factory=list)
    failed: set[int] = field(default_factory=set)  # id() of targets dropped mid-workload
    budget_end: float = float("inf")  # time.monotonic() at which the current workload is over
    budget: float = float("inf")  # seconds for the current workload, from its first start
    budget_started: bool = False
    _round_t0: float = 0.0

    def remaining(self) -> float:
        return self.budget_end - time.monotonic()

    def bounded(self, seconds: float, share: int = 1) -> float:
        """A deadline of at most `seconds`, and at most 1/share of the budget left."""
        return max(1.0, min(seconds, self.remaining() / max(1, share)))

    def more_rounds(self, workload: str, rnd: int) -> bool:
        """Whether round `rnd` (0-based) still fits, judged by how long the last one took;
        if not, say so once."""
        now = time.monotonic()
        last = now - self._round_t0
        if rnd == 0 or self.remaining() >= last:
            self._round_t0 = now
            return True
        self.notes.append(
            f"{workload}: rounds {rnd + 1}+ skipped, the workload's time budget was spent"
        )
        return False

    def ok(self, targets: list[Target]) -> list[Target]:
        return [t for t in targets if id(t) not in self.failed]

    def guard(self, workload: str, t: Target, fn: Callable[[], Any]) -> Any:
        """fn() for one target; a server-side failure drops that target with a note."""
        try:
            return fn()
        except RECOVERABLE as exc:
            self.failed.add(id(t))
            msg = f"{t.name} dropped: {type(exc).__name__}: {str(exc).strip()[:300]}"
            self.log(f"{workload}: {msg}")
            self.notes.append(f"{workload}: {msg}")
            return None

    def add(
        self,
        workload: str,
        metric: str,
        unit: str,
        higher: bool,
        target: str,
        value: float | None,
        note: str = "",
    ) -> None:
        m = next(
            (
                x
                for x in self.measurements
                if (x.workload, x.metric, x.target) == (workload, metric, target)
            ),
            None,
        )
        if m is None:
            m = Measurement(workload, metric, unit, higher, target)
            self.measurements.append(m)
        if value is not None and value == value:  # skip NaN
            m.values.append(value)
        if note and note not in m.notes:
            m.notes.append(note)

    def start(self, workload: str, factories: dict[str, Callable[[], Target]]) -> list[Target]:
        """Start the selected targets; a failure becomes a note, not an abort."""
        started = []
        for name, make in factories.items():
            if name not in self.targets and name != "smtp-sink":
                continue
            t = make()
            self.live.append(t)
            try:
                self.log(f"{workload}: starting {t.name}")
                t.start()
                started.append(t)
            except (TargetError, OSError) as exc:
                # The first line says what failed, the last (a log's) usually why.
                lines = [x.strip() for x in str(exc).strip().splitlines() if x.strip()]
                why = f" ({lines[-1][:300]})" if len(lines) > 1 else ""
                msg = f"{t.name} did not start: {lines[0][:300] if lines else exc!r}{why}"
                self.log(f"{workload}: {msg}")
                self.notes.append(f"{workload}: {msg}")
                self.finish([t])
        # The budget runs from when the first servers are up: a slow start (a server that
        # never listens waits out its own bounded start deadline) must not eat the rounds.
        if not self.budget_started:
            self.budget_started = True
            self.budget_end = time.monotonic() + self.budget
        return started

    def finish(self, targets: list[Target]) -> None:
        for t in targets:
            if self.keep:
                t.stop()
                self.log(f"kept {t.workdir}")
            else:
                t.cleanup()
            if t in self.live:
                self.live.remove(t)


def _data(msgs: list[corpus.Message]) -> list[bytes]:
    return [m.data for m in msgs]


def run_smtp(ctx: Context) -> None:
    plan = ctx.plan
    files: dict[int, Path] = {}
    for case in plan.smtp_cases:
        if case.size not in files:
            msg = corpus.nearest(ctx.messages, case.size)
            path = ctx.workdir / f"smtp-{case.size}.eml"
            # smtp-source -F appends CRLF to each line itself: give it LF endings.
            path.write_bytes(msg.data.replace(b"\r\n", b"\n"))
            files[case.size] = path
            ctx.details.setdefault("smtp", {})[f"message_{case.size}"] = {
                "corpus_file": msg.name,
                "bytes": len(msg.data),
            }
    targets = ctx.start(
        "smtp",
        {
            "postar": lambda: Postar(
                roles=("smtp", "imap"), fallback_roles=(("smtp", "pop3"),), users=USERS[:1]
            ),
            "postfix": Postfix,
            "smtp-sink": SmtpSink,
        },
    )
    try:
        counters = {}
        for t in targets:
            counters[t.name] = ctx.guard("smtp", t, lambda t=t: smtp_load.Counter(t))
        for rnd in range(plan.rounds):
            if not ctx.more_rounds("smtp", rnd):
                break
            for case in plan.smtp_cases:
                for t in ctx.ok(targets):
                    r = ctx.guard(
                        "smtp",
                        t,
                        lambda t=t, case=case, rnd=rnd: smtp_load.run_case(
                            t,
                            case,
                            files[case.size],
                            # round 1 always gets the plan's deadlines: figures
                            # cut short by a budget would be no figures at all
                            plan.smtp_deadline if rnd == 0 else ctx.bounded(plan.smtp_deadline),
                            counters[t.name],
                        ),
                    )
                    if r is None:
                        continue
                    ctx.log(
                        f"smtp round {rnd + 1} {t.name} {case.label}: "
                        f"accepted {r.accepted_per_s:.0f}/s delivered "
                        f"{'-' if r.delivered_per_s is None else f'{r.delivered_per_s:.0f}'}/s"
                        f" {r.note}"
                    )
                    if t.name == "smtp-sink":
                        ctx.add(
                            "smtp",
                            f"accept-only ceiling, {case.label}",
                            "msg/s",
                            True,
                            t.name,
                            r.accepted_per_s,
                            r.note,
                        )
                        continue
                    ctx.add(
                        "smtp",
                        f"delivered, {case.label}",
                        "msg/s",
                        True,
                        t.name,
                        r.delivered_per_s,
                        r.note,
                    )
                    ctx.add(
                        "smtp", f"accepted, {case.label}", "msg/s", True, t.name, r.accepted_per_s
                    )
        for c in counters.values():
            if c is not None:
                c.close()
    finally:
        ctx.finish(targets)


def run_imap(ctx: Context) -> None:
    plan = ctx.plan
    users = USERS[2 : 2 + plan.imap_processes]
    mailbox = _data(corpus.mailbox_set(ctx.messages, plan.imap_seed))
    appends = _data(corpus.mailbox_set(ctx.messages[1000:], 50))
    targets = ctx.start(
        "imap", {"postar": lambda: Postar(roles=("imap",), users=users), "dovecot": Dovecot}
    )
    try:
        for t in targets:
            for u in users:
                got = ctx.guard(
                    "imap", t, lambda t=t, u=u: seed(t, u, mailbox, seconds=ctx.bounded(120, 4))
                )
                if got is None:
                    break
                n, secs = got
                ctx.log(f"imap: seeded {t.name} {u} with {n} messages in {secs:.1f} s")
                if n < len(mailbox):
                    ctx.notes.append(f"imap: {t.name} took only {n}/{len(mailbox)} seed messages")
        for rnd in range(plan.rounds):
            if not ctx.more_rounds("imap", rnd):
                break
            for t in ctx.ok(targets):
                r = ctx.guard(
                    "imap",
                    t,
                    lambda t=t, rnd=rnd: imap_load.run_round(
                        t.ports["imap"],
                        users,
                        PASSWORD,
                        plan.imap_clients,
                        plan.imap_seconds,
                        plan.imap_seed,
                        appends,
                        t.cpu_seconds,
                        rnd,
                    ),
                )
                if r is None:
                    continue
                gen = ", ".join(f"{u:.0%}" for u in r.generator_cpu)
                ctx.log(
                    f"imap round {rnd + 1} {t.name}: {r.ops_per_s:.0f} ops/s, generator "
                    f"CPU {gen}, errors {r.errors or 0} {r.first_error}"
                )
                note = ""
                if r.saturated:
                    note = f"load generator saturated (CPU {gen} of a core per process)"
                if r.errors:
                    note += ("; " if note else "") + f"errors {r.errors}: {r.first_error}"
                ctx.add("imap", "mixed workload", "ops/s", True, t.name, r.ops_per_s, note)
                ctx.add(
                    "imap", "server CPU per operation", "ms", False, t.name, r.server_cpu_ms_per_op
                )
                ctx.add(
                    "imap",
                    "load generator CPU (max process)",
                    "% of a core",
                    False,
                    t.name,
                    100 * max(r.generator_cpu, default=0.0),
                )
                for op, s in r.per_command.items():
                    ctx.add("imap", f"{op} p50", "ms", False, t.name, s["p50"])
                    ctx.add("imap", f"{op} p99", "ms", False, t.name, s["p99"])
                ctx.details.setdefault("imap", {}).setdefault(t.name, []).append(r.__dict__)
    finally:
        ctx.finish(targets)


def run_pop3(ctx: Context) -> None:
    plan = ctx.plan
    mailbox = _data(corpus.mailbox_set(ctx.messages, plan.pop3_messages))
    targets = ctx.start(
        "pop3",
        {
            "postar": lambda: Postar(
                roles=("imap", "pop3"), fallback_roles=(("smtp", "pop3"),), users=USERS[:1]
            ),
            "dovecot": Dovecot,
        },
    )
    try:
        for t in targets:
            got = ctx.guard(
                "pop3", t, lambda t=t: seed(t, USERS[0], mailbox, seconds=ctx.bounded(180, 2))
            )
            if got is None:
                continue
            n, secs = got
            ctx.log(f"pop3: seeded {t.name} with {n} messages in {secs:.1f} s")
            if n < len(mailbox):
                ctx.notes.append(f"pop3: {t.name} took only {n}/{len(mailbox)} messages")
        # One download is short (well under a tenth of a second), and a loaded machine moves
        # single rounds by a third: many more rounds for a steadier median.
        for rnd in range(3 * plan.rounds + 2):
            if not ctx.more_rounds("pop3", rnd):
                break
            for t in ctx.ok(targets):
                r = ctx.guard(
                    "pop3",
                    t,
                    lambda t=t: pop3_load.download(t.ports["pop3"], USERS[0], PASSWORD, 60),
                )
                if r is None:
                    continue
                ctx.log(
                    f"pop3 round {rnd + 1} {t.name}: {r.messages} messages, "
                    f"{r.bytes / 1e6:.1f} MB, {r.mb_per_s:.1f} MB/s {r.note}"
                )
                ctx.add(
                    "pop3",
                    f"download {len(mailbox)} messages",
                    "MB/s",
                    True,
                    t.name,
                    r.mb_per_s,
                    r.note,
                )
    finally:
        ctx.finish(targets)


def run_memory(ctx: Context) -> None:
    plan = ctx.plan
    most = max(plan.memory_steps)
    factories: dict[str, Callable[[], Target]] = {
        "postar": lambda: Postar(roles=("imap",), max_connections=most, users=USERS[2:]),
        # SCRAM keys in the passdb: 10,000 logins without 10,000 argon2 hashes (see memory.py).
        "dovecot": lambda: Dovecot(scheme="SCRAM-SHA-256", max_connections=most),
    }
    # One target at a time: thousands of Dovecot processes beside a loaded Postar would
    # measure each other's memory pressure.
    chosen = [n for n in factories if n in ctx.targets]
    for i, name in enumerate(chosen):
        share = len(chosen) - i  # targets still to measure split what is left of the budget
        targets = ctx.start("memory", {name: factories[name]})
        try:
            for t in targets:
                steps = ctx.guard(
                    "memory",
                    t,
                    lambda t=t, share=share: memory_load.run(
                        t,
                        USERS[2:],
                        plan.memory_steps,
                        ctx.bounded(plan.memory_deadline, share),
                    ),
                )
                for s in steps or []:
                    ctx.log(
                        f"memory {t.name}: {s.connections}/{s.wanted} IDLE connections "
                        f"({s.auth}) in {s.seconds:.1f} s, RSS +{s.rss_per_conn / 1024:.0f} "
                        f"KB/conn, PSS +{s.pss_per_conn / 1024:.0f} KB/conn, "
                        f"{s.total.processes} processes, errors {s.errors} {s.first_error}"
                    )
                    note = (
                        ""
                        if s.connections >= s.wanted
                        else (
                            f"only {s.connections}/{s.wanted} connections by the deadline"
                            + (f" ({s.first_error})" if s.first_error else "")
                        )
                    )
                    at = f"@{s.wanted:,}"
                    ctx.add(
                        "memory",
                        f"RSS per idle IDLE connection {at}",
                        "KB",
                        False,
                        t.name,
                        s.rss_per_conn / 1024,
                        note,
                    )
                    ctx.add(
                        "memory",
                        f"PSS per idle IDLE connection {at}",
                        "KB",
                        False,
                        t.name,
                        s.pss_per_conn / 1024,
                    )
                    ctx.add(
                        "memory",
                        f"server RSS total {at}",
                        "MB",
                        False,
                        t.name,
                        s.total.rss / 2**20,
                        f"{s.total.processes} processes",
                    )
                    ctx.add(
                        "memory",
                        f"connect+login+IDLE rate {at}",
                        "conn/s",
                        True,
                        t.name,
                        s.connections / s.seconds if s.seconds else None,
                        f"auth {s.auth}",
                    )
                    ctx.details.setdefault("memory", {}).setdefault(t.name, []).append(s)
        finally:
            ctx.finish(targets)


def run_large(ctx: Context) -> None:
    plan = ctx.plan
    small = [m for m in ctx.messages if len(m.data) <= 8192]
    want = plan.large_messages
    loaded: dict[str, int] = {}
    # Postar first: if its APPEND load falls short of the count by the deadline, Dovecot gets
    # the same number of messages, so both answer over the same mailbox size.
    order = [n for n in ("postar", "dovecot") if n in ctx.targets]
    for i, name in enumerate(order):
        share = len(order) - i
        count = min([want, *loaded.values()])
        msgs = [small[i % len(small)].data for i in range(count)]
        make: Callable[[], Target] = (
            (lambda: Postar(roles=("imap",), users=USERS[1:2])) if name == "postar" else Dovecot
        )
        targets = ctx.start("large", {name: make})
        try:
            for t in targets:
                t0 = time.monotonic()
                got = ctx.guard(
                    "large",
                    t,
                    lambda t=t, msgs=msgs, share=share: seed(
                        t,
                        USERS[1],
                        msgs,
                        # Postar's APPEND load is the slow part: it gets what is
                        # left but ~90 s kept for its queries and Dovecot's turn.
                        seconds=max(
                            10.0,
                            min(plan.large_load_deadline, ctx.remaining() - 90 * (share - 1) - 30),
                        ),
                        connections=4,
                    ),
                )
                if got is None:
                    continue
                n, secs = got
                loaded[name] = n
                how = t.seed_how if t.direct_seed else "IMAP APPEND, 4 connections"
                ctx.log(f"large: loaded {n} messages into {t.name} in {secs:.1f} s ({how})")
                ctx.add(
                    "large",
                    "bulk load",
                    "msg/s",
                    True,
                    t.name,
                    n / secs if secs else None,
                    f"{n:,} messages in {secs:.0f} s by {how}",
                )
                r = ctx.guard(
                    "large",
                    t,
                    lambda t=t, share=share: large_load.run(
                        t.ports["imap"],
                        USERS[1],
                        plan.rounds,
                        # Per command: a quarter of what is left (half of it per target).
                        # Most commands take a fraction of that; what matters is that one
                        # slow first SELECT after a long load still gets a figure.
                        ctx.bounded(plan.large_deadline, share * 2),
                    ),
                )
                if r is None:
                    continue
                ctx.log(
                    f"large {t.name}: {r.exists} messages, first SELECT "
                    f"{r.first_select_s:.2f} s, FETCH {r.fetch_s}, SEARCH {r.search_s} "
                    f"({r.search_hits} hits) [{time.monotonic() - t0:.0f} s]"
                )
                size = f"{r.exists:,} messages"
                ctx.add("large", "first SELECT", "s", False, t.name, r.first_select_s, size)
                for v in r.fetch_s:
                    ctx.add("large", "FETCH 1:* (UID FLAGS)", "s", False, t.name, v, size)
                for v in r.search_s:
                    ctx.add(
                        "large",
                        f'SEARCH TEXT "{large_load.NEEDLE}"',
                        "s",
                        False,
                        t.name,
                        v,
                        f"{size}, {r.search_hits} hits",
                    )
        finally:
            ctx.finish(targets)


def run_outbound(ctx: Context) -> None:
    plan = ctx.plan
    n, conns = plan.outbound_messages, plan.outbound_connections
    msg = corpus.nearest(ctx.messages, 4 * 1024)
    path = ctx.workdir / "outbound-4096.eml"
    path.write_bytes(msg.data.replace(b"\r\n", b"\n"))  # smtp-source -F adds the CRs
    ctx.details["outbound"] = {"corpus_file": msg.name, "bytes": len(msg.data), "messages": n}
    # Each server routes the remote domain to its own port, where the parking sink and then
    # the counting sink listen in turn.
    routes = {"postar": free_port(), "postfix": free_port()}
    domain = outbound_load.DOMAIN
    targets = ctx.start(
        "outbound",
        {
            "postar": lambda: Postar(
                roles=("smtp",),
                users=USERS[:1],
                extra_config=outbound_config(domain, routes["postar"], conns),
            ),
            "postfix": lambda: Postfix(outbound_main_cf(domain, routes["postfix"], conns)),
        },
    )
    label = f"queue to smtp-sink, {conns} connections, 4 KB"
    try:
        for rnd in range(plan.rounds):
            if not ctx.more_rounds("outbound", rnd):
                break
            for t in ctx.ok(targets):
                r = ctx.guard(
                    "outbound",
                    t,
                    lambda t=t, rnd=rnd: outbound_load.run_round(
                        t,  # type: ignore[arg-type]
                        routes[t.name],
                        n,
                        path,
                        plan.outbound_deadline if rnd == 0 else ctx.bounded(plan.outbound_deadline),
                        ctx.workdir,
                    ),
                )
                if r is None:
                    continue
                first = "-" if r.first_seconds is None else f"{r.first_seconds:.2f} s"
                ctx.log(
                    f"outbound round {rnd + 1} {t.name}: {r.delivered}/{n}, first to last in "
                    f"{r.seconds:.2f} s = {r.per_s or 0:.0f} msg/s; flush to first message "
                    f"{first}; CPU {r.cpu_ms_per_message or 0:.2f} ms/msg; queued and parked in "
                    f"{r.fill_seconds:.1f} s {r.note}"
                )
                ctx.add("outbound", f"delivered, {label}", "msg/s", True, t.name, r.per_s, r.note)
                ctx.add(
                    "outbound",
                    "server CPU per message (flush to empty queue)",
                    "ms",
                    False,
                    t.name,
                    r.cpu_ms_per_message,
                    "every process of the server: Postfix's master, qmgr, smtp, ...",
                )
                ctx.add(
                    "outbound",
                    "flush command started -> first message at the sink",
                    "s",
                    False,
                    t.name,
                    r.first_seconds,
                    "includes the command's own start: C (postqueue) or Python (postar)",
                )
                ctx.details["outbound"].setdefault(t.name, []).append(r.__dict__)
    finally:
        ctx.finish(targets)


RUNNERS: dict[str, Callable[[Context], None]] = {
    "smtp": run_smtp,
    "imap": run_imap,
    "pop3": run_pop3,
    "memory": run_memory,
    "large": run_large,
    "outbound": run_outbound,
}
