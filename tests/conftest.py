"""Shared fixtures: tiny generated datasets and images written to temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.demo_data import DemoSpec, generate

SHARED_DATASETS = Path(os.environ.get("DEFECTLOOP_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset (64x64 images): 16/6 train, 6/4 val, 8/4 test."""
    root = tmp_path_factory.mktemp("tiny_demo")
    spec = DemoSpec(train_normal=16, train_defective=6, val_normal=6, val_defective=4, test_normal=8, test_defective=4, size=64, seed=3)
    generate(root, spec)
    return root


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default demo dataset (256x256)."""
    root = tmp_path_factory.mktemp("demo")
    generate(root, DemoSpec())
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def write_png(path: Path, arr: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    img = arr[:, :, ::-1] if arr.ndim == 3 and arr.shape[2] == 3 else arr
    assert cv2.imwrite(str(path), img)
    return path


def write_csv(path: Path, rows: list[list[object]], header: str = "file,label,mask,has_mask,split") -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(str(c) for c in r) for r in rows) + "\n")
    return path
