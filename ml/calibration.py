"""Threshold calibration that withholds no scarce labels: cross-fitted predictions.

Without a val split a run used to set a holdout of its training labels aside for the
thresholds (:func:`ml.splits.holdout_split`): of five masks one never trained, and the
thresholds rested on a handful of defects. Cross-fitting instead trains ``k`` fold models,
each on every fold but one, and predicts the fold it left out; the thresholds are fitted
to those out-of-fold predictions of every labelled image, and the model that is kept is
trained on everything.

Two models do not score on one scale, so each fold model's predictions are translated onto
the kept model's scale through anchors both take on their own training images
(:class:`Anchors`): an image score by its place between the median logit of the training
normals and that of the training defects, a pixel score by its place between the median and
the 99.9th percentile of the training normals' pixel logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ml.calibration_choice import CROSSFIT_BELOW_DEFECTS, CalibrationChoice, CalibrationSource
from ml.data import load_sample_mask
from ml.errors import TrainingError
from ml.evaluate import SampleOutputs, run_samples
from ml.images import read_image
from ml.predict import Predictor
from ml.regimes import AUTO, Regime, derive_regime
from ml.samples import Sample
from ml.splits import crossfit_folds
from ml.train import ProgressFn, TrainedModel, fit
from ml.train_config import TrainConfig

_EPS = 1e-4  # maps are float16: probabilities are clipped before the logit
#: at most this many training normals are scored for a model's anchors
ANCHOR_NORMALS = 128
#: at most this many pixels decide the pixel anchors
ANCHOR_PIXELS = 2_000_000
PIXEL_HIGH_QUANTILE = 0.999
#: the least anchor spread (logits) that carries a scale from one model to another
MIN_SPREAD = 0.5
#: at most this many masked defects (seeded) decide a cross-fitted run's mask method
MAX_MASK_CASES = 30


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Anchors:
    """Two reference logits for image scores and two for pixel scores, taken by one model on
    training images. A spread (``hi - lo``) under :data:`MIN_SPREAD` cannot carry a scale:
    :func:`translate` then leaves that kind of score as it is."""

    image_lo: float
    image_hi: float
    pixel_lo: float
    pixel_hi: float

    @staticmethod
    def of(outputs: SampleOutputs, seed: int = 0) -> Anchors:
        """Anchors from a model's predictions on (part of) its training images.

        Image: median logit of the normals and of the defects (without defects, the normals'
        99th percentile). Pixel: median and 99.9th percentile of the normals' pixel logits
        (at most :data:`ANCHOR_PIXELS` of them, seeded).
        """
        labels = np.asarray(outputs.labels)
        normal = labels == 0
        if not normal.any():
            raise ValueError("anchors need at least one normal training image")
        li = _logit(outputs.scores)
        i_lo = float(np.median(li[normal]))
        i_hi = float(np.median(li[~normal])) if (~normal).any() else float(np.quantile(li[normal], 0.99))
        px = np.concatenate([outputs.maps[i].ravel() for i in np.flatnonzero(normal)])
        if len(px) > ANCHOR_PIXELS:
            px = np.random.default_rng(seed).choice(px, ANCHOR_PIXELS, replace=False)
        lp = _logit(px)
        p_lo, p_hi = float(np.median(lp)), float(np.quantile(lp, PIXEL_HIGH_QUANTILE))
        return Anchors(i_lo, i_hi, p_lo, p_hi)

    @property
    def image_spread(self) -> float:
        return self.image_hi - self.image_lo

    @property
    def pixel_spread(self) -> float:
        return self.pixel_hi - self.pixel_lo

    def image_to(self, other: Anchors, scores: np.ndarray) -> np.ndarray:
        """Sigmoid image scores of this model, translated onto ``other``'s scale (both spreads
        at least :data:`MIN_SPREAD`)."""
        u = (_logit(scores) - self.image_lo) / (self.image_hi - self.image_lo)
        return _sigmoid(other.image_lo + u * (other.image_hi - other.image_lo))

    def pixel_to(self, other: Anchors, maps: np.ndarray) -> np.ndarray:
        """Sigmoid pixel scores (any shape) of this model, translated onto ``other``'s scale (both
        spreads at least :data:`MIN_SPREAD`)."""
        u = (_logit(maps) - self.pixel_lo) / (self.pixel_hi - self.pixel_lo)
        return _sigmoid(other.pixel_lo + u * (other.pixel_hi - other.pixel_lo))


def translate(outputs: SampleOutputs, source: Anchors, target: Anchors) -> tuple[SampleOutputs, list[str]]:
    """``outputs`` of the model ``source`` was taken from, on the scale of ``target``'s model,
    and notes naming what could not be translated (a spread under :data:`MIN_SPREAD`: kept as is)."""
    notes = []
    scores, maps = outputs.scores, outputs.maps
    if min(source.image_spread, target.image_spread) >= MIN_SPREAD:
        scores = source.image_to(target, scores)
    else:
        notes.append(
            f"image scores kept untranslated: anchor spread {source.image_spread:.2f} / "
            f"{target.image_spread:.2f} logits (training defects barely above normals)"
        )
    if min(source.pixel_spread, target.pixel_spread) >= MIN_SPREAD:
        maps = source.pixel_to(target, maps.astype(np.float32)).astype(np.float16)
    else:
        notes.append(
            f"pixel scores kept untranslated: anchor spread {source.pixel_spread:.2f} / "
            f"{target.pixel_spread:.2f} logits (normal pixels all alike)"
        )
    return replace(outputs, scores=scores, maps=maps), notes


def anchor_samples(train: Sequence[Sample], seed: int) -> list[Sample]:
    """The training images a model's anchors are taken on: every labelled defect and up to
    :data:`ANCHOR_NORMALS` normals (seeded), in their original order."""
    normals = [i for i, s in enumerate(train) if s.label == 0]
    if len(normals) > ANCHOR_NORMALS:
        normals = sorted(np.random.default_rng(seed).choice(normals, ANCHOR_NORMALS, replace=False).tolist())
    keep = set(normals) | {i for i, s in enumerate(train) if s.label == 1}
    return [s for i, s in enumerate(train) if i in keep]


def calibration_source(train: Sequence[Sample], cfg: TrainConfig, has_val: bool) -> CalibrationSource:
    """How a run on ``train`` calibrates: the val split when there is one; otherwise as
    ``cfg.calibration`` asks, ``auto`` cross-fitting while fewer than
    :data:`CROSSFIT_BELOW_DEFECTS` labelled (not pseudo) defective images train.

    Cross-fitting needs a model that trains on defects (not UNSUPERVISED) and at least one
    labelled defect and two labelled normals per fold; otherwise a holdout is used.
    """
    if has_val:
        return CalibrationSource.VAL
    try:
        choice = CalibrationChoice(cfg.calibration)
    except ValueError:
        raise TrainingError(
            f"unknown calibration {cfg.calibration!r}; choose one of: {', '.join(CalibrationChoice)}"
        ) from None
    if choice is CalibrationChoice.HOLDOUT:
        return CalibrationSource.HOLDOUT
    if cfg.crossfit_folds < 2:
        raise TrainingError(f"crossfit_folds must be at least 2, got {cfg.crossfit_folds}")
    regime = derive_regime(train) if cfg.regime == AUTO else Regime(cfg.regime)
    truth = [s for s in train if not s.is_pseudo]
    n_def = sum(s.label == 1 for s in truth)
    n_norm = sum(s.label == 0 for s in truth)
    k = cfg.crossfit_folds
    feasible = regime is not Regime.UNSUPERVISED and n_def >= k and n_norm >= 2 * k
    if not feasible:
        return CalibrationSource.HOLDOUT
    if choice is CalibrationChoice.CROSSFIT or n_def < CROSSFIT_BELOW_DEFECTS:
        return CalibrationSource.CROSSFIT
    return CalibrationSource.HOLDOUT


@dataclass
class CrossFit:
    """Out-of-fold predictions of every labelled training image on the kept model's scale,
    and the masked defects' maps at their own resolution (for choosing the mask method)."""

    outputs: SampleOutputs
    mask_cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (image, map (H, W) on the kept scale, truth)
    folds: int
    notes: list[str]


def _fold_regime(samples: Sequence[Sample], regime: Regime) -> Regime:
    """The kept model's regime for a fold model, or WEAK when the fold's training part has no mask."""
    if regime in (Regime.MIXED, Regime.FULL) and not any(s.label == 1 and s.pixels_known for s in samples):
        return Regime.WEAK
    return regime


def concat_outputs(parts: Sequence[SampleOutputs]) -> SampleOutputs:
    """Predictions of several sample lists as one, in the order given."""
    return SampleOutputs(
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.maps for p in parts]),
        np.concatenate([p.embeddings for p in parts]),
        [g for p in parts for g in p.gt_masks],
        np.concatenate([p.labels for p in parts]),
    )


def crossfit(
    train: Sequence[Sample],
    kept: TrainedModel,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CrossFit:
    """Train ``kept.config.crossfit_folds`` fold models and predict each one's left-out fold.

    ``kept`` is the model trained on all of ``train``. Progress is one stage, ``crossfit``,
    counting folds (hundredths of a fold while one trains), so a bar fed from it never
    goes back. Pseudo-labels train in every fold model and are never predicted.
    """
    cfg = kept.config
    k = cfg.crossfit_folds
    folds = crossfit_folds(train, k, cfg.seed)
    pseudo = [s for s in train if s.is_pseudo]
    kept_pred = _predictor(kept)
    masked = [s for f in folds for s in f if s.label == 1 and s.pixels_known]
    if len(masked) > MAX_MASK_CASES:
        pick = np.random.default_rng(cfg.seed).choice(len(masked), MAX_MASK_CASES, replace=False)
        masked = [masked[int(i)] for i in sorted(pick)]
    chosen = {id(s) for s in masked}
    parts: list[SampleOutputs] = []
    cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    notes: list[str] = []
    for j, fold in enumerate(folds):
        rest = pseudo + [s for i, f in enumerate(folds) if i != j for s in f]
        regime = _fold_regime(rest, kept.regime)
        if regime is not kept.regime:
            notes.append(f"fold {j + 1} of {k} trained {regime.value}: its training part holds no mask")

        def report(stage: str, done: int, total: int, info: dict, j: int = j) -> None:
            inner = (0.2 if stage == "train" else 0.0) + (0.8 if stage == "train" else 0.2) * done / max(total, 1)
            if progress:
                progress("crossfit", j * 100 + min(99, int(inner * 100)), k * 100, {"fold": j + 1, "folds": k})

        model = fit(rest, replace(cfg, regime=regime), progress=report, should_stop=should_stop)
        pred = _predictor(model)
        # both models' anchors on the same images, all of which both trained on
        on = anchor_samples(rest, cfg.seed)
        source = Anchors.of(run_samples(pred, on), cfg.seed)
        target = Anchors.of(run_samples(kept_pred, on), cfg.seed)
        moved, why = translate(run_samples(pred, fold), source, target)
        parts.append(moved)
        notes += [f"fold {j + 1}: {w}" for w in why]
        pixels_move = not any(w.startswith("pixel") for w in why)
        for im, m, t in mask_cases(pred, [s for s in fold if id(s) in chosen]):
            cases.append((im, source.pixel_to(target, m).astype(np.float32) if pixels_move else m, t))
        del model, pred
        if progress:
            progress("crossfit", (j + 1) * 100, k * 100, {"fold": j + 1, "folds": k})
    return CrossFit(concat_outputs(parts), cases, k, notes)


def _predictor(model: TrainedModel) -> Predictor:
    return Predictor(model.extractor, model.model, model.config.image_size, image_score=model.settings.image_score)


def mask_cases(predictor: Predictor, samples: Sequence[Sample]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(image, map, truth)`` at the image's own resolution for each defective sample with a
    non-empty mask: what :func:`ml.refine.choose_method` chooses on."""
    cases = []
    for s in samples:
        if not (s.label == 1 and s.pixels_known):
            continue
        image = read_image(s.image)
        truth = load_sample_mask(s, image.shape[:2])
        if truth is None or not truth.any():
            continue
        cases.append((image, predictor.predict([image], refine=False)[0].pred_map, truth))
    return cases
