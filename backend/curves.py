"""Label-efficiency curves: quality against labels, annotation cost and annotation time.

Pure functions over recorded rounds (the ``metrics`` of each round, see
``backend.services.rounds.curve_point``): no database, no web. A *run* is one sequence of
rounds (one project, or one strategy and seed of a simulation); runs of one strategy are
drawn as a mean line with a band from their minimum to their maximum (the seed band).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

METRICS = ("image_ap", "image_auroc", "image_f1", "pixel_aupro", "pixel_ap")
X_AXES = {
    "labels": "labels (images answered)",
    "cost": "annotation cost (units)",
    "annotation_seconds": "annotation time (s)",
}
TARGETS = (0.95, 0.99)
AUDIT_KEYS = ("flip_rate", "mask_answers", "mask_iou_mean", "masks_accepted", "masks_edited", "masks_drawn")
ROW_KEYS = (
    "round",
    "regime",
    "strategy",
    "ask",
    "labels",
    "normal",
    "image_labels",
    "mask_labels",
    "cost",
    "cost_model",
    "annotation_seconds",
    *AUDIT_KEYS,
)


@dataclass(frozen=True)
class Run:
    """One sequence of rounds; ``points`` are round records in round order."""

    name: str
    strategy: str
    seed: int | None
    points: list[dict[str, Any]]
    reference: dict[str, float] = field(default_factory=dict)  # full-supervision metrics, when known


def point_row(p: dict[str, Any]) -> dict[str, Any]:
    """The flat values of one round record: x axes, metrics, regime and the audit. A row
    this function made (as ``curves.json`` stores them) reads back as itself."""
    if "labels" in p and not isinstance(p["labels"], dict):
        return {k: p.get(k) for k in (*ROW_KEYS, *METRICS)}
    audit = p.get("audit") or {}
    labels = p.get("labels") or {}
    row = {
        "round": p.get("round"),
        "regime": p.get("regime"),
        "strategy": p.get("strategy"),
        "ask": p.get("ask"),
        "labels": labels.get("total", 0),
        "normal": labels.get("normal", 0),
        "image_labels": labels.get("image", 0),
        "mask_labels": labels.get("mask", 0),
        "cost": p.get("cost", 0.0),
        "cost_model": p.get("cost_model", "flat"),
        "annotation_seconds": p.get("annotation_seconds", 0.0),
        **{k: audit.get(k) for k in AUDIT_KEYS},
    }
    metrics = p.get("metrics") or {}
    row.update({m: metrics.get(m) for m in METRICS})
    return row


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def cost_to_reach(points: Sequence[dict[str, Any]], target: float, metric: str = "image_ap") -> float | None:
    """The cost of the first round whose ``metric`` is at least ``target`` (None: never)."""
    for p in points:
        row = point_row(p)
        if _finite(row[metric]) and row[metric] >= target:
            return float(row["cost"])
    return None


def cost_to_hold(points: Sequence[dict[str, Any]], target: float, metric: str = "image_ap") -> float | None:
    """The cost of the first round from which ``metric`` stays at least ``target`` in every
    later recorded round (None: the last round is below it, or unmeasured). A run whose curve
    touches the target once and falls back is not counted as there until it stays."""
    held = None
    for p in points:
        row = point_row(p)
        if _finite(row[metric]) and row[metric] >= target:
            held = float(row["cost"]) if held is None else held
        else:
            held = None
    return held


def band(runs: Sequence[Run], key: str) -> list[dict[str, float | None]]:
    """Per round index: mean, min and max of ``key`` over the runs that reached that round."""
    out: list[dict[str, float | None]] = []
    for i in range(max((len(r.points) for r in runs), default=0)):
        vals = [float(v) for r in runs if i < len(r.points) and _finite(v := point_row(r.points[i])[key])]
        out.append(
            {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}
            if vals
            else {"mean": None, "min": None, "max": None}
        )
    return out


def by_strategy(runs: Sequence[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.strategy, []).append(r)
    return groups


def summary(runs: Sequence[Run], metric: str = "image_ap", baseline: str = "random") -> list[dict[str, Any]]:
    """Per strategy: the cost to reach 95% and 99% of full supervision's ``metric`` (``cost_T``,
    mean over the seeds, None unless every seed reached it), the cost from which it held in
    every later round (``hold_T``, :func:`cost_to_hold`), and their ratios to ``baseline``'s
    (``ratio_T``, ``hold_ratio_T``).

    Where the baseline never reached a target, its largest spent cost is a lower bound of
    what it needs, so the ratio is an upper bound (``ratio_is_bound``)."""
    groups = by_strategy(runs)
    rows = []
    for strategy, rs in groups.items():
        row: dict[str, Any] = {
            "strategy": strategy,
            "runs": len(rs),
            "final": _mean([point_row(r.points[-1])[metric] for r in rs if r.points]),
        }
        row["final_cost"] = _mean([point_row(r.points[-1])["cost"] for r in rs if r.points])
        for t in TARGETS:
            for kind, count, first in (("cost", "reached", cost_to_reach), ("hold", "held", cost_to_hold)):
                costs = [
                    first(r.points, t * r.reference[metric], metric) for r in rs if _finite(r.reference.get(metric))
                ]
                reached = [c for c in costs if c is not None]
                row[f"{count}_{t}"] = f"{len(reached)}/{len(costs)}"
                row[f"{kind}_{t}"] = sum(reached) / len(reached) if costs and len(reached) == len(costs) else None
        rows.append(row)
    base = next((r for r in rows if r["strategy"] == baseline), None)
    for row in rows:
        for t in TARGETS:
            for kind, ratio in (("cost", "ratio"), ("hold", "hold_ratio")):
                row[f"{ratio}_{t}"], row[f"{ratio}_{t}_is_bound"] = None, False
                if base is None or row[f"{kind}_{t}"] is None:
                    continue
                if base[f"{kind}_{t}"] is not None and base[f"{kind}_{t}"] > 0:
                    row[f"{ratio}_{t}"] = row[f"{kind}_{t}"] / base[f"{kind}_{t}"]
                elif base[f"{kind}_{t}"] is None and base["final_cost"]:
                    row[f"{ratio}_{t}"], row[f"{ratio}_{t}_is_bound"] = row[f"{kind}_{t}"] / base["final_cost"], True
    return rows


def _mean(vals: Sequence[Any]) -> float | None:
    vals = [v for v in vals if _finite(v)]
    return sum(vals) / len(vals) if vals else None


def chart_title(run: Run) -> str:
    """The chart's title: the run's name and how many finished rounds it shows."""
    n = len(run.points)
    return f"{run.name}: {n} finished round{'' if n == 1 else 's'}"


def curves_json(runs: Sequence[Run]) -> dict[str, Any]:
    """Everything the charts show, as numbers: every run's points, the per-strategy bands
    and the full-supervision reference."""
    refs = [r.reference for r in runs if r.reference]
    return {
        "metrics": list(METRICS),
        "x_axes": list(X_AXES),
        "reference": {m: _mean([ref.get(m) for ref in refs]) for m in METRICS} if refs else {},
        "runs": [
            {
                "name": r.name,
                "strategy": r.strategy,
                "seed": r.seed,
                "reference": r.reference,
                "points": [point_row(p) for p in r.points],
            }
            for r in runs
        ],
        "strategies": {
            s: {k: band(rs, k) for k in (*X_AXES, *METRICS, *AUDIT_KEYS)} for s, rs in by_strategy(runs).items()
        },
        "summary": summary(runs) if refs else [],
    }


def figure(runs: Sequence[Run], x: str, title: str = "") -> Any:
    """The chart as a matplotlib Figure: a panel per metric (plus the proposal audit) against
    ``x``; a line per strategy (mean over its runs) with a min-max band, and full supervision
    dashed. The x axis starts at zero (costs, labels and seconds are never negative, and a
    single round would otherwise be centred on a range reaching below zero); without a
    finished round each panel says so instead of showing an empty legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, got {x!r}")
    groups = by_strategy(runs)
    panels = (*METRICS, "flip_rate")
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5), dpi=90)
    refs = [r.reference for r in runs if r.reference]
    for ax, key in zip(axes.flat, panels, strict=True):
        xvals: list[float] = []
        for i, (strategy, rs) in enumerate(groups.items()):
            xs, ys = band(rs, x), band(rs, key)
            pts = [
                (a["mean"], b) for a, b in zip(xs, ys, strict=True) if a["mean"] is not None and b["mean"] is not None
            ]
            if not pts:
                continue
            color = f"C{i % 10}"
            ax.plot(
                [p[0] for p in pts],
                [p[1]["mean"] for p in pts],
                "o-",
                color=color,
                label=strategy,
                lw=1.8,
                ms=4,
                clip_on=False,
            )  # a point at zero cost sits on the axis
            xvals += [p[0] for p in pts]
            if len(rs) > 1:
                ax.fill_between(
                    [p[0] for p in pts],
                    [p[1]["min"] for p in pts],
                    [p[1]["max"] for p in pts],
                    color=color,
                    alpha=0.18,
                    lw=0,
                )
        ref = _mean([r.get(key) for r in refs])
        if ref is not None:
            ax.axhline(ref, color="black", ls="--", lw=1, label="full supervision")
        if not any(r.points for r in runs):
            ax.text(
                0.5, 0.5, "no finished round yet", transform=ax.transAxes, ha="center", va="center", color="#66707a"
            )
        ax.set_title("verdict flips (proposal audit)" if key == "flip_rate" else key.replace("_", " "))
        ax.set_xlabel(X_AXES[x])
        ax.xaxis.set_major_locator(MaxNLocator(integer=x == "labels"))
        spread = len(set(xvals)) > 1
        ax.set_xlim(0, ax.get_xlim()[1] if spread else max(1.0, 2 * max(xvals, default=0.0)))
        ax.grid(alpha=0.3)
    if axes.flat[0].get_legend_handles_labels()[0]:
        axes.flat[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot(runs: Sequence[Run], x: str, path: Path | BinaryIO, title: str = "") -> Path | BinaryIO:
    """One PNG of :func:`figure` (to a file or a binary stream)."""
    import matplotlib.pyplot as plt

    fig = figure(runs, x, title)
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def summary_markdown(rows: Sequence[dict[str, Any]], metric: str = "image_ap", baseline: str = "random") -> str:
    """The planning table: cost to reach 95% / 99% of full supervision, relative to ``baseline``
    (the strategy :func:`summary` was given), and the cost from which 99% held in every later
    round (a curve that touches the target once and falls back is not there yet)."""

    def fmt(v: float | None, pct: bool = False) -> str:
        return "-" if v is None else f"{100 * v:.1f}" if pct else f"{v:.0f}"

    def ratio(row: dict, t: float, key: str = "ratio") -> str:
        r = row.get(f"{key}_{t}")
        return "-" if r is None else ("<= " if row[f"{key}_{t}_is_bound"] else "") + f"{100 * r:.0f}%"

    lines = [
        (
            f"| strategy | runs | final {metric} | final cost | cost to 95% (reached) | vs {baseline} "
            f"| cost to 99% (reached) | vs {baseline} | at 99% from then on (held) | vs {baseline} |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['strategy']} | {row['runs']} | {fmt(row['final'], True)} | {fmt(row['final_cost'])} "
            f"| {fmt(row['cost_0.95'])} ({row['reached_0.95']}) | {ratio(row, 0.95)} "
            f"| {fmt(row['cost_0.99'])} ({row['reached_0.99']}) | {ratio(row, 0.99)} "
            f"| {fmt(row.get('hold_0.99'))} ({row.get('held_0.99', '-')}) | {ratio(row, 0.99, 'hold_ratio')} |"
        )
    return "\n".join(lines) + "\n"
