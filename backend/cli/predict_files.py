"""`defectloop predict`: score image files, write a CSV, heatmap overlays and pseudo-masks."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2

from backend.cli.progress import ProgressReporter
from ml import IMAGE_SUFFIXES, DataError, heatmap_overlay, load_model, mask_png, read_image

UNCERTAINTY_KEYS = ("score_margin", "score_entropy", "map_max", "map_score_disagreement", "map_uncertain_fraction")


def collect_images(paths: list[Path]) -> list[Path]:
    """Image files named directly, and those found recursively under named folders."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    if not found:
        raise DataError(f"no images found in {', '.join(map(str, paths))}")
    return found


def _out_name(path: Path, used: set[str]) -> str:
    name = path.stem
    if name in used:
        name = f"{name}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    used.add(name)
    return name


def predict_files(
    model_dir: Path,
    paths: list[Path],
    out: Path,
    batch_size: int,
    device: str,
    backbone_weights: str | None,
    quiet: bool,
) -> int:
    """Predict every image; unreadable images are reported in the CSV's error column, not fatal."""
    loaded = load_model(model_dir, device=device, backbone_weights=backbone_weights)
    predictor = loaded.predictor
    files = collect_images(paths)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    csv_tmp = out / ".predictions.csv.tmp"
    with csv_tmp.open("w", newline="") as fh, ProgressReporter(enabled=not quiet) as rep:
        w = csv.writer(fh)
        w.writerow(["file", "score", "decision", "threshold", *UNCERTAINTY_KEYS, "overlay", "mask", "error"])
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            images, ok = [], []
            for f in chunk:
                try:
                    images.append(read_image(f))
                    ok.append(f)
                except DataError as e:
                    w.writerow([str(f), "", "", "", *[""] * len(UNCERTAINTY_KEYS), "", "", str(e)])
            for f, img, pred in zip(ok, images, predictor.predict(images) if images else [], strict=True):
                name = _out_name(f, used)
                overlay = heatmap_overlay(img, pred.pred_map, pred.pred_mask)
                cv2.imwrite(str(out / "overlays" / f"{name}.png"), overlay[:, :, ::-1])
                cv2.imwrite(str(out / "masks" / f"{name}.png"), mask_png(pred.pred_mask))
                w.writerow(
                    [
                        str(f),
                        f"{pred.score:.6f}",
                        "defective" if pred.decision else "ok",
                        f"{predictor.thresholds.image:.6f}",
                        *[f"{pred.uncertainty[k]:.6f}" for k in UNCERTAINTY_KEYS],
                        f"overlays/{name}.png",
                        f"masks/{name}.png",
                        "",
                    ]
                )
            rep("predict", min(start + batch_size, len(files)), len(files), {})
    csv_tmp.replace(out / "predictions.csv")
    return len(files)
