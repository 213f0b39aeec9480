"""A study's settings, its data (the test split and the pool) and what keys its records."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ml import DataError, Dataset, Sample, SplitPlan, assign_splits, load_dataset
from simulator.annotator import AnnotatorModel


@dataclass(frozen=True)
class SimConfig:
    """One study: strategies x seeds runs of ``rounds`` rounds of ``budget`` cost units."""

    data: Path
    out: Path
    strategies: tuple[str, ...] = ("random", "hybrid")
    rounds: int = 4
    budget: float = 30.0
    seeds: tuple[int, ...] = (0,)
    ask: str = "auto"
    mask_share: float = 0.5
    cost_image: float = 1.0
    cost_mask: float = 10.0
    mask_cost: str = "edit"  # the projects' mask cost model: edit or flat
    annotator: AnnotatorModel = field(default_factory=AnnotatorModel)
    image_size: tuple[int, int] = (256, 256)
    backbone: str | None = None
    epochs: int | None = None
    test_fraction: float = 0.3
    pseudo_normal_fraction: float | None = None  # None: the project default
    min_defects_supervised: int | None = None  # None: the project default
    reference: bool = True
    device: str = "auto"

    def to_json(self) -> dict[str, Any]:
        """The config as JSON; ``data`` is absolute, so a study named from another directory
        or by a relative path keys the same runs and reference."""
        d = asdict(self)
        d["data"], d["out"] = str(Path(self.data).resolve()), str(self.out)
        return d

    def run_key(self) -> dict[str, Any]:
        """What makes a recorded run reusable: everything but the list of strategies and seeds
        and the number of rounds (a run with fewer rounds is extended, one with more is read up
        to ``rounds``)."""
        return run_key(self.to_json())

    def reference_key(self) -> dict[str, Any]:
        """What the full-supervision reference depends on: the data, its test split and the
        training settings, not the loop's (strategies, budgets, costs, the annotator)."""
        d = self.to_json()
        return {k: d[k] for k in ("data", "test_fraction", "image_size", "backbone", "epochs")}


def run_key(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config (as ``SimConfig.to_json`` writes it) that keys a run."""
    d = json.loads(json.dumps(config))  # as it reads back from rounds.json
    for k in ("out", "strategies", "seeds", "reference", "device", "rounds"):
        d.pop(k, None)
    return d


def prepare_data(cfg: SimConfig) -> tuple[Dataset, list[Sample], list[Sample]]:
    """The dataset with a test split (seeded 0 and stratified when it has none), the pool
    samples (everything not test) and the test samples. DataError when the split cannot
    measure anything or the pool has nothing to find."""
    ds = load_dataset(cfg.data)
    if not any(s.split == "test" for s in ds.samples):
        ds = assign_splits(
            ds, SplitPlan(seed=0, val_fraction=0.0, test_fraction=cfg.test_fraction, keep_existing=False)
        )
    test = [s for s in ds.samples if s.split == "test"]
    pool = [s for s in ds.samples if s.split != "test"]
    problems = []
    if not test or len({s.label for s in test}) < 2:
        problems.append("the test split needs normal and defective images")
    if not pool:
        problems.append("no images left for the pool")
    if not any(s.label == 1 for s in pool):
        problems.append("the pool holds no defective image: there is nothing for annotators to find")
    if problems:
        raise DataError(f"{ds.root}: " + "; ".join(problems))
    return ds, pool, test


def files_root(ds: Dataset) -> Path:
    """The deepest folder holding every image and mask of ``ds``: what the private service
    imports from and Label Studio serves. A labels CSV may name files outside its own
    folder (a split written elsewhere), so its folder is not enough."""
    files = [p.resolve() for s in ds.samples for p in (s.image, s.mask) if p is not None]
    if not files:
        return ds.root.resolve()
    common = Path(os.path.commonpath(files))
    return common.parent if common in files else common
