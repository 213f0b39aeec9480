"""One-click masks guided by the model's anomaly map, against the image-only click (``ml.assist``).

For each model in ``RUN_DIR/models/<regime>/`` (``bench/refine_models.sh``) and every defective
image of ``--split`` in ``RUN_DIR/full.csv`` with a valid mask, the click at the innermost point
of the true mask (as ``bench/refine_masks.py``), median and mean IoU with the true mask of:

- ``image``: ``ml.assist.assist_mask`` (128 px window; ``image256``: a 256 px window);
- ``map<a>``: the map's component under the click at ``a`` times the map's maximum within 4 px
  of the click;
- ``and`` / ``or``: ``map0.5`` intersected / united with ``image``;
- ``ref_auto`` / ``ref_grabcut``: ``ml.refine`` on the map restricted to ``map0.5``;
- ``<candidate>@k``: the candidate where the map at the click reaches ``k`` times the model's
  pixel threshold, else ``image``.

Prints per model and per defect type; ``--out`` keeps every row (JSON).

    python bench/click_map.py runs/refine/magnetic-tile --split val --regimes weak,mixed5,mixed20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from refine_masks import iou_dice  # noqa: E402

import ml.assist as assist_module  # noqa: E402
from ml.artifact import load_model  # noqa: E402
from ml.assist import Click, assist_mask  # noqa: E402
from ml.data import load_dataset  # noqa: E402
from ml.images import read_image, read_mask  # noqa: E402
from ml.refine import RefineMethod, innermost, keep_touching, refine_mask  # noqa: E402

ALPHAS = (0.3, 0.5, 0.7, 0.85)
GATES = (1.0, 1.5, 2.0, 3.0)


def map_component(
    pred_map: np.ndarray, click: tuple[int, int], alpha: float, radius: int = 4
) -> tuple[np.ndarray, float]:
    """The component of ``pred_map >= alpha * m`` under the click, ``m`` the map's maximum within
    ``radius`` px of it; returns the bool ``(H, W)`` mask and ``m``."""
    disc = np.zeros(pred_map.shape, np.uint8)
    cv2.circle(disc, click, radius, 1, -1)
    peak = float(pred_map[disc > 0].max())
    return keep_touching(pred_map >= alpha * peak, disc > 0), peak


def click_row(image: np.ndarray, truth: np.ndarray, pred_map: np.ndarray, t_px: float) -> dict[str, float]:
    """Every candidate's IoU with ``truth`` for one click at the innermost point of ``truth``."""
    x, y = innermost(truth)
    row: dict[str, float] = {}
    img_mask = assist_mask(image, Click(x, y))
    row["image"] = iou_dice(img_mask, truth)[0]
    window = assist_module.CLICK_WINDOW
    try:
        assist_module.CLICK_WINDOW = 256
        row["image256"] = iou_dice(assist_mask(image, Click(x, y)), truth)[0]
    finally:
        assist_module.CLICK_WINDOW = window
    peak = 0.0
    for a in ALPHAS:
        m, peak = map_component(pred_map, (x, y), a)
        row[f"map{a}"] = iou_dice(m, truth)[0]
    half, _ = map_component(pred_map, (x, y), 0.5)
    row["and"] = iou_dice(half & img_mask, truth)[0]
    row["or"] = iou_dice(half | img_mask, truth)[0]
    for method in (RefineMethod.AUTO, RefineMethod.GRABCUT):
        restricted = np.where(half, pred_map, 0).astype(np.float32)
        row[f"ref_{method.value}"] = iou_dice(refine_mask(image, restricted, min(t_px, 0.5 * peak), method), truth)[0]
    strength = peak / max(t_px, 1e-6)
    for cand in ("map0.7", "ref_auto", "ref_grabcut"):
        for k in GATES:
            row[f"{cand}@{k}"] = row[cand] if strength >= k else row["image"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="folder with full.csv and models/<regime>/")
    ap.add_argument("--regimes", default="weak,mixed5,mixed20,full", help="comma-separated model names")
    ap.add_argument("--split", default="val", help="the split whose defects are clicked (default: val)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file for every row")
    args = ap.parse_args()
    samples = [s for s in load_dataset(args.run_dir / "full.csv").select(args.split).samples if s.label == 1]
    samples = [s for s in samples if s.pixels_known]
    images = [read_image(s.image) for s in samples]
    truths = [read_mask(s.mask) for s in samples]
    kinds = [s.extra_value("defect_type", "") for s in samples]
    result: dict[str, list[dict]] = {}
    for regime in args.regimes.split(","):
        pred = load_model(args.run_dir / "models" / regime, device="cpu").predictor
        t_px = pred.thresholds.pixel
        rows = []
        for img, gt, kind in zip(images, truths, kinds, strict=True):
            p = pred.predict([img], refine=False)[0]
            rows.append({"kind": kind, **click_row(img, gt, p.pred_map, t_px)})
        result[regime] = rows
        print(f"\n{regime} (pixel threshold {t_px:.3f}, {len(rows)} {args.split} defects)", flush=True)
        for key in (k for k in rows[0] if k != "kind"):
            v = np.array([r[key] for r in rows])
            print(f"  {key:16s} IoU median {np.median(v):.3f} mean {v.mean():.3f}", flush=True)
        for kind in sorted(set(kinds) - {""}):
            sel = [r for r in rows if r["kind"] == kind]
            print(
                f"  {kind:10s} n={len(sel):3d} "
                + " ".join(f"{k}={np.median([r[k] for r in sel]):.2f}" for k in ("image", "map0.7", "ref_auto")),
                flush=True,
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
