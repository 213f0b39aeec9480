"""What a run without a val split may ask for and where its thresholds came from
(:mod:`ml.calibration` does the work; this module loads no torch, for the command line)."""

from __future__ import annotations

from enum import StrEnum


class CalibrationSource(StrEnum):
    """Where a run's thresholds come from."""

    VAL = "val"  # the dataset's val split
    HOLDOUT = "holdout"  # a share of the training labels, not trained on
    CROSSFIT = "crossfit"  # out-of-fold predictions of every training label


class CalibrationChoice(StrEnum):
    """What a run without a val split asks for (``TrainConfig.calibration``)."""

    AUTO = "auto"  # cross-fit while labelled defects are scarce, else a holdout
    HOLDOUT = "holdout"
    CROSSFIT = "crossfit"


#: ``auto`` cross-fits while a run has fewer labelled defective training images than this
CROSSFIT_BELOW_DEFECTS = 50
