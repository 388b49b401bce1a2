"""bench/run: install, start, measure, report. See bench/README.md."""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import corpus, install, report, sysinfo
from bench.load.memory import raise_nofile
from bench.runner import RUNNERS, Context
from bench.stats import build_rows, markdown_table
from bench.workloads import FULL, QUICK, TARGETS, WORKLOADS, parse_list

REPO = Path(__file__).resolve().parents[1]
_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _become_subreaper() -> None:
    # Dovecot and Postfix children orphaned at shutdown would otherwise be re-parented to a
    # pid 1 that, in containers, may never reap them; PR_SET_CHILD_SUBREAPER (36) makes them
    # ours, and os.waitpid below collects them.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Postar side by side with Dovecot and Postfix on this machine.",
    )
    p.add_argument("--quick", action="store_true", help="smaller counts, under 3 minutes")
    p.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"workloads, comma-separated (default all: {','.join(WORKLOADS)})",
    )
    p.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"targets, comma-separated (default all: {','.join(TARGETS)})",
    )
    p.add_argument("--rounds", type=int, help="override the plan's number of rounds")
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench" / "results",
        help="where result files go (default bench/results)",
    )
    p.add_argument(
        "--no-install",
        action="store_true",
        help="do not apt-get/pip install anything; fail if it is missing",
    )
    p.add_argument("--keep", action="store_true", help="keep the servers' temporary dirs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        workloads = parse_list(args.only, WORKLOADS, "workload")
        targets = parse_list(args.targets, TARGETS, "target")
    except ValueError as exc:
        print(f"bench/run: {exc}", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = type(plan)(**{**plan.__dict__, "rounds": max(1, args.rounds)})
    _become_subreaper()
    log(f"fd limit {raise_nofile()}")
    if not args.no_install:
        # smtp-source and smtp-sink come with the postfix package.
        if {"dovecot", "postfix"} & set(targets) or {"smtp", "outbound"} & set(workloads):
            install.ensure_debian_packages(log)
        install.ensure_matplotlib(log)
    messages = corpus.load()
    log(f"corpus: {len(messages)} messages from {corpus.source()}")
    machine = sysinfo.machine(str(REPO))
    machine_line = sysinfo.describe(machine)
    log(machine_line)
    started = dt.datetime.now(dt.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="postar-bench-run-"))
    ctx = Context(
        plan=plan, targets=targets, messages=messages, log=log, workdir=workdir, keep=args.keep
    )
    timings: dict[str, float] = {}
    try:
        for wl in workloads:
            t = time.monotonic()
            ctx.budget = plan.budget.get(wl, float("inf"))
            ctx.budget_started = False
            ctx.budget_end = float("inf")
            log(f"=== {wl} (budget {plan.budget.get(wl, 0):.0f} s) ===")
            try:
                RUNNERS[wl](ctx)
            except Exception as exc:
                traceback.print_exc()
                ctx.notes.append(f"{wl}: aborted: {type(exc).__name__}: {exc}"[:500])
            timings[wl] = time.monotonic() - t
            log(f"=== {wl} took {timings[wl]:.0f} s ===")
    finally:
        ctx.finish(list(ctx.live))
        _reap()
        shutil.rmtree(workdir, ignore_errors=True)
    rows = build_rows(ctx.measurements)
    if "postar" in targets and not any(r.postar for r in rows):
        ctx.notes.insert(0, "no Postar figures: the server did not start or answer (see above)")
    ctx.notes.append(
        "the machine is shared with other developers' test runs: treat small differences as noise"
    )
    total = time.monotonic() - _T0
    header = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "plan": plan.name,
        "seconds": round(total, 1),
        "workload_seconds": timings,
    }
    only = () if workloads == WORKLOADS else workloads
    name = report.stem(
        started.strftime("%Y-%m-%d-%H%M"), machine["versions"]["postar_commit"], plan.name, only
    )
    pngs = report.charts(args.out, name, rows)
    md = report.markdown(rows, machine_line, header, ctx.notes, [str(p) for p in pngs])
    payload = {
        "header": header,
        "machine": machine,
        "plan": plan.__dict__,
        "targets": targets,
        "workloads": workloads,
        "rows": rows,
        "measurements": ctx.measurements,
        "details": ctx.details,
        "notes": ctx.notes,
    }
    # LATEST.md (what the README quotes) is only ever a full run of every workload against
    # every target: a quick or partial run must not replace it.
    latest = not only and not args.quick and targets == TARGETS
    json_path, md_path = report.write(args.out, name, payload, md, latest=latest)
    print()
    print(f"Machine: {machine_line}")
    print()
    print(markdown_table(rows))
    print()
    for n in ctx.notes:
        print(f"note: {n}")
    for r in rows:
        for n in r.notes:
            print(f"note: {r.workload} / {r.metric}: {n}")
    print(f"\nwrote {json_path}, {md_path} and {len(pngs)} charts in {total:.0f} s")
    return 0
