"""Calibration without a val split: folds, the scale translation between models, the choice
between a holdout and cross-fitting, and a cross-fitted run that trains on every label."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ml.calibration import (
    CROSSFIT_BELOW_DEFECTS,
    Anchors,
    CalibrationSource,
    calibration_source,
    concat_outputs,
    translate,
)
from ml.data import load_dataset
from ml.errors import TrainingError
from ml.evaluate import SampleOutputs
from ml.pipeline import calibration_plan, teaches_click_head, train_and_save
from ml.regimes import Regime
from ml.samples import PSEUDO_COLUMN, Dataset, Sample
from ml.splits import crossfit_folds
from ml.train import TrainConfig


def _samples(normal: int, masked: int, image_only: int, pseudo: int = 0) -> list[Sample]:
    out = [Sample(Path(f"n{i}.png"), 0, split="train", row=i) for i in range(normal)]
    out += [Sample(Path(f"m{i}.png"), 1, Path(f"m{i}_mask.png"), True, "train", 100 + i) for i in range(masked)]
    out += [Sample(Path(f"d{i}.png"), 1, split="train", row=200 + i) for i in range(image_only)]
    out += [
        Sample(Path(f"p{i}.png"), 0, split="train", row=300 + i, extra=((PSEUDO_COLUMN, "normal"),))
        for i in range(pseudo)
    ]
    return out


def test_every_label_is_in_exactly_one_fold_and_pseudo_labels_in_none() -> None:
    samples = _samples(normal=20, masked=5, image_only=4, pseudo=6)
    folds = crossfit_folds(samples, 3, seed=1)
    flat = [s.row for f in folds for s in f]
    assert sorted(flat) == sorted(s.row for s in samples if not s.is_pseudo)
    for fold in folds:
        assert {s.label_kind for s in fold} == {"normal", "mask", "image"}
    # the kinds are dealt so fold sizes differ by at most one
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert [[s.row for s in f] for f in crossfit_folds(samples, 3, seed=1)] == [[s.row for s in f] for f in folds]
    with pytest.raises(ValueError, match="at least 2"):
        crossfit_folds(samples, 1, seed=0)


def _outputs(scores: list[float], labels: list[int], maps: np.ndarray) -> SampleOutputs:
    return SampleOutputs(
        np.array(scores), maps.astype(np.float16), np.zeros((len(scores), 2)), [None] * len(scores), np.array(labels)
    )


def test_translation_puts_one_models_anchors_on_the_others() -> None:
    rng = np.random.default_rng(0)
    a = Anchors.of(_outputs([0.01, 0.02, 0.03, 0.9, 0.95], [0, 0, 0, 1, 1], rng.uniform(0.0, 0.3, (5, 8, 8))))
    b = Anchors.of(_outputs([0.2, 0.3, 0.25, 0.6, 0.7], [0, 0, 0, 1, 1], rng.uniform(0.1, 0.6, (5, 8, 8))))
    assert a.image_hi > a.image_lo and a.pixel_hi > a.pixel_lo
    # a's anchors land on b's, and the order of scores is kept
    lo_hi = 1 / (1 + np.exp(-np.array([a.image_lo, a.image_hi])))
    assert np.allclose(a.image_to(b, lo_hi), 1 / (1 + np.exp(-np.array([b.image_lo, b.image_hi]))))
    s = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(a.image_to(b, s)) > 0) and np.all(np.diff(a.pixel_to(b, s)) > 0)
    out = _outputs([0.5, 0.6], [0, 1], np.full((2, 4, 4), 0.5))
    moved, notes = translate(out, a, b)
    assert not notes and moved.maps.dtype == np.float16 and moved.maps.shape == (2, 4, 4)
    assert np.allclose(translate(out, a, a)[0].scores, out.scores)
    both = concat_outputs([out, moved])
    assert len(both.scores) == 4 and both.maps.shape == (4, 4, 4) and list(both.labels) == [0, 1, 0, 1]


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def test_a_model_that_scores_on_a_stretched_and_shifted_scale_is_brought_back() -> None:
    """The premise: two models that rank alike but score on different logit scales (an affine
    map between them) are put on one scale exactly, out-of-sample scores included."""
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(-3, 1, 40), rng.normal(2, 1, 10)])  # kept model's logits
    labels = [0] * 40 + [1] * 10
    px = rng.normal(-4, 1, (50, 6, 6))
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    kept = Anchors.of(_outputs(list(sig(z)), labels, sig(px)))
    fold = Anchors.of(_outputs(list(sig(2 * z + 1)), labels, sig(0.5 * px - 1)))
    unseen = np.array([-1.0, 0.0, 0.5])
    assert np.allclose(_logit(fold.image_to(kept, sig(2 * unseen + 1))), unseen, atol=1e-6)
    # maps are kept as float16, so their anchors carry its rounding
    assert np.allclose(_logit(fold.pixel_to(kept, sig(0.5 * unseen - 1))), unseen, atol=0.02)


def test_a_degenerate_spread_leaves_the_scores_as_they_are_and_says_so() -> None:
    # the fold model's training defects score no higher than its normals
    flat = Anchors.of(_outputs([0.3, 0.31, 0.3, 0.3], [0, 0, 1, 1], np.full((4, 3, 3), 1e-6)))
    good = Anchors.of(_outputs([0.01, 0.02, 0.9, 0.95], [0, 0, 1, 1], np.linspace(0.01, 0.5, 36).reshape(4, 3, 3)))
    out = _outputs([0.25, 0.6], [0, 1], np.full((2, 3, 3), 1e-3))
    moved, notes = translate(out, flat, good)
    assert np.array_equal(moved.scores, out.scores) and np.array_equal(moved.maps, out.maps)
    assert len(notes) == 2 and notes[0].startswith("image scores kept") and notes[1].startswith("pixel scores kept")
    assert np.all(np.isfinite(moved.scores))


def test_anchors_need_a_normal_image() -> None:
    with pytest.raises(ValueError, match="normal"):
        Anchors.of(_outputs([0.9], [1], np.zeros((1, 2, 2))))


def test_the_calibration_source_follows_the_labels() -> None:
    cfg = TrainConfig()
    few = _samples(normal=30, masked=3, image_only=4)
    assert calibration_source(few, cfg, has_val=True) is CalibrationSource.VAL
    assert calibration_source(few, cfg, has_val=False) is CalibrationSource.CROSSFIT
    plenty = _samples(normal=100, masked=10, image_only=CROSSFIT_BELOW_DEFECTS)
    assert calibration_source(plenty, cfg, has_val=False) is CalibrationSource.HOLDOUT
    assert calibration_source(plenty, replace(cfg, calibration="crossfit"), has_val=False) is CalibrationSource.CROSSFIT
    assert calibration_source(few, replace(cfg, calibration="holdout"), has_val=False) is CalibrationSource.HOLDOUT
    # an unsupervised model never trains on a defect: they all calibrate, from a holdout
    unsup = replace(cfg, regime=Regime.UNSUPERVISED)
    assert calibration_source(few, unsup, has_val=False) is CalibrationSource.HOLDOUT
    # fewer labelled defects than folds: nothing to cross-fit on
    assert calibration_source(_samples(30, 1, 1), cfg, has_val=False) is CalibrationSource.HOLDOUT
    # pseudo-normals count for nothing: with five labelled normals, three folds lack two each
    assert calibration_source(_samples(5, 3, 3, pseudo=40), cfg, has_val=False) is CalibrationSource.HOLDOUT
    assert calibration_source(_samples(6, 3, 3, pseudo=40), cfg, has_val=False) is CalibrationSource.CROSSFIT
    # the boundary: 49 labelled defects cross-fit, 50 do not
    at = CROSSFIT_BELOW_DEFECTS
    assert calibration_source(_samples(100, 0, at - 1), cfg, has_val=False) is CalibrationSource.CROSSFIT
    assert calibration_source(_samples(100, 0, at), cfg, has_val=False) is CalibrationSource.HOLDOUT
    with pytest.raises(TrainingError, match="crossfit_folds must be at least 2"):
        calibration_source(few, replace(cfg, crossfit_folds=1), has_val=False)
    with pytest.raises(TrainingError, match="calibration 'folds'.*auto, holdout, crossfit"):
        calibration_source(few, replace(cfg, calibration="folds"), has_val=False)


def test_the_plan_says_what_trains_so_a_click_head_counts_only_trained_masks() -> None:
    cfg = TrainConfig(click_head_steps=100)
    val = _samples(5, 2, 0)
    few = _samples(normal=30, masked=21, image_only=4)
    # a val split or cross-fitting: every training label trains
    assert calibration_plan(few, val, cfg) == (few, val, CalibrationSource.VAL)
    assert calibration_plan(few, [], cfg) == (few, [], CalibrationSource.CROSSFIT)
    assert teaches_click_head(few, cfg)
    # a holdout comes out of train: 21 labelled masks, but fewer than 20 left to teach a head
    plenty = _samples(normal=100, masked=21, image_only=CROSSFIT_BELOW_DEFECTS)
    train, hold, source = calibration_plan(plenty, [], cfg)
    assert source is CalibrationSource.HOLDOUT
    assert sorted(s.row for s in train + hold) == sorted(s.row for s in plenty)
    assert not {s.row for s in train} & {s.row for s in hold}
    assert teaches_click_head(plenty, cfg) and not teaches_click_head(train, cfg)


@pytest.mark.slow
def test_a_cross_fitted_run_trains_on_every_label(tiny_demo: Path, tmp_path: Path) -> None:
    full = load_dataset(tiny_demo)
    train = [s for s in full.samples if s.split == "train"]
    ds = Dataset(root=full.root, samples=tuple(train), source="no val")
    stages: list[tuple[str, int, int]] = []
    cfg = TrainConfig(
        backbone_weights="random",
        image_size=(64, 64),
        epochs=2,
        device="cpu",
        crossfit_folds=2,
        seed=0,
        click_head_steps=2,
        click_head_min_masks=5,
    )
    summary = train_and_save(ds, tmp_path / "m", cfg, progress=lambda st, d, t, _i: stages.append((st, d, t)))
    assert summary.calibration_source is CalibrationSource.CROSSFIT
    # the head learnt from these very masks: it is not judged on their cross-fitted predictions
    assert summary.click_head is not None and summary.mask_choice is not None
    assert summary.mask_choice.mean_iou and "click_head" not in summary.mask_choice.mean_iou
    assert summary.n_train == len(train) and summary.n_calibration == len(train)
    assert sum(summary.trained.n_train.values()) == len(train)  # no label withheld
    assert any("cross-fitted" in n for n in summary.thresholds.notes)
    assert 0 < summary.thresholds.image < 1 and 0 < summary.thresholds.pixel < 1
    cross = [(d, t) for st, d, t in stages if st == "crossfit"]
    assert cross and cross[-1] == (200, 200)
    # the train job's fraction (what `round --wait` shows) never goes back
    from backend.services.retrain import job_fraction

    assert [st for st, _d, _t in stages].index("click_head") < [st for st, _d, _t in stages].index("masks")
    fractions = [job_fraction(st, d, t, crossfit=True, click_head=True) for st, d, t in stages]
    assert fractions == sorted(fractions) and fractions[-1] <= 1.0
    # the same labels with a holdout: a fifth never trains
    held = train_and_save(ds, tmp_path / "h", replace(cfg, calibration="holdout"))
    assert held.calibration_source is CalibrationSource.HOLDOUT and held.n_train < len(train)
