"""`defectloop assist`: one-click masks for the clicks in a CSV, with their latency.

CLICKS.csv has a header with ``file,x,y`` and optional ``x2,y2`` (a box): pixels of the
original image, ``file`` relative to the CSV's folder or absolute. Each image gets
``DIR/<file stem>.png`` (0/255, the image's size; several rows on one image: the union of
their masks) and ``DIR/latency.json`` holds ``p50_ms``, ``p95_ms`` and each click's
milliseconds (the mask; reading the file excluded), timed with the model already loaded. A
point is segmented by MODEL_DIR's click head when it has one (trained from its masks,
``ml.click_head``), else from the image alone (``ml.assist``); latency.json records which
(``segmenter``). A bad row (a click outside the image, a missing or
unreadable file, a non-numeric coordinate) is one line naming the row; the others are done.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ml import AssistError, Click, DataError, assist_mask, click_head_of, mask_png, read_image


@dataclass(frozen=True)
class ClickRow:
    row: int  # the CSV line number (header = 1)
    file: Path
    click: Click


def read_clicks(csv_path: Path) -> tuple[list[ClickRow], list[str]]:
    """The CSV's rows as clicks, and one message per row that cannot be read."""
    rows, errors = [], []
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "x", "y"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{csv_path}: missing column(s) {', '.join(sorted(missing))} (need file,x,y[,x2,y2])")
        for line, rec in enumerate(reader, start=2):
            try:
                coords = [float(rec[k]) for k in ("x", "y")]
                box = [float(rec[k]) for k in ("x2", "y2") if (rec.get(k) or "").strip()]
            except (TypeError, ValueError):
                errors.append(f"{csv_path}:{line}: x, y, x2, y2 must be numbers")
                continue
            if len(box) == 1:
                errors.append(f"{csv_path}:{line}: a box needs both x2 and y2")
                continue
            f = Path(rec["file"] or "")
            rows.append(
                ClickRow(
                    line,
                    f if f.is_absolute() else csv_path.parent / f,
                    Click(coords[0], coords[1], *box) if box else Click(coords[0], coords[1]),
                )
            )
    return rows, errors


def assist_files(model_dir: Path, clicks_csv: Path, out: Path, say_error: Callable[[str], None] = print) -> dict:
    """Run every click; write the masks and latency.json; return latency.json's content."""
    head = click_head_of(model_dir)  # verifies the directory (checksums) first
    assist_mask(np.zeros((64, 64, 3), np.uint8), Click(32, 32), head)  # warm-up, not timed
    rows, errors = read_clicks(clicks_csv)
    for e in errors:
        say_error(e)
    out.mkdir(parents=True, exist_ok=True)
    masks: dict[Path, np.ndarray] = {}
    timings = []
    for r in rows:
        where = f"{clicks_csv}:{r.row} ({r.file.name})"
        try:
            image = read_image(r.file)
            t0 = time.perf_counter()
            mask = assist_mask(image, r.click, head)
            ms = 1000 * (time.perf_counter() - t0)
        except (DataError, AssistError, FileNotFoundError) as e:
            errors.append(f"{where}: {e}")
            say_error(errors[-1])
            continue
        masks[r.file] = masks[r.file] | mask if r.file in masks else mask
        timings.append({"row": r.row, "file": str(r.file), "ms": round(ms, 2), "pixels": int(mask.sum())})
    for f, m in masks.items():
        cv2.imwrite(str(out / f"{f.stem}.png"), mask_png(m))
    all_ms = np.array([t["ms"] for t in timings]) if timings else None
    report = {
        "model_dir": str(model_dir),
        "segmenter": "click_head" if head is not None else "image",
        "clicks": len(timings),
        "errors": errors,
        "p50_ms": float(np.percentile(all_ms, 50)) if all_ms is not None else None,
        "p95_ms": float(np.percentile(all_ms, 95)) if all_ms is not None else None,
        "per_click": timings,
    }
    (out / "latency.json").write_text(json.dumps(report, indent=2))
    return report
