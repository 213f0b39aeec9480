"""Training profiles: a schedule and head size under a name. The product's are :class:`ProfileName`;
experiments may register more in :data:`PROFILES` under names of their own (``bench/train_matrix.py``).
Imports nothing heavy, so the service can name profiles without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ProfileName(StrEnum):
    """The published profiles: FAST (a fixed 320-step budget, small heads, 1/8 resolution: the
    CPU default) and PAPER (the SuperSimpleNet paper's 300 epochs, heads and 1/4 resolution)."""

    FAST = "fast"
    PAPER = "paper"


@dataclass(frozen=True)
class Profile:
    """A training schedule and head size.

    ``upscale`` sets the feature resolution (2: 1/4 of the input, as published; 1: 1/8).
    ``max_steps`` makes the optimiser-step count fixed: the epochs follow from it, so a
    retrain's cost stops growing with the dataset, and a training set with few defects
    (short balanced epochs) still gets the whole budget (None: ``epochs`` epochs).
    ``mask_steps`` grows that budget with the pixel supervision: a training set whose
    defective images all have masks gets ``max_steps * (1 + mask_steps)`` steps, one with a
    share ``s`` of them masked ``max_steps * (1 + mask_steps * s)`` (a mask's loss needs more
    steps to converge than an image label's; docs/RESULTS.md, "The step budget against the
    mask count"). 0 keeps the budget fixed.
    ``adaptor_lr`` / ``head_lr``: AdamW learning rates (the paper's 1e-4 / 2e-4; a short
    schedule converges in its step budget only with larger ones).
    """

    epochs: int
    batch_size: int
    upscale: int
    seg_hidden: int
    cls_hidden: int
    cls_kernel: int
    max_steps: int | None = None
    mask_steps: float = 0.0
    adaptor_lr: float = 1e-4
    head_lr: float = 2e-4


PROFILES: dict[str, Profile] = {
    ProfileName.PAPER: Profile(epochs=300, batch_size=32, upscale=2, seg_hidden=1024, cls_hidden=128, cls_kernel=5),
    # epochs is informational for fast: its 320-step budget decides (about 40 epochs of 250 images),
    # up to 640 steps as masks cover more of the defects;
    # 10x the paper's learning rates get the heads to convergence within that budget (docs/RESULTS.md)
    ProfileName.FAST: Profile(
        epochs=40,
        batch_size=32,
        upscale=1,
        seg_hidden=256,
        cls_hidden=32,
        cls_kernel=3,
        max_steps=320,
        mask_steps=1.0,
        adaptor_lr=1e-3,
        head_lr=2e-3,
    ),
}
