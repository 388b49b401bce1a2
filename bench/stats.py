"""Statistics over rounds and the side-by-side table. Pure: no I/O, so it is unit-tested."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Summary:
    """One metric of one target over several rounds."""

    median: float
    low: float  # smallest round
    high: float  # largest round
    rounds: int

    @property
    def spread(self) -> float:
        """(high - low) / median: with 2 to 5 rounds a range says more than a deviation."""
        if self.rounds < 2 or self.median == 0:
            return 0.0
        return (self.high - self.low) / abs(self.median)

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary | None:
        vals = [float(v) for v in values]
        if not vals:
            return None
        return cls(statistics.median(vals), min(vals), max(vals), len(vals))


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (no interpolation: a latency that
    was actually observed is easier to reason about than a blend of two)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return float(sorted_values[rank - 1])


@dataclass
class Measurement:
    """All rounds of one metric for one target, with free-form notes (saturation, shortfalls)."""

    workload: str
    metric: str
    unit: str
    higher_is_better: bool
    target: str
    values: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> Summary | None:
        return Summary.of(self.values)


@dataclass
class Row:
    workload: str
    metric: str
    unit: str
    higher_is_better: bool
    postar: Summary | None
    reference_name: str
    reference: Summary | None
    notes: list[str]

    @property
    def ratio(self) -> float | None:
        """Postar / reference medians. Whether above 1 is good depends on higher_is_better."""
        if self.postar is None or self.reference is None or self.reference.median == 0:
            return None
        return self.postar.median / self.reference.median

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def build_rows(measurements: Sequence[Measurement]) -> list[Row]:
    """Pair each metric's Postar measurement with the reference measured for it (Dovecot,
    Postfix or the smtp-sink ceiling), keeping the order in which metrics were first seen."""
    order: list[tuple[str, str]] = []
    by_key: dict[tuple[str, str], dict[str, Measurement]] = {}
    for m in measurements:
        key = (m.workload, m.metric)
        if key not in by_key:
            order.append(key)
            by_key[key] = {}
        by_key[key][m.target] = m
    rows: list[Row] = []
    for key in order:
        per_target = by_key[key]
        first = next(iter(per_target.values()))
        postar = per_target.get("postar")
        refs = [t for t in per_target if t != "postar"]
        ref = per_target[refs[0]] if refs else None
        notes = [f"{t}: {n}" for t, m in per_target.items() for n in m.notes]
        rows.append(
            Row(
                workload=key[0],
                metric=key[1],
                unit=first.unit,
                higher_is_better=first.higher_is_better,
                postar=postar.summary() if postar else None,
                reference_name=refs[0] if refs else "-",
                reference=ref.summary() if ref else None,
                notes=notes,
            )
        )
    return rows


def fmt_value(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def fmt_summary(s: Summary | None) -> str:
    if s is None:
        return "—"
    if s.rounds < 2:
        return fmt_value(s.median)
    return f"{fmt_value(s.median)} ±{s.spread * 50:.0f}%"  # half the range, as ± around median


def markdown_table(rows: Sequence[Row]) -> str:
    """One table for every workload; the ratio column says whether Postar is ahead."""
    lines = [
        "| workload | metric | unit | Postar | reference | reference value | Postar/ref | |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for r in rows:
        ratio = r.ratio
        if ratio is None:
            ratio_s, verdict = "—", ""
        else:
            ratio_s = f"{ratio:.2f}"
            better = ratio >= 1 if r.higher_is_better else ratio <= 1
            verdict = "better" if better else "worse"
        lines.append(
            f"| {r.workload} | {r.metric} | {r.unit} | {fmt_summary(r.postar)} | "
            f"{r.reference_name} | {fmt_summary(r.reference)} | {ratio_s} | {verdict} |"
        )
    return "\n".join(lines)
