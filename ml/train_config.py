"""What decides a training run: the profiles (schedule and head size) and :class:`TrainConfig`,
which is stored with the model. The loop that runs a config is in :mod:`ml.train`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ml.errors import TrainingError
from ml.profiles import PROFILES, Profile, ProfileName
from ml.regimes import AUTO, Regime, RegimeChoice, RegimeSettings, backbone_defaults
from ml.supersimplenet.features import DEFAULT_BACKBONE


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (stored with the model)."""

    backbone: str = DEFAULT_BACKBONE
    backbone_weights: str = "pretrained"  # "pretrained", "random" (tests) or a file path
    image_size: tuple[int, int] = (256, 256)
    profile: str = ProfileName.FAST  # a ProfileName, or a profile an experiment added to PROFILES
    epochs: int | None = None  # overrides the profile
    regime: RegimeChoice = AUTO
    seed: int = 0
    device: str = "auto"
    noise_sigma: float | None = None  # overrides the regime/backbone default
    standardize_features: bool | None = None  # overrides the regime/backbone default
    image_score: str | None = None  # "head" or "map_max"; overrides the regime/backbone default
    adaptor_lr: float | None = None  # overrides the profile's
    head_lr: float | None = None  # overrides the profile's
    perlin_threshold: float | None = None  # overrides the regime default
    distance_weighting: bool | None = None  # overrides the regime default
    stop_grad: bool | None = None  # overrides the regime default
    seg_weight: float | None = None  # overrides the regime default
    dt_w_pos: float = 3.0
    dt_power: float = 2.0
    holdout_fraction: float = 0.2  # used for thresholds when there is no val split
    calibration: str = "auto"  # without a val split: "auto", "holdout" or "crossfit" (ml.calibration)
    crossfit_folds: int = 3  # folds of a cross-fitted calibration
    # steps of the one-click head's training when the training set has enough masks
    # (ml.click_train; 0: no head, clicks use the image alone); the CLI and the service ask for 800
    click_head_steps: int = 0
    # the masks a click head needs (ml.click_train.MIN_MASKS: fewer taught a head worse than the image rule)
    click_head_min_masks: int = 20

    def profile_spec(self) -> Profile:
        """The named profile with this config's overrides (learning rates, epochs); TrainingError
        for an unknown profile."""
        if self.profile not in PROFILES:
            raise TrainingError(f"unknown profile {self.profile!r}; choose one of: {', '.join(PROFILES)}")
        p = PROFILES[self.profile]
        if self.adaptor_lr is not None:
            p = replace(p, adaptor_lr=self.adaptor_lr)
        if self.head_lr is not None:
            p = replace(p, head_lr=self.head_lr)
        # explicit epochs mean exactly that many: the profile's step cap no longer applies
        return replace(p, epochs=self.epochs, max_steps=None) if self.epochs is not None else p

    def regime_settings(self, regime: Regime) -> RegimeSettings:
        """The regime's defaults for this backbone, with this config's explicit overrides."""
        s = backbone_defaults(regime, self.backbone)
        if self.noise_sigma is not None:
            s = replace(s, noise_sigma=self.noise_sigma)
        if self.standardize_features is not None:
            s = replace(s, standardize=self.standardize_features)
        if self.image_score is not None:
            if self.image_score not in ("head", "map_max"):
                raise TrainingError(f"image_score must be 'head' or 'map_max', got {self.image_score!r}")
            s = replace(s, image_score=self.image_score)
        if self.perlin_threshold is not None:
            s = replace(s, perlin_threshold=self.perlin_threshold)
        if self.distance_weighting is not None:
            s = replace(s, distance_weighting=self.distance_weighting)
        if self.stop_grad is not None:
            s = replace(s, stop_grad=self.stop_grad)
        if self.seg_weight is not None:
            s = replace(s, seg_weight=self.seg_weight)
        return s

    def to_json(self) -> dict:
        """The fields as JSON values (``image_size`` a list), as stored in a model's config.json."""
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        return d
