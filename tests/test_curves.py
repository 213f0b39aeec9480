"""Label-efficiency curves: the planning summary's costs, ratios and bounds, and rows that
read back from curves.json as they were written."""

from __future__ import annotations

import json

import pytest

from backend.curves import (
    Run,
    cost_to_hold,
    cost_to_reach,
    curves_json,
    point_row,
    summary,
    summary_markdown,
)

REF = {"image_ap": 0.9}


def _round(i: int, cost: float, ap: float) -> dict:
    return {
        "round": i,
        "regime": "mixed",
        "strategy": "x",
        "labels": {"total": 10 * i, "normal": 6 * i, "image": 3 * i, "mask": i},
        "cost": cost,
        "annotation_seconds": 4.0 * i,
        "metrics": {"image_ap": ap, "image_auroc": ap},
        "audit": {},
    }


def _run(strategy: str, aps: list[float], seed: int = 0, step: float = 100.0) -> Run:
    return Run(f"{strategy}-seed{seed}", strategy, seed, [_round(i, step * i, ap) for i, ap in enumerate(aps)], REF)


def test_cost_to_reach_is_the_first_round_at_the_target() -> None:
    run = _run("a", [0.5, 0.86, 0.8, 0.9])
    assert cost_to_reach(run.points, 0.855) == 100.0
    assert cost_to_reach(run.points, 0.89) == 300.0
    assert cost_to_reach(run.points, 0.95) is None


def test_a_target_is_held_from_the_round_after_the_last_dip() -> None:
    run = _run("a", [0.5, 0.9, 0.8, 0.9, 0.95])
    assert cost_to_reach(run.points, 0.89) == 100.0
    assert cost_to_hold(run.points, 0.89) == 300.0  # touched at 100, fell back at 200
    assert cost_to_hold(_run("b", [0.5, 0.9, 0.8]).points, 0.89) is None  # below at the end
    rows = {r["strategy"]: r for r in summary([run, _run("random", [0.5, 0.7, 0.9, 0.8, 0.9])])}
    assert rows["a"]["hold_0.99"] == 300.0 and rows["random"]["hold_0.99"] == 400.0
    assert rows["a"]["hold_ratio_0.99"] == pytest.approx(0.75) and rows["a"]["held_0.99"] == "1/1"


def test_ratios_to_the_baseline_and_bounds_where_it_never_arrived() -> None:
    rows = {
        r["strategy"]: r
        for r in summary([_run("random", [0.5, 0.7, 0.8, 0.86]), _run("hybrid", [0.5, 0.86, 0.9, 0.9])])
    }
    # 95% of 0.9 = 0.855: hybrid at 100, random at 300
    assert rows["hybrid"]["cost_0.95"] == 100.0 and rows["random"]["cost_0.95"] == 300.0
    assert rows["hybrid"]["ratio_0.95"] == pytest.approx(1 / 3) and not rows["hybrid"]["ratio_0.95_is_bound"]
    # 99% = 0.891: random never got there within 300 units, so hybrid's 200 is at most 2/3 of it
    assert rows["random"]["cost_0.99"] is None and rows["hybrid"]["cost_0.99"] == 200.0
    assert rows["hybrid"]["ratio_0.99"] == pytest.approx(2 / 3) and rows["hybrid"]["ratio_0.99_is_bound"]


def test_a_strategy_counts_as_arriving_only_when_every_seed_did() -> None:
    rows = {r["strategy"]: r for r in summary([_run("hybrid", [0.5, 0.9], seed=0), _run("hybrid", [0.5, 0.6], seed=1)])}
    assert rows["hybrid"]["reached_0.99"] == "1/2" and rows["hybrid"]["cost_0.99"] is None


def test_the_table_names_its_baseline() -> None:
    rows = summary([_run("random (auto)", [0.5, 0.9]), _run("hybrid", [0.5, 0.9])], baseline="random (auto)")
    md = summary_markdown(rows, baseline="random (auto)")
    assert md.splitlines()[0].count("vs random (auto)") == 3
    assert "| hybrid | 1 | 90.0 | 100 | 100 (1/1) | 100% | 100 (1/1) | 100% | 100 (1/1) | 100% |" in md


def test_rows_read_back_from_curves_json_as_written() -> None:
    runs = [_run("random", [0.5, 0.7, 0.88]), _run("hybrid", [0.5, 0.86, 0.9])]
    written = json.loads(json.dumps(curves_json(runs)))
    for r in written["runs"]:
        for p in r["points"]:
            assert point_row(p) == p
    again = [Run(r["name"], r["strategy"], r["seed"], r["points"], r["reference"]) for r in written["runs"]]
    assert summary(again) == written["summary"]


@pytest.mark.parametrize("x", ["cost", "labels", "annotation_seconds"])
def test_charts_of_no_round_and_of_one_round_are_sound(x: str) -> None:
    """No finished round: no empty legend, and the chart says why it is empty. One round (at
    zero cost and labels): the axis starts at zero, no negative ticks."""
    from backend.curves import figure

    empty = figure([Run("line-1", "line-1", None, [])], x)
    assert all(ax.get_legend() is None for ax in empty.axes)
    assert any("no finished round" in t.get_text() for ax in empty.axes for t in ax.texts)
    for points in ([_round(0, 0.0, 0.41)], [_round(0, 0.0, 0.41), _round(1, 30.0, 0.7)]):
        fig = figure([Run("line-1", "line-1", None, points)], x)
        first = fig.axes[0]
        assert [t.get_text() for t in first.get_legend().get_texts()] == ["line-1"]
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            assert lo == 0 and hi > 0 and all(t >= 0 for t in ax.get_xticks() if lo <= t <= hi)


def test_the_chart_title_counts_rounds_in_words_that_agree() -> None:
    from backend.curves import Run, chart_title

    assert chart_title(Run("demo", "hybrid", 0, [{}])) == "demo: 1 finished round"
    assert chart_title(Run("demo", "hybrid", 0, [{}, {}])) == "demo: 2 finished rounds"
    assert chart_title(Run("demo", "hybrid", 0, [])) == "demo: 0 finished rounds"
