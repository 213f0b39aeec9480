"""Planning splits: seeded, label-stratified, group-aware assignment of train / val / test,
with thinning of the training labels (to simulate a labelling budget), and the holdout a
training run takes from its samples to fit thresholds when there is no val split.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ml.samples import SPLITS, Dataset, Sample


@dataclass(frozen=True)
class SplitPlan:
    """How to (re)assign splits and which training labels to keep.

    ``train_masks``/``train_defects``: None keeps all; an int keeps that many (seeded).
    ``group_pattern``: a regex whose first match groups files that must share a split
    (e.g. one part photographed repeatedly); defaults to one group per file.
    """

    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.3
    keep_existing: bool = True
    group_pattern: str | None = None
    train_defects: int | None = None
    train_masks: int | None = None


def _group_key(sample: Sample, pattern: str | None) -> str:
    name = sample.image.name
    if pattern:
        m = re.search(pattern, name)
        if m:
            return m.group(1) if m.groups() else m.group(0)
    return name


def assign_splits(dataset: Dataset, plan: SplitPlan) -> Dataset:
    """Seeded, stratified (by label), group-aware split assignment plus label thinning.

    Samples already in train/val/test keep their split when ``plan.keep_existing``; the rest
    are assigned. Defective training images beyond ``train_defects`` are dropped; beyond
    ``train_masks`` they lose their mask (become image-level labels).
    """
    rng = np.random.default_rng(plan.seed)
    out: list[Sample] = []
    pending = [s for s in dataset.samples if not (plan.keep_existing and s.split in SPLITS)]
    kept = [s for s in dataset.samples if plan.keep_existing and s.split in SPLITS]
    assigned: dict[int, str] = {}
    for label in (0, 1):
        groups: dict[str, list[Sample]] = {}
        for s in pending:
            if s.label == label:
                groups.setdefault(_group_key(s, plan.group_pattern), []).append(s)
        keys = sorted(groups)
        rng.shuffle(keys)
        n = sum(len(groups[k]) for k in keys)
        n_test, n_val, acc = plan.test_fraction * n, plan.val_fraction * n, 0
        for k in keys:
            split = "test" if acc < n_test else "val" if acc < n_test + n_val else "train"
            for s in groups[k]:
                assigned[s.row] = split
            acc += len(groups[k])
    kept_rows = {s.row for s in kept}
    for s in dataset.samples:
        out.append(s if s.row in kept_rows else replace(s, split=assigned[s.row]))
    out = _thin_training_labels(out, plan, rng)
    return replace(dataset, samples=tuple(out))


def _thin_training_labels(samples: list[Sample], plan: SplitPlan, rng: np.random.Generator) -> list[Sample]:
    train_def = [i for i, s in enumerate(samples) if s.split == "train" and s.label == 1]
    order = list(rng.permutation(len(train_def)))
    drop: set[int] = set()
    if plan.train_defects is not None:
        drop = {train_def[j] for j in order[plan.train_defects :]}
    kept_def = [train_def[j] for j in order if train_def[j] not in drop]
    with_mask = [i for i in kept_def if samples[i].pixels_known]
    unmask: set[int] = set()
    if plan.train_masks is not None:
        unmask = set(with_mask[plan.train_masks :])
    result = []
    for i, s in enumerate(samples):
        if i in drop:
            continue
        result.append(replace(s, has_mask=False) if i in unmask else s)
    return result


def _n_held(n: int, fraction: float) -> int:
    """How many of ``n`` samples of one kind a holdout takes: the fraction, rounded down,
    leaving at least one to train on."""
    return min(math.floor(n * fraction), max(n - 1, 0))


def holdout_split(
    samples: Sequence[Sample], fraction: float, seed: int, trains_on_defects: bool = True
) -> tuple[list[Sample], list[Sample]]:
    """Seeded, label-stratified holdout (for thresholds when no val split exists).

    Every label kind (normal, mask, image-level) gives the same share: image-level defects
    carry no pixel truth, but the image threshold needs defects, and a holdout of masked
    defects alone is a handful in a loop round (and none in a WEAK one). At least one sample
    of each kind stays in training.
    ``trains_on_defects`` False (an UNSUPERVISED model, which never trains on a defective
    image): every defective image goes to the holdout, where it calibrates the threshold.
    Pseudo-labels (:attr:`Sample.is_pseudo`) all train and never calibrate, unless too few
    ground-truth normal images exist to hold one out (a bootstrap on a pool presumed
    normal, or a round whose answers are nearly all defects): the threshold is fitted to
    human labels, not to the presumed normals whose hidden defects would push it up.
    """
    rng = np.random.default_rng(seed + 7919)
    truth = [s for s in samples if not s.is_pseudo]
    pseudo = [s for s in samples if s.is_pseudo]
    if _n_held(sum(s.label == 0 for s in truth), fraction) < 1:
        truth, pseudo = list(samples), []
    train, hold = list(pseudo), []
    for kind in ("normal", "mask", "image"):
        group = [s for s in truth if s.label_kind == kind]
        if kind != "normal" and not trains_on_defects:
            hold += group
            continue
        order = rng.permutation(len(group))
        n_hold = _n_held(len(group), fraction)
        hold += [group[i] for i in order[:n_hold]]
        train += [group[i] for i in order[n_hold:]]
    return train, hold


def crossfit_folds(samples: Sequence[Sample], k: int, seed: int) -> list[list[Sample]]:
    """``k`` seeded folds for cross-fitted calibration, each label kind (normal, mask,
    image-level) dealt round-robin so that every fold holds its share of each.

    Pseudo-labels are in no fold: they always train (see :func:`holdout_split`). Every
    sample that is not pseudo is in exactly one fold. ValueError for ``k`` below 2.
    """
    if k < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {k}")
    rng = np.random.default_rng(seed + 104729)
    folds: list[list[Sample]] = [[] for _ in range(k)]
    truth = [s for s in samples if not s.is_pseudo]
    start = 0
    for kind in ("normal", "mask", "image"):
        group = [s for s in truth if s.label_kind == kind]
        for j, i in enumerate(rng.permutation(len(group))):
            folds[(start + j) % k].append(group[int(i)])
        start = (start + len(group)) % k  # the next kind fills the folds the last one left short
    return folds
