"""Rich progress bars fed by the ML core's ``progress(stage, done, total, info)`` callback."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_TITLES = {
    "features": "backbone features",
    "train": "training",
    "calibrate": "calibrating",
    "masks": "choosing the mask method",
    "evaluate": "evaluating",
    "predict": "predicting",
    "refine_score": "scoring to refine",
    "refine_features": "features (refined)",
    "refine_train": "training (refined)",
    "crossfit": "cross-fitting",
    "click_head": "teaching the click head",
}


class ProgressReporter:
    """A context manager and callable: one bar per stage, loss and ETA shown while training."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Self:
        if self.enabled:
            self._progress = Progress(
                TextColumn("{task.description:<18}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(et, ev, tb)

    def __call__(self, stage: str, done: int, total: int, info: dict[str, Any]) -> None:
        """The ML core's progress callback: ``done`` of ``total`` in ``stage``; ``info`` may hold the loss."""
        if self._progress is None:
            return
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(_TITLES.get(stage, stage), total=total, info="")
        text = f"loss {info['loss']:.4f}" if "loss" in info else ""
        self._progress.update(self._tasks[stage], completed=done, total=total, info=text)
