"""A project's settings: one schema for the API's bodies, the services and the table's defaults."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.domain.enums import MaskCostModel
from ml import STRATEGIES, CalibrationChoice, ProfileName


def _no_bool(value: Any) -> Any:
    """Numbers only: JSON's true/false are not 1/0 here."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


class TrainDefaults(BaseModel):
    """Training overrides a project's rounds and retrains use (absent: the built-in default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: Annotated[int, Field(gt=0, description="Epochs instead of the profile's step budget.")] | None = None
    perlin_threshold: Annotated[float, Field(gt=0, description="Synthetic-defect size (higher: smaller).")] | None = (
        None
    )
    pseudo_normal_fraction: (
        Annotated[
            float,
            Field(
                ge=0,
                lt=1,
                description="Share of the still unlabelled pool, lowest scores first, that joins a round's "
                "training as pseudo-normal (default 0.5; 0 turns it off).",
            ),
        ]
        | None
    ) = None
    bootstrap_refine_fraction: (
        Annotated[
            float,
            Field(
                ge=0,
                lt=1,
                description="Share of the pool the bootstrap retrains on, lowest scores first (default 0.5; "
                "0 turns it off).",
            ),
        ]
        | None
    ) = None
    min_defects_supervised: (
        Annotated[
            int,
            Field(
                ge=0,
                description="Rounds train unsupervised until the labels hold this many defective images "
                "(default 20; 0 turns the rule off).",
            ),
        ]
        | None
    ) = None

    click_head_steps: (
        Annotated[
            int,
            Field(
                ge=0,
                le=100_000,
                description="Training steps of the one-click head a retrain teaches from the masks (at least "
                "click_head_min_masks needed; default 800; 0: none, clicks are segmented from the image alone).",
            ),
        ]
        | None
    ) = None

    click_head_min_masks: (
        Annotated[
            int,
            Field(
                ge=2,
                le=100_000,
                description="Training masks a retrain needs to teach the one-click head (default 20: taught by "
                "5, it segmented unseen defect types worse than the image alone).",
            ),
        ]
        | None
    ) = None

    calibration: CalibrationChoice | None = Field(
        default=None,
        description="How a retrain without val labels fits its thresholds: auto (default; cross-fitted "
        "predictions while fewer than 50 labelled defects train, which costs three extra trainings, else a "
        "20% holdout), holdout or crossfit.",
    )

    _numbers = field_validator("*", mode="before")(_no_bool)


class ProjectSettings(BaseModel):
    """A project's editable settings; None leaves a setting as it is (and, on creation, at
    :data:`DEFAULT_SETTINGS`'s value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_height: Annotated[int, Field(ge=32, le=4096)] | None = None
    image_width: Annotated[int, Field(ge=32, le=4096)] | None = None
    backbone: str | None = Field(default=None, description="Feature backbone (ml's BACKBONES).")
    profile: ProfileName | None = Field(default=None, description="Training profile.")
    cost_image_label: Annotated[float, Field(gt=0)] | None = None
    cost_mask_label: Annotated[float, Field(gt=0)] | None = None
    train_defaults: TrainDefaults | None = Field(
        default=None, description="Training overrides; replaces the project's whole set when given."
    )
    strategy: str | None = Field(default=None, description="Acquisition strategy of the rounds.")
    round_budget: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Cost units a round spends by default."
    )
    mask_share: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="At most this share of a round's budget buys masks."
    )
    mask_cost_model: MaskCostModel | None = Field(
        default=None,
        description=(
            "What a mask label costs on the curves: flat (always cost_mask_label) or edit (a verdict's cost plus "
            "the share of the mask the annotator changed from the proposal, of the difference)."
        ),
    )
    auto_round_labels: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Close the open round once this many of its images are answered."
    )

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str | None) -> str | None:
        from ml import BACKBONES

        if value is not None and value not in BACKBONES:
            raise ValueError(f"unknown {value!r}; choose one of {', '.join(BACKBONES)}")
        return value

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str | None) -> str | None:
        if value is not None and value not in STRATEGIES:
            raise ValueError(f"unknown {value!r}; choose one of {', '.join(STRATEGIES)}")
        return value

    def given(self) -> dict[str, Any]:
        """The settings this object sets (not None), as typed values (a subclass's extra fields,
        such as a new project's name, are not settings)."""
        return {name: getattr(self, name) for name in ProjectSettings.model_fields if getattr(self, name) is not None}


#: a new project's settings (the table's column defaults; built unvalidated, as checking the backbone loads torch)
DEFAULT_SETTINGS = ProjectSettings.model_construct(
    image_height=256,
    image_width=256,
    backbone="tf_efficientnet_lite0",
    profile=ProfileName.FAST,
    cost_image_label=1.0,
    cost_mask_label=10.0,
    train_defaults=TrainDefaults(),
    strategy="hybrid",
    round_budget=30.0,
    mask_share=0.5,
    mask_cost_model=MaskCostModel.EDIT,
)
