"""The benchmark scripts: each one starts (imports resolve, ``--help`` works) without the
optional packages it needs only at run time, and the accuracy benchmark's shared pieces
keep their contracts."""

from __future__ import annotations

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
    name, profile = train_matrix.parse_profile("p:base=paper,epochs=6,adaptor_lr=1e-3")
    assert (name, profile.epochs, profile.adaptor_lr, profile.upscale) == ("p", 6, 1e-3, 2)
