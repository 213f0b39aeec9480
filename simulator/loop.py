"""One run of a study: the bootstrap and its rounds in a project of its own, recorded round
by round in ``runs/<strategy>-seed<k>/rounds.json`` so that a run can be reused, resumed or
extended (the contract is in the package's docstring)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from backend.client import ClientError
from ml import Sample
from simulator.annotator import SimulatedAnnotator
from simulator.config import SimConfig, run_key
from simulator.environment import Environment
from simulator.errors import SimulationError
from simulator.projects import new_project, recover, truth, wait_for_job, wait_for_labels

Say = Callable[[str], None]


def run_dir(cfg: SimConfig, strategy: str, seed: int) -> Path:
    """Where the run of ``strategy`` with ``seed`` keeps its record."""
    return cfg.out / "runs" / f"{strategy}-seed{seed}"


def recorded_run(cfg: SimConfig, strategy: str, seed: int) -> dict[str, Any] | None:
    """The run recorded with this study's settings (any number of rounds), else None."""
    path = run_dir(cfg, strategy, seed) / "rounds.json"
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and run_key(rec.get("config") or {}) == cfg.run_key() else None


def finished_run(cfg: SimConfig, strategy: str, seed: int) -> dict[str, Any] | None:
    """The recorded run when it holds the bootstrap and ``cfg.rounds`` rounds (cut to those), else None."""
    rec = recorded_run(cfg, strategy, seed)
    if rec is None or len(rec.get("rounds", [])) < cfg.rounds + 1:
        return None
    return {**rec, "rounds": rec["rounds"][: cfg.rounds + 1]}


def _project_of(env: Environment, record: dict[str, Any], where: Path, name: str) -> int:
    """The project a recorded run names, when the study's service still holds it."""
    pid = int(record["project_id"])
    try:
        env.client.find_project(str(pid))
    except ClientError as e:  # the record outlived its database
        raise SimulationError(
            f"{where} names project {pid}, which this study's service does not hold ({e}): "
            f"remove {where.parent} to run {name} again"
        ) from None
    return pid


def run_one(
    env: Environment,
    cfg: SimConfig,
    strategy: str,
    seed: int,
    pool: Sequence[Sample],
    test: Sequence[Sample],
    say: Say,
    step: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Bootstrap and ``cfg.rounds`` rounds of ``strategy`` in a project of its own; the run's
    record (cut to ``cfg.rounds``). A run recorded with the same settings goes on in its
    project from where it stopped. ``step`` is called once per round done (the bootstrap
    included), also for rounds done before."""
    name = f"{strategy}-seed{seed}"
    folder = run_dir(cfg, strategy, seed)
    folder.mkdir(parents=True, exist_ok=True)
    record = recorded_run(cfg, strategy, seed)
    if record is not None:
        pid = _project_of(env, record, folder / "rounds.json", name)
        answers = truth(env.client, pid, pool)
        recover(env, pid)
    else:
        pid = new_project(env, cfg, strategy, name, pool, test)
        answers = truth(env.client, pid, pool)
        record = {
            "strategy": strategy,
            "seed": seed,
            "project_id": pid,
            "rounds": [],
            "webhooks": [],
            "annotator_mistakes": 0,
        }
    record.update(config=cfg.run_key(), complete=False)
    annotator = SimulatedAnnotator(answers, cfg.annotator, seed=seed)

    def save() -> None:
        record["rounds"] = [r for r in env.client.rounds(pid) if r["status"] == "done"]
        tmp = folder / "rounds.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(folder / "rounds.json")

    save()
    done = len(record["rounds"])
    for _ in range(min(done, cfg.rounds + 1)):
        step()
    if done:
        say(f"{name}: going on after round {done - 1}")
    else:
        t0 = time.monotonic()
        boot = env.client.round_action(pid, "bootstrap", params={"seed": seed})
        wait_for_job(env.client, pid, int(boot["job"]["id"]), f"{name} bootstrap")
        save()
        step()
        say(f"{name}: bootstrap done ({time.monotonic() - t0:.0f} s)")
    ls_id: int | None = None
    for k in range(max(done, 1), cfg.rounds + 1):
        t0 = time.monotonic()
        current = next((r for r in env.client.rounds(pid) if r["index"] == k), None)
        if current is None:
            current = env.client.round_action(
                pid, "start", {"budget": cfg.budget, "strategy": strategy, "ask": cfg.ask, "seed": seed * 1000 + k}
            )
        asks = current["asks"]
        asked = [int(i) for i, _ in asks]
        if ls_id is None:  # the first push set the Label Studio project up
            ls_id = int(env.client.find_project(str(pid))["ls_project_id"])
        annotator.begin_round(k)
        answered = 0
        for task in env.studio.open_tasks(ls_id):
            result, seconds = annotator.answer(task.data)
            env.studio.annotate(task.task_id, result, lead_time=seconds)
            answered += 1
        by_webhook = wait_for_labels(env.client, pid, asked)
        record["webhooks"] = [w for w in record["webhooks"] if w["round"] != k]
        record["webhooks"].append({"round": k, "asked": len(asked), "answered": answered, "by_webhook": by_webhook})
        if current["status"] in ("annotating", "failed"):
            close = env.client.round_action(pid, "close")
            wait_for_job(env.client, pid, int(close["job"]["id"]), f"{name} round {k}")
        record["annotator_mistakes"] = int(record.get("annotator_mistakes", 0)) + annotator.mistakes
        annotator.mistakes = 0
        save()
        step()
        last = record["rounds"][-1]["metrics"]
        say(
            f"{name}: round {k}/{cfg.rounds}: {len(asked)} asked ({sum(kind == 'mask' for _, kind in asks)} masks), "
            f"{last['regime']}, image AP {last['metrics'].get('image_ap', float('nan')):.3f}, cost {last['cost']:.0f} "
            f"({time.monotonic() - t0:.0f} s)"
        )
    record["complete"] = True
    save()
    return {**record, "rounds": record["rounds"][: cfg.rounds + 1]}
