"""One exception hierarchy for the ML core; callers map it to exit codes or HTTP."""

from __future__ import annotations


class DefectloopError(Exception):
    """Base class of every error the ML core raises on purpose."""


class DataError(DefectloopError):
    """A dataset (or a single image) cannot be used; ``problems`` lists every reason."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            shown = "\n".join(f"  - {p}" for p in self.problems[:50])
            more = len(self.problems) - 50
            if more > 0:
                shown += f"\n  ... and {more} more"
            message = f"{message}\n{shown}"
        super().__init__(message)


class BackboneWeightsError(DefectloopError):
    """Pretrained backbone weights are missing, unreadable or do not match."""


class ArtifactError(DefectloopError):
    """A model directory is missing, corrupt or incompatible."""


class TrainingError(DefectloopError):
    """Training cannot start or run with the given data and settings."""
