"""The simulated annotator: answers a Label Studio task from the ground truth of its image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ml import Sample
from simulator.errors import SimulationError


@dataclass(frozen=True)
class AnnotatorModel:
    """How the simulated annotator behaves.

    ``error_rate``: probability of giving the wrong verdict (a wrong Defect comes without a
    mask; a wrong OK drops the mask). Lead times are seconds per verdict and per painted
    mask, jittered (lognormal, sigma 0.25) per answer.
    """

    error_rate: float = 0.0
    verdict_seconds: float = 4.0
    mask_seconds: float = 40.0


class SimulatedAnnotator:
    """Answers a task from the ground truth of the image it shows (seeded).

    ``truth``: the ground truth of each pool image, by the service's image id (the task's
    ``defectloop_image_id``). ``mistakes`` counts the wrong verdicts given so far.
    """

    def __init__(self, truth: dict[int, Sample], model: AnnotatorModel, seed: int) -> None:
        if not 0.0 <= model.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {model.error_rate}")
        self.truth, self.model, self.seed = truth, model, seed
        self.rng = np.random.default_rng(seed)
        self.mistakes = 0

    def begin_round(self, index: int) -> None:
        """Draw round ``index``'s mistakes and lead times from a stream of their own, so a
        resumed run answers its later rounds as an uninterrupted one would."""
        self.rng = np.random.default_rng((self.seed, index))

    def answer(self, data: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
        """The annotation result for a task's ``data`` (validated) and the seconds it took.

        Raises SimulationError for a task showing an image without ground truth here."""
        from labelstudio.conversions import brush_result, choice_result, validate_result
        from ml import read_mask

        image_id = data.get("defectloop_image_id")
        if not isinstance(image_id, int) or image_id not in self.truth:
            raise SimulationError(f"task shows image {image_id!r}, which has no ground truth in this simulation")
        s = self.truth[image_id]
        truth = s.label == 1
        verdict = truth
        if self.rng.random() < self.model.error_rate:
            verdict, self.mistakes = not truth, self.mistakes + 1
        result = [choice_result(verdict)]
        seconds = self.model.verdict_seconds
        if data.get("ask") == "mask" and verdict:
            seconds = self.model.mask_seconds
            if truth and s.pixels_known and s.mask is not None:
                mask = read_mask(s.mask)
                if mask.any():
                    result.append(brush_result(mask))
        validate_result(result)
        return result, float(seconds * self.rng.lognormal(0.0, 0.25))
