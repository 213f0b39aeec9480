"""Dataset readers (labels.csv folders and the MVTec AD layout) and their validation.

Format A (the shared datasets' format): a folder with ``labels.csv`` holding the columns
``file``, ``label`` (0/1), ``mask`` (path or empty), ``has_mask`` (optional; default 1 when
``mask`` is set or the label is 0), ``split`` (train / val / test; other values are kept and
ignored unless selected) and any extra columns, which are kept. Paths are relative to the
CSV's folder (absolute paths are accepted too). A CSV file may also be given directly.

Format B: the MVTec AD layout (``train/good``, ``test/<type>``,
``ground_truth/<type>/<stem>_mask.png``), detected when there is no labels.csv.

Validation collects every problem with its file and row before raising one
:class:`~ml.errors.DataError`.

The types read into (:class:`~ml.samples.Sample`, :class:`~ml.samples.Dataset`) live in
:mod:`ml.samples` and split planning in :mod:`ml.splits`; both are re-exported here, where
callers have always imported them.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ml.errors import DataError
from ml.images import read_image, read_mask
from ml.samples import PSEUDO_COLUMN as PSEUDO_COLUMN
from ml.samples import SPLITS as SPLITS
from ml.samples import Dataset as Dataset
from ml.samples import Sample as Sample
from ml.splits import SplitPlan as SplitPlan
from ml.splits import assign_splits as assign_splits

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


# ----------------------------------------------------------------------------- loading


def load_dataset(path: Path | str, *, check_pixels: bool = True) -> Dataset:
    """Read a dataset folder (format A or B) or a labels CSV file and validate it.

    Args:
        path: a folder with labels.csv, an MVTec-layout folder, or a CSV file.
        check_pixels: decode every image and mask (catches truncated files, size
            mismatches and empty masks). Without it only the file presence is checked.

    Raises:
        DataError: listing every problem found, each with its row and file.
    """
    dataset = read_dataset(path)
    validate(dataset, check_pixels=check_pixels)
    return dataset


def is_dataset(path: Path) -> bool:
    """True when ``path`` is a labels CSV, a folder with labels.csv, or an MVTec layout."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".csv"
    return (path / "labels.csv").is_file() or (path / "train" / "good").is_dir() or (path / "test").is_dir()


def read_dataset(path: Path | str) -> Dataset:
    """Parse a dataset without checking its files (CSV-level problems still raise)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        return _read_labels_csv(path)
    if (path / "labels.csv").is_file():
        return _read_labels_csv(path / "labels.csv")
    if (path / "train" / "good").is_dir() or (path / "test").is_dir():
        return _read_mvtec(path)
    raise DataError(
        f"{path}: not a dataset: expected labels.csv (file,label,mask,has_mask,split) "
        "or the MVTec AD layout (train/good, test/<type>, ground_truth/<type>)"
    )


def _parse_bool01(value: str, column: str, where: str, problems: list[str]) -> int | None:
    v = value.strip()
    if v in ("0", "1"):
        return int(v)
    if v.lower() in ("0.0", "1.0", "true", "false"):
        return 1 if v.lower() in ("1.0", "true") else 0
    problems.append(f"{where}: {column} must be 0 or 1, got {value!r}")
    return None


def _read_labels_csv(csv_path: Path) -> Dataset:
    root = csv_path.parent
    problems: list[str] = []
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{csv_path}: cannot read CSV ({e})") from e
    missing = [c for c in ("file", "label") if c not in columns]
    if missing:
        raise DataError(f"{csv_path}: missing required column(s) {', '.join(missing)}; found {columns}")
    known = {"file", "label", "mask", "has_mask", "split"}
    extra_cols = tuple(c for c in columns if c not in known)
    samples: list[Sample] = []
    for i, raw in enumerate(rows, start=2):  # row 1 is the header
        r = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        where = f"{csv_path.name} row {i} ({r.get('file') or '?'})"
        if not r.get("file"):
            problems.append(f"{csv_path.name} row {i}: empty file column")
            continue
        label = _parse_bool01(r.get("label", ""), "label", where, problems)
        mask_rel = r.get("mask", "")
        has_mask_raw = r.get("has_mask", "")
        if has_mask_raw == "":
            has_mask = bool(mask_rel) or label == 0
        else:
            hm = _parse_bool01(has_mask_raw, "has_mask", where, problems)
            has_mask = bool(hm)
        if label is None:
            continue
        if label == 1 and has_mask and not mask_rel:
            problems.append(f"{where}: has_mask=1 but the mask column is empty")
            has_mask = False
        samples.append(
            Sample(
                image=root / r["file"],
                label=label,
                mask=(root / mask_rel) if mask_rel else None,
                has_mask=has_mask,
                split=r.get("split", "") or "none",
                row=i,
                extra=tuple((c, r.get(c, "")) for c in extra_cols),
            )
        )
    if problems:
        raise DataError(f"{csv_path}: {len(problems)} problem(s)", problems)
    return Dataset(root=root, samples=tuple(samples), source=str(csv_path), extra_columns=extra_cols)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _read_mvtec(root: Path) -> Dataset:
    samples: list[Sample] = []
    row = 0
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        for type_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            defect_type = type_dir.name
            for img in _images_in(type_dir):
                row += 1
                if defect_type == "good":
                    samples.append(Sample(img, 0, None, True, split, row, (("defect_type", "good"),)))
                    continue
                mask = root / "ground_truth" / defect_type / f"{img.stem}_mask.png"
                has = mask.is_file()
                samples.append(Sample(img, 1, mask if has else None, has, split, row, (("defect_type", defect_type),)))
    if not samples:
        raise DataError(f"{root}: MVTec layout detected but no images found")
    return Dataset(root=root, samples=tuple(samples), source="mvtec", extra_columns=("defect_type",))


# ----------------------------------------------------------------------------- validation


def sample_problem(sample: Sample, *, check_pixels: bool = True) -> str | None:
    """The first problem with one sample (without its row prefix), or None when it is usable."""
    s = sample
    if not s.image.is_file():
        return "image file not found"
    if s.mask is not None and not s.mask.is_file() and (s.has_mask or s.label == 1):
        return f"mask file not found: {s.mask}"
    if not check_pixels:
        return None
    try:
        img = read_image(s.image)
    except DataError as e:
        return str(e)
    if s.mask is None or not s.mask.is_file():
        return None
    try:
        mask = read_mask(s.mask)
    except DataError as e:
        return f"mask {e}"
    if mask.shape != img.shape[:2]:
        return (
            f"mask {s.mask.name} is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{img.shape[1]}x{img.shape[0]} (WxH)"
        )
    if s.label == 1 and s.has_mask and not mask.any():
        return f"defective image with has_mask=1 has an all-zero mask {s.mask.name}"
    if s.label == 0 and mask.any():
        return f"normal image (label 0) has defect pixels in mask {s.mask.name}"
    return None


def validate(dataset: Dataset, *, check_pixels: bool = True) -> None:
    """Check every sample; raise one DataError listing every problem (file and row)."""
    problems: list[str] = []
    seen: dict[Path, int] = {}
    for s in dataset.samples:
        where = f"row {s.row} ({s.image})" if dataset.source != "mvtec" else str(s.image)
        key = s.image.resolve()
        if key in seen:
            problems.append(f"{where}: duplicate of row {seen[key]}")
            continue
        seen[key] = s.row
        problem = sample_problem(s, check_pixels=check_pixels)
        if problem:
            problems.append(f"{where}: {problem}")
    if problems:
        raise DataError(f"{dataset.source}: {len(problems)} problem(s)", problems)


def load_sample_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray | None:
    """The ground-truth mask ``bool (H, W)``: zeros for normal images, None when unknown."""
    if sample.label == 0:
        return np.zeros(shape, dtype=bool)
    if not sample.pixels_known or sample.mask is None:
        return None
    return read_mask(sample.mask)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_labels_csv(dataset: Dataset, csv_path: Path) -> None:
    """Write the dataset as format A; paths relative to the CSV's folder (atomic)."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    base = csv_path.parent.resolve()

    def rel(p: Path | None) -> str:
        return "" if p is None else os.path.relpath(p.resolve(), base)

    tmp = csv_path.with_name(f".{csv_path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "mask", "has_mask", "split", *dataset.extra_columns])
        for s in dataset.samples:
            extra = dict(s.extra)
            w.writerow(
                [rel(s.image), s.label, rel(s.mask), int(s.has_mask), s.split]
                + [extra.get(c, "") for c in dataset.extra_columns]
            )
    tmp.replace(csv_path)


def describe(dataset: Dataset, splits: Sequence[str] = SPLITS) -> str:
    """A one-line-per-split summary: normal / defective with mask / image-level only."""
    lines = []
    for split in splits:
        c = dataset.select(split).counts()
        if sum(c.values()):
            lines.append(f"{split}: {c['normal']} normal, {c['mask']} defective with mask, {c['image']} image-level")
    return "\n".join(lines)
