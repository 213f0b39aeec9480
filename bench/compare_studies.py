"""Compare runs from several ``defectloop simulate`` studies on one chart and one table.

A study answers one ask policy (``--ask auto``, ``verdict`` or ``mask``); the planning
question "verdicts or masks, and chosen how?" needs runs from several studies side by side.
Each ``LABEL=STUDY_DIR:STRATEGY`` names the runs of one strategy in one study (all its
recorded seeds, each cut to ``--rounds`` when given) under a label of its own. The studies
must share the data, test split and training settings: their full-supervision references
must be the same file content, or the comparison stops.

    python bench/compare_studies.py --baseline "random (auto)" \\
        "random (auto)=runs/sim-auto/magnetic-tile:random" \\
        "hybrid (verdicts)=runs/sim-verdict6/magnetic-tile:hybrid" --out docs/bench/compare

Writes ``OUT/curves.json``, ``OUT/curves_vs_cost.png`` and ``OUT/summary.md`` (the cost to
reach 95% and 99% of full supervision's image AP, relative to the baseline label).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend.curves import Run, curves_json, plot, summary, summary_markdown


def load_runs(label: str, study: Path, strategy: str, rounds: int | None) -> list[Run]:
    """The recorded runs of ``strategy`` in ``study``, one per seed, named ``label``.

    A study is read in one of three layouts: as ``defectloop simulate`` leaves it
    (``runs/STRATEGY-seedN/rounds.json`` and ``reference/seedN.json``); kept as its
    ``curves.json`` only (docs/bench/); or as a flat copy of its files
    (``STRATEGY-seedN_rounds.json`` beside ``reference_seedN.json``, docs/bench/ for a study
    stopped before it wrote its curves).
    """
    cut = None if rounds is None else rounds + 1
    if (study / "runs").is_dir():
        pairs = [
            (p, study / "reference" / f"seed{_seed(p)}.json")
            for p in sorted((study / "runs").glob(f"{strategy}-seed*/rounds.json"))
        ]
    elif (study / "curves.json").is_file():
        curves = json.loads((study / "curves.json").read_text())
        runs = [
            Run(f"{label}-seed{r['seed']}", label, r["seed"], r["points"][:cut], r["reference"])
            for r in curves["runs"]
            if r["strategy"] == strategy
        ]
        if not runs:
            raise SystemExit(f"{study / 'curves.json'}: no runs of {strategy!r}")
        return runs
    else:
        pairs = [
            (p, study / f"reference_seed{_seed(p)}.json") for p in sorted(study.glob(f"{strategy}-seed*_rounds.json"))
        ]
    runs = []
    for path, ref_path in pairs:
        rec = json.loads(path.read_text())
        seed = int(rec["seed"])
        if not ref_path.is_file():
            raise SystemExit(f"{ref_path}: no full-supervision reference for seed {seed}")
        points = [r["metrics"] for r in rec["rounds"]][:cut]
        runs.append(Run(f"{label}-seed{seed}", label, seed, points, json.loads(ref_path.read_text())["metrics"]))
    if not runs:
        raise SystemExit(
            f"{study}: no recorded runs of {strategy!r} (runs/{strategy}-seedN/rounds.json, "
            f"curves.json or {strategy}-seedN_rounds.json)"
        )
    return runs


def _seed(rounds_json: Path) -> int:
    """N of a ``STRATEGY-seedN/rounds.json`` or ``STRATEGY-seedN_rounds.json`` path."""
    name = (
        rounds_json.parent.name if rounds_json.name == "rounds.json" else rounds_json.name.removesuffix("_rounds.json")
    )
    return int(name.rpartition("-seed")[2])


def check_references(runs: list[Run]) -> None:
    """Stop unless every run of a seed is measured against the same reference."""
    by_seed: dict[int | None, dict[str, float]] = {}
    for r in runs:
        ref = by_seed.setdefault(r.seed, r.reference)
        if set(ref) != set(r.reference) or any(abs(ref[k] - r.reference[k]) > 1e-9 for k in ref):
            raise SystemExit(
                f"{r.name}: its full-supervision reference differs from another study's for seed {r.seed}; "
                "the studies do not share data, test split or training settings"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=STUDY_DIR:STRATEGY")
    ap.add_argument("--baseline", required=True, help="The label the costs are relative to.")
    ap.add_argument("--rounds", type=int, default=None, help="Cut every run to its bootstrap and this many rounds.")
    ap.add_argument("--seeds", default=None, help="Comma-separated seeds to keep (default: all recorded).")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    keep = None if args.seeds is None else {int(s) for s in args.seeds.split(",")}
    runs: list[Run] = []
    for spec in args.runs:
        label, sep, rest = spec.partition("=")
        study, sep2, strategy = rest.rpartition(":")
        if not (sep and sep2 and label and study and strategy):
            raise SystemExit(f"{spec!r}: expected LABEL=STUDY_DIR:STRATEGY")
        runs += [r for r in load_runs(label, Path(study), strategy, args.rounds) if keep is None or r.seed in keep]
    if args.baseline not in {r.strategy for r in runs}:
        raise SystemExit(f"--baseline {args.baseline!r} is none of the labels given")
    check_references(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    curves = curves_json(runs)
    curves["summary"] = summary(runs, baseline=args.baseline)
    (args.out / "curves.json").write_text(json.dumps(curves, indent=1))
    plot(runs, "cost", args.out / "curves_vs_cost.png", title="label efficiency against annotation cost")
    md = summary_markdown(curves["summary"], baseline=args.baseline)
    (args.out / "summary.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
