"""Train, calibrate, choose the mask method and save in one call: what the CLI and the service run.

Thresholds are calibrated on the dataset's ``val`` split. Without one, while labelled
defects are scarce, on cross-fitted predictions of every training label
(:mod:`ml.calibration`); otherwise on a seeded, label-stratified holdout of the training
split (``TrainConfig.holdout_fraction``) that is not trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ml.artifact import save_model
from ml.calibration import CalibrationChoice, CalibrationSource, calibration_source, crossfit, mask_cases
from ml.click_head import ClickHead
from ml.click_train import FLOOR_MASKS, ClickTrainConfig, click_case, train_click_head
from ml.data import Dataset, Sample, load_sample_mask
from ml.errors import TrainingError
from ml.evaluate import calibrate_outputs, metrics_from_outputs, run_samples
from ml.images import read_image
from ml.predict import Predictor, Thresholds
from ml.refine import MethodChoice, choose_method
from ml.regimes import Regime
from ml.splits import holdout_split
from ml.train import ProgressFn, TrainedModel, fit, resolve_device
from ml.train_config import TrainConfig

#: the prefix of the stages a refinement reports (:func:`refine_unsupervised`)
REFINE = "refine_"


@dataclass
class TrainSummary:
    """What a training run produced."""

    model_dir: Path
    trained: TrainedModel
    thresholds: Thresholds
    calibration_source: CalibrationSource
    n_train: int
    n_calibration: int
    val_metrics: dict | None
    mask_choice: MethodChoice | None = None
    click_head: ClickHead | None = None


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


def calibration_plan(
    train: list[Sample], val: list[Sample], cfg: TrainConfig
) -> tuple[list[Sample], list[Sample], CalibrationSource]:
    """What :func:`train_and_save` trains on, what calibrates its thresholds and where they come
    from: ``val`` as given; without one, cross-fitted predictions of ``train`` (all of it
    trains) or a seeded holdout taken out of ``train`` (:func:`ml.calibration.calibration_source`).
    Callers that plan around the training set (a progress bar's stages, whether a click head
    is taught) ask here, so they count what is trained on, not what was labelled."""
    source = calibration_source(train, cfg, has_val=bool(val))
    if source is CalibrationSource.HOLDOUT:
        train, val = holdout_split(
            train, cfg.holdout_fraction, cfg.seed, trains_on_defects=cfg.regime != Regime.UNSUPERVISED
        )
    return train, val, source


def train_and_save(
    dataset: Dataset,
    out_dir: Path,
    cfg: TrainConfig,
    threshold_mode: str = "f1",
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    refine_keep: float | None = None,
) -> TrainSummary:
    """Train on split=train, calibrate on split=val (without one: cross-fitted predictions or a
    holdout, :func:`ml.calibration.calibration_source`), write ``out_dir``.

    ``refine_keep``: when the model is UNSUPERVISED, retrain once on that fraction of the
    training images it scores lowest (:func:`refine_unsupervised`); None: no refinement.
    """
    labelled = list(dataset.select("train").samples)
    if not labelled:
        raise TrainingError(f"{dataset.source}: no rows with split=train")
    train, val, source = calibration_plan(labelled, list(dataset.select("val").samples), cfg)
    trained = fit(train, cfg, progress=progress, should_stop=should_stop)
    if refine_keep is not None and trained.regime is Regime.UNSUPERVISED:
        trained, train = refine_unsupervised(trained, train, refine_keep, progress, should_stop)
    predictor = Predictor(trained.extractor, trained.model, cfg.image_size, image_score=trained.settings.image_score)
    notes: tuple[str, ...] = ()
    if source is CalibrationSource.CROSSFIT:
        cross = crossfit(train, trained, progress, should_stop)
        outputs, cases = cross.outputs, cross.mask_cases
        notes = (
            f"no val split: calibrated on {cross.folds}-fold cross-fitted predictions of every training label",
            *cross.notes,
        )
    else:
        outputs = run_samples(
            predictor, val, progress=(lambda d, t: progress("calibrate", d, t, {})) if progress else None
        )
        cases = mask_cases(predictor, val)
        if source is CalibrationSource.HOLDOUT:
            notes = (f"no val split: calibrated on a {cfg.holdout_fraction:.0%} holdout of train",)
            if cfg.calibration == CalibrationChoice.CROSSFIT:
                notes += (
                    f"cross-fitting was asked for, but it needs a model that trains on defects, "
                    f"{cfg.crossfit_folds} labelled defects and {2 * cfg.crossfit_folds} labelled normals",
                )
    thresholds = calibrate_outputs(outputs, mode=threshold_mode, seed=cfg.seed)
    thresholds = replace(thresholds, notes=(*thresholds.notes, *notes))
    n_cal = len(outputs.labels)  # cross-fitted: every labelled training image, pseudo-labels not
    val_metrics = metrics_from_outputs(outputs, thresholds.image) if n_cal else None
    head = fit_click_head(train, cfg, progress, should_stop)
    if progress:
        progress("masks", 0, 1, {})
    # cross-fitted cases are training images, whose masks taught the head: it cannot be judged on them
    choice = choose_method(cases, thresholds.pixel, head=None if source is CalibrationSource.CROSSFIT else head)
    if progress:
        progress("masks", 1, 1, {})
    model_dir = save_model(out_dir, trained, thresholds, train, val_metrics, choice, head)
    return TrainSummary(model_dir, trained, thresholds, source, len(train), n_cal, val_metrics, choice, head)


def click_head_masks(samples: list[Sample]) -> list[Sample]:
    """The samples a click head learns from: defective, with a known mask."""
    return [s for s in samples if s.label == 1 and s.pixels_known and s.mask is not None]


def _head_needs(cfg: TrainConfig) -> int:
    """The training masks a click head needs under ``cfg`` (never fewer than FLOOR_MASKS)."""
    return max(cfg.click_head_min_masks, FLOOR_MASKS)


def teaches_click_head(train: list[Sample], cfg: TrainConfig) -> bool:
    """Whether training on ``train`` with ``cfg`` teaches a click head (steps asked for, and at
    least ``cfg.click_head_min_masks`` training images with a mask)."""
    return cfg.click_head_steps > 0 and len(click_head_masks(train)) >= _head_needs(cfg)


def fit_click_head(
    train: list[Sample],
    cfg: TrainConfig,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ClickHead | None:
    """A click head taught by the training masks at the images' own resolution (``ml.click_train``),
    reported as the ``click_head`` stage; None when ``cfg.click_head_steps`` is 0 or fewer than
    ``cfg.click_head_min_masks`` training images have a non-empty mask."""
    if not teaches_click_head(train, cfg):
        return None
    need = _head_needs(cfg)
    cases = []
    for s in click_head_masks(train):
        image = read_image(s.image)
        mask = load_sample_mask(s, image.shape[:2])
        case = click_case(image, mask) if mask is not None and mask.shape == image.shape[:2] else None
        if case is not None:
            cases.append(case)
    if len(cases) < need:
        return None
    report = (lambda d, t: progress("click_head", d, t, {})) if progress else None
    return train_click_head(
        cases,
        ClickTrainConfig(steps=cfg.click_head_steps, seed=cfg.seed),
        report,
        should_stop,
        pretrained=cfg.backbone_weights != "random",
        device=resolve_device(cfg.device),
        min_masks=need,
    )


def choose_mask_method(predictor: Predictor, samples: list[Sample], pixel_threshold: float) -> MethodChoice:
    """Choose how this model's proposals are made (``ml.refine.choose_method``) on the
    samples that are defective with a known mask, at their own resolution."""
    return choose_method(mask_cases(predictor, samples), pixel_threshold, head=predictor.click_head)
