"""Result files: JSON (everything), Markdown (the table and the machine), a PNG per workload.

Names carry the date and the commit, e.g. results/2026-11-27-0a1b2c3-quick.json, and
results/LATEST.md is overwritten with the newest table so the README can link to it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stats import Row, markdown_table


def stem(when: str, commit: str, plan: str, only: tuple[str, ...] = ()) -> str:
    """'2026-11-27-1405-0a1b2c3[-quick][-only-smtp-pop3]': sorts by time, names the code."""
    name = f"{when}-{commit}"
    if plan != "full":
        name += f"-{plan}"
    if only:
        name += "-only-" + "-".join(only)
    return name


def markdown(
    rows: Sequence[Row],
    machine_line: str,
    header: dict[str, Any],
    notes: Sequence[str],
    charts: Sequence[str],
) -> str:
    out = [
        f"# Postar benchmark, {header['started']} ({header['plan']} run)",
        "",
        f"Machine: {machine_line}",
        "",
        "Medians over rounds; ± is half the range between the lowest and highest round, as a "
        "percentage of the median. Postar/ref is the ratio of medians; the last column says "
        "whether that ratio is in Postar's favour (higher is better for rates, lower for "
        "times, latencies and memory).",
        "",
        markdown_table(rows),
        "",
    ]
    row_notes = [f"- {r.workload} / {r.metric}: {n}" for r in rows for n in r.notes]
    if notes or row_notes:
        out += ["## Notes", "", *[f"- {n}" for n in notes], *row_notes, ""]
    if charts:
        out += ["## Charts", "", *[f"![{Path(c).stem}]({Path(c).name})" for c in charts], ""]
    return "\n".join(out)


def write(
    out_dir: Path, name: str, payload: dict[str, Any], md: str, latest: bool = True
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{name}.json"
    md_path = out_dir / f"{name}.md"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    tmp.replace(json_path)
    md_path.write_text(md + "\n")
    if latest:  # only a run of every workload stands for "the latest figures"
        (out_dir / "LATEST.md").write_text(_relink(md, name) + "\n")
    return json_path, md_path


def _relink(md: str, name: str) -> str:
    # LATEST.md sits beside the charts too, so links stay valid; say which run it copies.
    return md.replace("\n", f"\n\nCopied from {name}.md.\n", 1)


def _json_default(o: Any) -> Any:
    if hasattr(o, "to_json"):
        return o.to_json()
    if hasattr(o, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def charts(out_dir: Path, name: str, rows: Sequence[Row]) -> list[Path]:
    """One PNG per workload: a small panel per metric, a bar per target with its range."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display here
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made: list[Path] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    workloads = list(dict.fromkeys(r.workload for r in rows))
    for wl in workloads:
        wrows = [r for r in rows if r.workload == wl and (r.postar or r.reference)]
        if not wrows:
            continue
        ncols = min(4, len(wrows))
        nrows = math.ceil(len(wrows) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
        for ax, r in zip(axes.flat, wrows, strict=False):
            labels, meds, lo, hi, colors = [], [], [], [], []
            for label, s, color in (
                ("postar", r.postar, "#3b7dd8"),
                (r.reference_name, r.reference, "#999999"),
            ):
                if s is None:
                    continue
                labels.append(label)
                meds.append(s.median)
                lo.append(s.median - s.low)
                hi.append(s.high - s.median)
                colors.append(color)
            ax.bar(labels, meds, yerr=[lo, hi], color=colors, capsize=4)
            title = r.metric if len(r.metric) < 38 else r.metric[:36] + "…"
            ratio = f"  (x{r.ratio:.2f})" if r.ratio is not None else ""
            ax.set_title(f"{title}{ratio}", fontsize=8)
            ax.set_ylabel(r.unit, fontsize=7)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(wrows) :]:
            ax.axis("off")
        fig.suptitle(f"{wl}: median of rounds, bars show the range", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{name}-{wl}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made.append(path)
    return made
