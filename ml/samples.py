"""What a dataset is once read: samples (an image and what is known about it) and the
ordered, immutable collection of them. No file is read here; :mod:`ml.data` reads and
validates datasets, :mod:`ml.splits` plans their splits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

#: The splits a sample can belong to (any other value is kept, and ignored unless selected).
SPLITS = ("train", "val", "test")

#: The extra column that marks a pseudo-label (its value says which, e.g. ``normal``).
PSEUDO_COLUMN = "pseudo"


@dataclass(frozen=True)
class Sample:
    """One image and what is known about it.

    ``has_mask`` means ``mask`` is valid pixel ground truth. A normal image (label 0) has
    known pixels (all normal) whether or not a mask file is given.
    """

    image: Path
    label: int
    mask: Path | None = None
    has_mask: bool = False
    split: str = "none"
    row: int = 0
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def pixels_known(self) -> bool:
        """True when every pixel's ground truth is known (normal, or defective with a mask)."""
        return self.label == 0 or (self.has_mask and self.mask is not None)

    @property
    def label_kind(self) -> str:
        """``normal``, ``mask`` (defective with a pixel mask) or ``image`` (image-level only)."""
        if self.label == 0:
            return "normal"
        return "mask" if self.pixels_known else "image"

    def extra_value(self, key: str, default: str = "") -> str:
        return dict(self.extra).get(key, default)

    @property
    def is_pseudo(self) -> bool:
        """True for a pseudo-label (an extra ``pseudo`` column set, e.g. ``normal``): the label
        is the model's presumption, not ground truth, so it trains but never calibrates."""
        return self.extra_value(PSEUDO_COLUMN) not in ("", "0")


@dataclass(frozen=True)
class Dataset:
    """An ordered, immutable collection of samples rooted at a folder."""

    root: Path
    samples: tuple[Sample, ...]
    source: str = "labels.csv"
    extra_columns: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.samples)

    def select(self, split: str | Iterable[str]) -> Dataset:
        """The samples of one split (or of several)."""
        wanted = {split} if isinstance(split, str) else set(split)
        return replace(self, samples=tuple(s for s in self.samples if s.split in wanted))

    def filter(self, keep: Callable[[Sample], bool]) -> Dataset:
        return replace(self, samples=tuple(s for s in self.samples if keep(s)))

    def counts(self) -> dict[str, int]:
        """Counts of label kinds: normal, mask, image."""
        c = Counter(s.label_kind for s in self.samples)
        return {"normal": c["normal"], "mask": c["mask"], "image": c["image"]}
