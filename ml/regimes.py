"""Supervision regimes, the rules that derive them from labels, and their defaults."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal, TypeAlias

from ml.errors import TrainingError
from ml.samples import Sample


class Regime(StrEnum):
    UNSUPERVISED = "unsupervised"  # normal images only
    WEAK = "weak"  # defective images carry image-level labels only
    MIXED = "mixed"  # some defective images carry masks
    FULL = "full"  # every defective image carries a mask


#: train in the regime the labels allow (:func:`derive_regime`)
AUTO: Literal["auto"] = "auto"
#: what a training run is asked to train in: a regime, or AUTO
RegimeChoice: TypeAlias = Regime | Literal["auto"]


def parse_regime(text: str) -> RegimeChoice:
    """``"auto"`` or a :class:`Regime`'s value; TrainingError naming the choices otherwise."""
    if text == AUTO:
        return AUTO
    try:
        return Regime(text)
    except ValueError:
        raise TrainingError(f"unknown regime {text!r}; choose one of: auto, {', '.join(Regime)}") from None


@dataclass(frozen=True)
class RegimeSettings:
    """Per-regime training rules (SuperSimpleNet reference + the choices measured here).

    perlin_threshold: binarisation of Perlin noise; higher = smaller synthetic defects.
    stop_grad: detach the segmentation map fed to the classification head.
    clip_grad: gradient-norm clip, or None.
    flips: each defective image is seen as is, v-flipped, h-flipped and rotated 180 degrees.
    balanced: each epoch pairs every defective sample with one normal sample.
    distance_weighting: SegDecNet distance-transform weights on mask pixels.
    noise_sigma: std of the synthetic feature noise (in standardised units when ``standardize``).
    standardize: per-channel (f - mean) / std of the training features before the noise.
    image_score: "head" (the classification head) or "map_max" (maximum of the anomaly map).
    seg_weight: weight of the segmentation loss against the classification loss (1 as published).
    """

    perlin_threshold: float
    stop_grad: bool
    clip_grad: float | None
    flips: bool
    balanced: bool
    distance_weighting: bool
    noise_sigma: float = 0.015
    standardize: bool = False
    image_score: str = "head"
    seg_weight: float = 1.0


REGIME_DEFAULTS: dict[Regime, RegimeSettings] = {
    Regime.UNSUPERVISED: RegimeSettings(0.2, True, None, False, False, False),
    Regime.WEAK: RegimeSettings(0.4, False, 1.0, True, True, False),
    # MIXED and FULL: 0.4 here, 0.6 when the known masks show small defects (perlin_for_masks).
    # Distance weighting off: on magnetic-tile it raised AUPRO but cost pixel AP, pixel and
    # image AUROC (docs/RESULTS.md); --distance-weighting turns it on
    Regime.MIXED: RegimeSettings(0.4, False, 1.0, True, True, False),
    Regime.FULL: RegimeSettings(0.4, False, 1.0, True, True, False),
}

#: the Perlin threshold of the supervised regimes when the known defects are small
PERLIN_SMALL_DEFECTS = 0.6
#: defects are small when the known masks cover less than this share of their images on average
SMALL_DEFECT_AREA = 0.01
#: fewer known masks than this say too little about the defects' size: the default threshold
MIN_SIZING_MASKS = 5


def perlin_for_masks(areas: Sequence[float], default: float) -> float:
    """The Perlin threshold a MIXED or FULL run trains with, from the share of its image each
    known mask covers (``areas``, each in (0, 1]).

    The synthetic anomalies are sized like the real defects the masks show: their mean area
    under :data:`SMALL_DEFECT_AREA` (bsdata's pits, 0.35%) gives the paper's smaller anomalies
    (:data:`PERLIN_SMALL_DEFECTS`, about 2% of the image); larger defects (magnetic-tile, 10%)
    or fewer than :data:`MIN_SIZING_MASKS` non-empty masks give ``default`` (0.4, about 8%),
    which was level with 0.6 on bsdata with 5 to 20 masks. Measured on those two datasets
    (docs/RESULTS.md, "Masks and detection"): each threshold lost 1-5 image-AP points on
    the other dataset's kind of defects.
    """
    known = [a for a in areas if a > 0]
    if len(known) < MIN_SIZING_MASKS:
        return default
    return PERLIN_SMALL_DEFECTS if sum(known) / len(known) < SMALL_DEFECT_AREA else default


# The published sigma 0.015 was tuned to wide_resnet50_2 features. On the EfficientNet-lite
# features (std ~3.3) the model does not learn its synthetic anomalies at that scale: the
# unsupervised model stays at chance, and supervised models with few real defects lean on
# useless synthetic ones. Standardised features with sigma 0.5 were measured better in every
# regime; the map maximum is the better image score only without real defects to train the
# classification head on (docs/RESULTS.md, "Supervision regimes" and "Regime choices").
PUBLISHED_NOISE_BACKBONES = frozenset({"wide_resnet50_2"})
LITE_NOISE = {"noise_sigma": 0.5, "standardize": True}
UNSUPERVISED_LITE = {**LITE_NOISE, "image_score": "map_max"}


def backbone_defaults(regime: Regime, backbone: str) -> RegimeSettings:
    """A regime's defaults for a backbone: the published ones, or the lite-backbone noise."""
    s = REGIME_DEFAULTS[regime]
    if backbone in PUBLISHED_NOISE_BACKBONES:
        return s
    return replace(s, **(UNSUPERVISED_LITE if regime is Regime.UNSUPERVISED else LITE_NOISE))


def derive_regime(samples: Iterable[Sample]) -> Regime:
    """The regime the labels of a training set allow.

    No defective image: UNSUPERVISED; defective images but no masks: WEAK; some masks:
    MIXED; a mask on every defective image: FULL.
    """
    defective = [s for s in samples if s.label == 1]
    if not defective:
        return Regime.UNSUPERVISED
    masked = sum(1 for s in defective if s.pixels_known)
    if masked == 0:
        return Regime.WEAK
    return Regime.FULL if masked == len(defective) else Regime.MIXED


def apply_regime(samples: list[Sample], regime: Regime) -> list[Sample]:
    """Restrict training samples to what a forced regime may use.

    UNSUPERVISED drops defective images; WEAK ignores masks; FULL drops defective images
    without a mask; MIXED needs at least one mask and one image-level label or mask.
    """
    if regime is Regime.UNSUPERVISED:
        out = [s for s in samples if s.label == 0]
    elif regime is Regime.WEAK:
        out = [s if s.label == 0 else replace(s, has_mask=False) for s in samples]
    elif regime is Regime.FULL:
        out = [s for s in samples if s.label == 0 or s.pixels_known]
    else:
        out = list(samples)
    if not any(s.label == 0 for s in out):
        raise TrainingError("the training split holds no normal (label 0) image; every regime needs some")
    if regime is not Regime.UNSUPERVISED and not any(s.label == 1 for s in out):
        raise TrainingError(
            f"regime {regime.value} needs defective training images; the training split has none usable"
        )
    if regime is Regime.MIXED and not any(s.label == 1 and s.pixels_known for s in out):
        raise TrainingError("regime mixed needs at least one defective training image with a mask")
    return out


def loop_regime(samples: Iterable[Sample], min_defects: int) -> Regime | None:
    """The regime an active-learning round trains with: UNSUPERVISED while ``samples``
    hold fewer than ``min_defects`` labelled defective images, else None (derive it from
    the labels with :func:`derive_regime`).

    With a handful of labelled defects a supervised model learns less than the unsupervised
    one trained on the same normal images (docs/RESULTS.md, "Few labelled defects"), so the
    loop keeps training on the labelled and pseudo-normal images until enough defects
    are labelled; ``min_defects`` 0 turns the rule off.
    """
    if min_defects < 0:
        raise TrainingError(f"min_defects must be >= 0, got {min_defects}")
    n_defects = sum(1 for s in samples if s.label == 1)
    return Regime.UNSUPERVISED if n_defects < min_defects else None
