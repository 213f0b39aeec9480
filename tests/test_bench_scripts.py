"""The benchmark scripts: each one starts (imports resolve, ``--help`` works) without the
optional packages it needs only at run time, and the accuracy benchmark's shared pieces
keep their contracts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ml.data import Dataset, Sample

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_help(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


@pytest.fixture
def anomalib_accuracy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import anomalib_accuracy

    return anomalib_accuracy


def test_training_set_keeps_the_rows_each_regime_can_train_on(anomalib_accuracy, tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    rows = (
        Sample(p, 0, split="train", row=1),
        Sample(p, 1, p, True, split="train", row=2),
        Sample(p, 1, None, False, split="train", row=3),  # image-level only
        Sample(p, 1, None, False, split="test", row=4),
        Sample(p, 0, split="val", row=5),
    )
    ds = Dataset(tmp_path, rows)
    unsup = anomalib_accuracy.training_set(ds, "unsupervised")
    full = anomalib_accuracy.training_set(ds, "full")
    assert [s.row for s in unsup.samples] == [1, 4, 5]
    assert [s.row for s in full.samples] == [1, 2, 4, 5]


def test_compare_studies_reads_a_study_and_its_flat_copy_alike(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A study stopped before it wrote its curves is kept in docs/bench/ as a flat copy of its
    rounds and reference files; it must load as the study it was copied from."""
    import json
    import shutil

    monkeypatch.syspath_prepend(str(BENCH))
    import compare_studies

    flat = BENCH.parent / "docs" / "bench" / "simulate_bsdata_128x320_partial"
    live = tmp_path / "study"
    (live / "runs" / "hybrid-seed0").mkdir(parents=True)
    (live / "reference").mkdir()
    shutil.copy(flat / "hybrid-seed0_rounds.json", live / "runs" / "hybrid-seed0" / "rounds.json")
    shutil.copy(flat / "reference_seed0.json", live / "reference" / "seed0.json")

    from_flat = compare_studies.load_runs("h", flat, "hybrid", rounds=2)
    assert from_flat == compare_studies.load_runs("h", live, "hybrid", rounds=2)
    rec = json.loads((flat / "hybrid-seed0_rounds.json").read_text())
    assert [r.seed for r in from_flat] == [0]
    assert from_flat[0].points == [r["metrics"] for r in rec["rounds"]][:3]
    with pytest.raises(SystemExit, match="no recorded runs of 'random'"):
        compare_studies.load_runs("r", flat, "random", rounds=None)
    (live / "reference" / "seed0.json").unlink()
    with pytest.raises(SystemExit, match="no full-supervision reference for seed 0"):
        compare_studies.load_runs("h", live, "hybrid", rounds=None)


def test_mask_counts_gathers_runs_renamed_once_per_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import mask_counts

    def row(name: str, seed: int, ap: float) -> str:
        return json.dumps(
            {"name": name, "seed": seed, "n_train": {"mask": 5}, "regime": "mixed", "metrics": {"image_ap": ap}}
        )

    src = tmp_path / "src.jsonl"
    src.write_text(
        "\n".join([row("n5-p4", 0, 0.9), row("n5-p4", 0, 0.9), row("n5-p4", 1, 0.8), row("x", 0, 0.1)]) + "\n"
    )
    out = tmp_path / "after.jsonl"
    mask_counts.gather(out, [f"{src}:n5-p4=n5"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["name"], r["seed"], r["measured_as"]) for r in rows] == [("n5", 0, "n5-p4"), ("n5", 1, "n5-p4")]
    assert "| n5 | 5 | mixed | 0,1 |" in mask_counts.table(out)
    with pytest.raises(SystemExit, match="no run named nope"):
        mask_counts.gather(out, [f"{src}:nope=n0"])
    with pytest.raises(SystemExit, match="is not FILE:NAME=AS"):
        mask_counts.gather(out, [f"{src}:n5-p4"])


def test_train_matrix_run_specs_are_typed_and_typos_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import train_matrix

    assert train_matrix.parse_run("a:standardize_features=off,epochs=3,noise_sigma=0.5,masks=2") == (
        "a",
        {"standardize_features": False, "epochs": 3, "noise_sigma": 0.5, "masks": 2},
    )
    with pytest.raises(SystemExit, match="expected a boolean"):
        train_matrix.parse_run("a:standardize_features=ture")
    with pytest.raises(SystemExit, match="unknown key 'epoch'"):
        train_matrix.parse_run("a:epoch=3")
    # int fields and the dataset keys are ints, calibration a string
    assert train_matrix.parse_run("b:crossfit_folds=2,noval=1,calibration=crossfit,seg_weight=0.3") == (
        "b",
        {"crossfit_folds": 2, "noval": 1, "calibration": "crossfit", "seg_weight": 0.3},
    )
    name, profile = train_matrix.parse_profile("p:base=paper,epochs=6,adaptor_lr=1e-3")
    assert (name, profile.epochs, profile.adaptor_lr, profile.upscale) == ("p", 6, 1e-3, 2)
