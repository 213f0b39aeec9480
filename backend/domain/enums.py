"""The domain's closed sets of values: the service's own, stored by the tables as checked strings,
and the ones ml defines (regime, profile, ask policy and kind), re-exported so that the API and
the services name them from one place."""

from __future__ import annotations

import enum

from ml import AskKind as AskKind
from ml import AskPolicy as AskPolicy
from ml import ProfileName as ProfileName
from ml import Regime as Regime


class Split(enum.StrEnum):
    POOL = "pool"
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class LabelSource(enum.StrEnum):
    HUMAN = "human"
    IMPORT = "import"
    PSEUDO = "pseudo"


class ImportLabels(enum.StrEnum):
    """Which labels a labelled dataset's import keeps (a plain folder has none to keep)."""

    ALL = "all"  # every label of the dataset
    TEST = "test"  # the test split's only: the rest joins the pool unlabelled, as on a new line
    NONE = "none"  # none: every image into the pool


class MaskOrigin(enum.StrEnum):
    """How an answered mask came to be, against the proposal its task showed."""

    ACCEPTED = "accepted"  # the proposal submitted unchanged
    EDITED = "edited"  # the proposal corrected
    DRAWN = "drawn"  # painted without a proposal


class MaskCostModel(enum.StrEnum):
    """What a mask label costs: ``flat`` always ``cost_mask_label``; ``edit`` a verdict's cost plus
    the share of the mask the annotator had to change (``Label.mask_edit``) of the difference, so a
    mask drawn from nothing costs ``cost_mask_label`` and an accepted proposal a verdict's cost."""

    FLAT = "flat"
    EDIT = "edit"


class RoundStatus(enum.StrEnum):
    PLANNED = "planned"
    ANNOTATING = "annotating"
    TRAINING = "training"
    DONE = "done"
    FAILED = "failed"
