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
    proc = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120, check=False)
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
