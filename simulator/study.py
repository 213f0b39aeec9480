"""The whole study: the full-supervision reference, every (strategy, seed) run, and the
curves and summary written under ``cfg.out``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from backend.curves import X_AXES, Run, curves_json, plot, summary_markdown
from ml import Dataset, Sample
from simulator.config import SimConfig, files_root, prepare_data
from simulator.environment import environment
from simulator.loop import finished_run, run_one

Say = Callable[[str], None]


def reference(
    cfg: SimConfig, ds: Dataset, pool: Sequence[Sample], test: Sequence[Sample], seed: int, say: Say
) -> dict[str, float]:
    """Test metrics of a model trained (in this process) on the whole pool with every label;
    cached per seed under ``out/reference`` and reused while ``cfg.reference_key()`` holds."""
    from ml import TrainConfig, load_model, train_and_save
    from ml import evaluate_model as evaluate

    path = cfg.out / "reference" / f"seed{seed}.json"
    try:
        rec = json.loads(path.read_text())
        if rec.get("config") == json.loads(json.dumps(cfg.reference_key())):
            return dict(rec["metrics"])
    except (OSError, ValueError):
        pass
    t0 = time.monotonic()
    train = Dataset(
        root=ds.root, samples=tuple(replace(s, split="train") for s in pool), source=f"{ds.source} (pool, all labels)"
    )
    tc = TrainConfig(image_size=cfg.image_size, epochs=cfg.epochs, seed=seed, device=cfg.device, click_head_steps=0)
    if cfg.backbone:
        tc = replace(tc, backbone=cfg.backbone)
    model_dir = cfg.out / "reference" / f"seed{seed}-model"
    summary = train_and_save(train, model_dir, tc)
    scores = evaluate(load_model(model_dir, device=cfg.device).predictor, list(test))
    metrics = {k: float(v) for k, v in scores.items() if isinstance(v, int | float)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"config": cfg.reference_key(), "regime": summary.trained.regime.value, "metrics": metrics}, indent=1
        )
    )
    say(
        f"reference seed {seed}: {summary.trained.regime.value}, image AP {metrics.get('image_ap', float('nan')):.3f} "
        f"({time.monotonic() - t0:.0f} s)"
    )
    return metrics


def write_outputs(out: Path, runs: Sequence[Run], title: str) -> dict[str, Any]:
    """curves.json, one PNG per x axis, summary.md and summary.json under ``out``; the curves."""
    curves = curves_json(runs)
    (out / "curves.json").write_text(json.dumps(curves, indent=1))
    for x in X_AXES:
        plot(runs, x, out / f"curves_vs_{x}.png", title=title)
    (out / "summary.json").write_text(json.dumps(curves["summary"], indent=1))
    (out / "summary.md").write_text(
        summary_markdown(curves["summary"]) if curves["summary"] else "no full-supervision reference\n"
    )
    return curves


def simulate(cfg: SimConfig, say: Say = print) -> dict[str, Any]:
    """Run (or resume) the study; its curves (also written under ``cfg.out``).

    ValueError for unknown strategies or an empty budget, DataError for a dataset that
    cannot be simulated, SimulationError (or the client's, Label Studio's errors) when the
    study cannot go on. Label Studio and the service run only while runs remain to be done."""
    from rich.console import Console
    from rich.progress import Progress

    from ml import STRATEGIES

    unknown = [s for s in cfg.strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}")
    if cfg.rounds < 1 or cfg.budget <= 0:
        raise ValueError("rounds must be >= 1 and budget > 0")
    ds, pool, test = prepare_data(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "config.json").write_text(json.dumps(cfg.to_json(), indent=1))
    say(
        f"{ds.root}: pool {len(pool)} images ({sum(s.label for s in pool)} defective), "
        f"test {len(test)} ({sum(s.label for s in test)} defective)"
    )
    refs = {seed: reference(cfg, ds, pool, test, seed, say) for seed in cfg.seeds} if cfg.reference else {}
    todo = [(st, seed) for seed in cfg.seeds for st in cfg.strategies if finished_run(cfg, st, seed) is None]
    if todo:
        # the service starts before the progress bar's thread does (it is forked off this process)
        with (
            environment(cfg, files_root(ds), say) as env,
            Progress(console=Console(stderr=True), transient=True) as bar,
        ):
            task = bar.add_task("rounds", total=len(todo) * (cfg.rounds + 1))
            for strategy, seed in todo:
                run_one(
                    env, cfg, strategy, seed, pool, test, lambda m: bar.console.print(m), step=lambda: bar.advance(task)
                )
    runs = []
    for seed in cfg.seeds:
        for strategy in cfg.strategies:
            rec = finished_run(cfg, strategy, seed)
            if rec is None:  # run_one finished it above
                raise RuntimeError(f"{strategy}-seed{seed}: no finished record after its run")
            runs.append(
                Run(f"{strategy}-seed{seed}", strategy, seed, [r["metrics"] for r in rec["rounds"]], refs.get(seed, {}))
            )
    return write_outputs(cfg.out, runs, title=f"{ds.root.name}: budget {cfg.budget:g}/round, {len(cfg.seeds)} seed(s)")
