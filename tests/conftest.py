"""Shared fixtures: tiny generated datasets and images written to temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.demo_data import DemoSpec, generate

torch.set_num_threads(2)
# services and commands the tests start teach no click head unless a test asks for one (minutes each)
os.environ.setdefault("DEFECTLOOP_CLICK_HEAD_STEPS", "0")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset (64x64 images): 16/6 train, 6/4 val, 8/4 test."""
    root = tmp_path_factory.mktemp("tiny_demo")
    spec = DemoSpec(
        train_normal=16,
        train_defective=6,
        val_normal=6,
        val_defective=4,
        test_normal=8,
        test_defective=4,
        size=64,
        seed=3,
    )
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
