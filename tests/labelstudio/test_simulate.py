"""The whole loop end to end: `defectloop simulate` on generated data, with a real Label
Studio (started by the command from the cached template), the real webhooks and sync, and
the simulated annotator; two rounds on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from backend.curves import METRICS
from ml.demo_data import DemoSpec, generate

pytestmark = pytest.mark.slow  # whole simulated loops with training

ARGS = [
    "--strategies",
    "random,top_score",
    "--rounds",
    "2",
    "--budget",
    "24",
    "--seeds",
    "1",
    "--image-size",
    "64x96",
    "--epochs",
    "3",
    "--device",
    "cpu",
    "--error-rate",
    "0.1",
    "--min-defects",
    "1",
]


def _simulate(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFECTLOOP_")}
    cmd = [str(Path(sys.executable).parent / "defectloop"), "simulate", str(data), "--out", str(out), *ARGS, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, check=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, ls_server) -> tuple[Path, Path, subprocess.CompletedProcess, float]:
    """One simulated study (``ls_server`` guarantees the Label Studio environment and template)."""
    root = tmp_path_factory.mktemp("simulate")
    generate(
        root / "data",
        DemoSpec(
            train_normal=16,
            train_defective=6,
            val_normal=6,
            val_defective=4,
            test_normal=8,
            test_defective=4,
            size=64,
            seed=3,
        ),
    )
    t0 = time.monotonic()
    res = _simulate(root / "data", root / "out")
    return root / "data", root / "out", res, time.monotonic() - t0


def test_two_rounds_move_the_regime_and_record_their_numbers(study) -> None:
    _, out, res, _ = study
    assert res.returncode == 0, res.stderr[-3000:]
    for strategy in ("random", "top_score"):
        rec = json.loads((out / "runs" / f"{strategy}-seed0" / "rounds.json").read_text())
        assert rec["complete"]
        rounds = rec["rounds"]
        assert [r["index"] for r in rounds] == [0, 1, 2]
        regimes = [r["metrics"]["regime"] for r in rounds]
        assert regimes[0] == "unsupervised" and set(regimes[1:]) <= {"weak", "mixed", "full"}, regimes
        totals = [r["metrics"]["labels"]["total"] for r in rounds]
        assert totals[0] == 0 and totals[0] < totals[1] < totals[2]
        costs = [r["metrics"]["cost"] for r in rounds]
        assert costs[0] == 0 and 0 < costs[1] <= 24 and costs[2] <= 48
        assert all(r["metrics"]["annotation_seconds"] > 0 for r in rounds[1:])
        for r in rounds:
            assert 0.0 <= r["metrics"]["metrics"]["image_ap"] <= 1.0
        # every answer came in through Label Studio's webhook before the round closed
        for w in rec["webhooks"]:
            assert w["answered"] == w["asked"] == w["by_webhook"] > 0


def test_curve_files_hold_the_recorded_numbers(study) -> None:
    _, out, res, _ = study
    assert res.returncode == 0, res.stderr[-3000:]
    curves = json.loads((out / "curves.json").read_text())
    by_name = {r["name"]: r for r in curves["runs"]}
    for strategy in ("random", "top_score"):
        rec = json.loads((out / "runs" / f"{strategy}-seed0" / "rounds.json").read_text())
        points = by_name[f"{strategy}-seed0"]["points"]
        assert [p["cost"] for p in points] == [r["metrics"]["cost"] for r in rec["rounds"]]
        assert [p["image_ap"] for p in points] == [r["metrics"]["metrics"]["image_ap"] for r in rec["rounds"]]
        assert [p["labels"] for p in points] == [r["metrics"]["labels"]["total"] for r in rec["rounds"]]
    ref = json.loads((out / "reference" / "seed0.json").read_text())
    assert curves["reference"]["image_ap"] == pytest.approx(ref["metrics"]["image_ap"])
    assert {row["strategy"] for row in curves["summary"]} == {"random", "top_score"}
    for x in ("labels", "cost", "annotation_seconds"):
        png = (out / f"curves_vs_{x}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    md = (out / "summary.md").read_text()
    assert "| random | 1 |" in md and "| top_score | 1 |" in md
    assert set(METRICS) <= set(curves["metrics"])
    assert json.loads((out / "config.json").read_text())["image_size"] == [64, 96]  # height x width


def test_the_same_command_reuses_finished_runs(study) -> None:
    data, out, res, first_s = study
    assert res.returncode == 0, res.stderr[-3000:]
    before = (out / "runs" / "random-seed0" / "rounds.json").read_text()
    t0 = time.monotonic()
    again = _simulate(data, out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "runs" / "random-seed0" / "rounds.json").read_text() == before
    assert "bootstrap done" not in again.stderr  # nothing retrained
    assert time.monotonic() - t0 < first_s


def test_a_bad_image_size_is_named(tmp_path: Path) -> None:
    cmd = [str(Path(sys.executable).parent / "defectloop"), "simulate", str(tmp_path), "--image-size", "128x"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2 and "--image-size" in res.stderr and "128x" in res.stderr


def test_bad_input_is_named(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    res = _simulate(tmp_path / "data", tmp_path / "out")
    assert res.returncode == 2 and "error:" in res.stderr and str(tmp_path / "data") in res.stderr


def test_the_served_root_holds_files_outside_the_csv_folder(tmp_path: Path) -> None:
    from ml.data import Dataset, Sample
    from simulator import files_root

    data = tmp_path / "shared" / "line"
    samples = (
        Sample(image=data / "images" / "a.png", label=0),
        Sample(image=data / "images" / "b.png", label=1, mask=data / "masks" / "b.png", has_mask=True),
    )
    split_csv_folder = tmp_path / "runs" / "split"
    assert files_root(Dataset(root=split_csv_folder, samples=samples)) == data.resolve()
    assert files_root(Dataset(root=split_csv_folder, samples=samples[:1])) == (data / "images").resolve()


def test_the_reference_depends_on_data_and_training_not_on_the_loop(tmp_path: Path) -> None:
    from simulator import SimConfig

    base = SimConfig(data=tmp_path, out=tmp_path / "a", image_size=(128, 128))
    loop_only = replace(
        base,
        out=tmp_path / "b",
        strategies=("hybrid",),
        rounds=12,
        budget=100.0,
        ask="verdict",
        mask_share=0.2,
        seeds=(0, 1),
        pseudo_normal_fraction=0.0,
    )
    assert loop_only.reference_key() == base.reference_key()
    assert loop_only.run_key() != base.run_key()
    assert replace(base, rounds=12).run_key() == base.run_key()  # more rounds extend a run
    for changed in (
        replace(base, image_size=(128, 320)),
        replace(base, epochs=5),
        replace(base, test_fraction=0.2),
        replace(base, backbone="tf_efficientnet_lite2"),
    ):
        assert changed.reference_key() != base.reference_key()


def test_the_data_path_keys_a_study_however_it_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from simulator import SimConfig

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = SimConfig(data=Path("data"), out=Path("out"))
    absolute = replace(relative, data=tmp_path / "data")
    assert relative.run_key() == absolute.run_key()
    assert relative.reference_key() == absolute.reference_key()
    assert replace(relative, data=Path("other")).reference_key() != relative.reference_key()


# Runs last in this module: it adds a round to the study the tests above read.
def test_more_rounds_go_on_from_an_interrupted_round(study, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 3 is started and half answered, then its process goes away; asking for three
    rounds finishes that round in the same project and keeps rounds 0-2 as they were."""
    from simulator import SimConfig, SimulatedAnnotator, environment, files_root, prepare_data, truth

    data, out, res, _ = study
    assert res.returncode == 0, res.stderr[-3000:]
    path = out / "runs" / "random-seed0" / "rounds.json"
    before = json.loads(path.read_text())
    for k in [k for k in os.environ if k.startswith("DEFECTLOOP_")]:
        monkeypatch.delenv(k)
    cfg = SimConfig(data=data, out=out, device="cpu")
    ds, _, _ = prepare_data(cfg)
    with environment(cfg, files_root(ds), say=lambda m: None) as env:
        pid = before["project_id"]
        rnd = env.client.round_action(pid, "start", {"budget": 24, "strategy": "random", "ask": "auto", "seed": 3})
        ls_id = env.client.find_project(str(pid))["ls_project_id"]
        annotator = SimulatedAnnotator(truth(env.client, pid, prepare_data(cfg)[1]), cfg.annotator, seed=0)
        tasks = env.studio.open_tasks(ls_id)
        assert len(tasks) == len(rnd["asks"]) >= 2
        for task in tasks[: len(tasks) // 2]:
            result, seconds = annotator.answer(task.data)
            env.studio.annotate(task.task_id, result, lead_time=seconds)

    again = _simulate(data, out, "--rounds", "3", "--strategies", "random")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "going on after round 2" in again.stderr and "bootstrap done" not in again.stderr
    after = json.loads(path.read_text())
    assert after["complete"] and after["project_id"] == pid
    assert [r["index"] for r in after["rounds"]] == [0, 1, 2, 3]
    assert after["rounds"][:3] == before["rounds"]
    assert [a[0] for a in after["rounds"][3]["asks"]] == [a[0] for a in rnd["asks"]]  # the interrupted round, finished
    w = after["webhooks"][-1]
    assert w["round"] == 3 and w["asked"] == w["by_webhook"] == len(rnd["asks"])
    assert w["answered"] == len(rnd["asks"]) - len(rnd["asks"]) // 2
    assert after["rounds"][3]["metrics"]["labels"]["total"] > before["rounds"][2]["metrics"]["labels"]["total"]
    curves = json.loads((out / "curves.json").read_text())
    assert [p["round"] for p in curves["runs"][0]["points"]] == [0, 1, 2, 3]
