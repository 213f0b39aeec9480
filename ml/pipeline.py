"""Train, calibrate, choose the mask method and save in one call: what the CLI and the service run.

Thresholds are calibrated on the dataset's ``val`` split; without one, a seeded,
label-stratified holdout of the training split (``TrainConfig.holdout_fraction``) is set
aside for calibration and not trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.artifact import save_model
from ml.data import Dataset, Sample, load_sample_mask
from ml.errors import TrainingError
from ml.evaluate import calibrate_outputs, metrics_from_outputs, run_samples
from ml.images import read_image
from ml.predict import Predictor, Thresholds
from ml.refine import MethodChoice, choose_method
from ml.regimes import Regime
from ml.splits import holdout_split
from ml.train import ProgressFn, TrainedModel, fit
from ml.train_config import TrainConfig

#: the prefix of the stages a refinement reports (:func:`refine_unsupervised`)
REFINE = "refine_"


@dataclass
class TrainSummary:
    """What a training run produced."""

    model_dir: Path
    trained: TrainedModel
    thresholds: Thresholds
    calibration_source: str  # "val" or "holdout"
    n_train: int
    n_calibration: int
    val_metrics: dict | None
    mask_choice: MethodChoice | None = None


def refine_unsupervised(
    trained: TrainedModel,
    samples: list[Sample],
    keep: float,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[TrainedModel, list[Sample]]:
    """Pseudo-normal refinement: retrain on the ``keep`` fraction of ``samples`` that ``trained`` scores lowest.

    For an UNSUPERVISED model trained on a pool presumed normal: hidden defects score high
    and are left out of the second training. Returns the new model and the samples kept
    (in their original order). Progress is reported as stages of their own (``refine_score``,
    then ``refine_features`` and ``refine_train``), so a bar fed from it never starts over.
    """
    if not 0 < keep <= 1:
        raise TrainingError(f"refinement keeps a fraction in (0, 1], got {keep}")
    cfg = trained.config
    pred = Predictor(trained.extractor, trained.model, cfg.image_size, image_score=trained.settings.image_score)
    scores = run_samples(
        pred, samples, progress=(lambda d, t: progress(f"{REFINE}score", d, t, {})) if progress else None
    ).scores
    lowest = np.argsort(scores, kind="stable")[: max(1, round(keep * len(samples)))]
    kept = [samples[i] for i in sorted(lowest.tolist())]
    again = (lambda stage, d, t, info: progress(f"{REFINE}{stage}", d, t, info)) if progress else None
    return fit(kept, cfg, progress=again, should_stop=should_stop), kept


def train_and_save(
    dataset: Dataset,
    out_dir: Path,
    cfg: TrainConfig,
    threshold_mode: str = "f1",
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    refine_keep: float | None = None,
) -> TrainSummary:
    """Train on split=train, calibrate on split=val (or a holdout), write ``out_dir``.

    ``refine_keep``: when the model is UNSUPERVISED, retrain once on that fraction of the
    training images it scores lowest (:func:`refine_unsupervised`); None: no refinement.
    """
    train = list(dataset.select("train").samples)
    val = list(dataset.select("val").samples)
    if not train:
        raise TrainingError(f"{dataset.source}: no rows with split=train")
    source = "val"
    if not val:
        train, val = holdout_split(
            train, cfg.holdout_fraction, cfg.seed, trains_on_defects=cfg.regime != Regime.UNSUPERVISED
        )
        source = "holdout"
    trained = fit(train, cfg, progress=progress, should_stop=should_stop)
    if refine_keep is not None and trained.regime is Regime.UNSUPERVISED:
        trained, train = refine_unsupervised(trained, train, refine_keep, progress, should_stop)
    predictor = Predictor(trained.extractor, trained.model, cfg.image_size, image_score=trained.settings.image_score)
    cal = val
    outputs = run_samples(predictor, cal, progress=(lambda d, t: progress("calibrate", d, t, {})) if progress else None)
    thresholds = calibrate_outputs(outputs, mode=threshold_mode, seed=cfg.seed)
    if source == "holdout":
        thresholds = Thresholds(
            thresholds.image,
            thresholds.pixel,
            thresholds.image_method,
            thresholds.pixel_method,
            (*thresholds.notes, f"no val split: calibrated on a {cfg.holdout_fraction:.0%} holdout of train"),
        )
    val_metrics = metrics_from_outputs(outputs, thresholds.image) if len(cal) else None
    choice = choose_mask_method(
        predictor, cal, thresholds.pixel, progress=(lambda d, t: progress("masks", d, t, {})) if progress else None
    )
    model_dir = save_model(out_dir, trained, thresholds, train, val_metrics, choice)
    return TrainSummary(model_dir, trained, thresholds, source, len(train), len(cal), val_metrics, choice)


def choose_mask_method(
    predictor: Predictor,
    samples: list[Sample],
    pixel_threshold: float,
    progress: Callable[[int, int], None] | None = None,
) -> MethodChoice:
    """Choose how this model's proposals are made (``ml.refine.choose_method``) on the
    calibration samples that are defective with a known mask, at their own resolution."""
    cases = []
    masked = [s for s in samples if s.label == 1 and s.pixels_known]
    for k, s in enumerate(masked, start=1):
        if progress:
            progress(k, len(masked))
        image = read_image(s.image)
        truth = load_sample_mask(s, image.shape[:2])
        if truth is None or not truth.any():
            continue
        cases.append((image, predictor.predict([image], refine=False)[0].pred_map, truth))
    return choose_method(cases, pixel_threshold)
