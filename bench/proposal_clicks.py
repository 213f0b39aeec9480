"""Where to click the click head for a mask proposal: candidate clicks and the rules that pick them.

For one model of ``RUN_DIR/models/<regime>/`` (with a click head; ``bench/refine_models.sh``
layout) and every defective image of the given splits of ``RUN_DIR/full.csv`` with a valid
mask: the map's region at the pixel threshold (``ml.refine``: its blobs that reach halfway to
the peak), and the head clicked at each candidate point:

- ``peak``: the map's peak in each blob (the first CLICK_HEAD);
- ``auto``: the innermost point of each component of AUTO's mask (CLICK_HEAD now);
- ``max``: the four highest local maxima of the map in the region (15 px apart).

Prints, per split and pooled, the median / mean IoU with the true mask of the proposal each
rule makes, the oracle (the best candidate of each image, which no rule can beat), and how
often the region and the map's peak touch the true mask. Writes ``--out`` (JSON, per image).

    python bench/proposal_clicks.py runs/click/refine --regime mixed20 --splits val,test \\
        --out docs/bench/click_head/proposal_clicks_magnetic-tile_mixed20.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refine_masks import iou_dice

from ml.artifact import load_model
from ml.click_head import find
from ml.data import load_dataset
from ml.images import read_image, read_mask
from ml.refine import RefineMethod, innermost, keep_touching, refine_mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return iou_dice(a, b)[0]


def candidates(pm: np.ndarray, reg: np.ndarray, auto: np.ndarray) -> list[tuple[int, int, str, np.ndarray | None]]:
    """``(x, y, kind, AUTO component or None)`` of every candidate click."""
    out: list[tuple[int, int, str, np.ndarray | None]] = []
    n, lab = cv2.connectedComponents(reg.astype(np.uint8))
    for k in range(1, n):
        w = np.where(lab == k, pm, -np.inf)
        py, px = np.unravel_index(int(np.argmax(w)), w.shape)
        out.append((int(px), int(py), "peak", None))
    n, lab = cv2.connectedComponents(auto.astype(np.uint8))
    for k in range(1, n):
        ax, ay = innermost(lab == k)
        out.append((ax, ay, "auto", lab == k))
    local = (pm == cv2.dilate(pm, np.ones((15, 15), np.uint8))) & reg
    ys, xs = np.nonzero(local)
    for i in np.argsort(-pm[ys, xs])[:4]:
        out.append((int(xs[i]), int(ys[i]), "max", None))
    return out


def image_row(pred, img: np.ndarray, gt: np.ndarray) -> dict:
    """One image: the coarse and AUTO proposals' IoU, each candidate's features and IoU, and the
    IoU of the unions the rules make."""
    t = pred.thresholds.pixel
    pm = pred.predict([img], refine=False)[0].pred_map
    region = pm >= t
    row: dict = {"region_hits": bool((region & gt).any()), "cands": [], "unions": {}}
    if not region.any():
        return row
    y, x = np.unravel_index(int(np.argmax(pm)), pm.shape)
    row["peak_in_truth"] = bool(gt[y, x])
    core = pm >= t + 0.5 * (float(pm.max()) - t)
    reg = keep_touching(region, core)
    auto = refine_mask(img, pm, t, RefineMethod.AUTO)
    row["coarse"], row["auto"] = iou(region, gt), iou(auto, gt)
    row["click_head"] = iou(refine_mask(img, pm, t, RefineMethod.CLICK_HEAD, pred.click_head), gt)
    masks = []
    for cx, cy, kind, part in candidates(pm, reg, auto):
        m = find(pred.click_head, img, float(cx), float(cy))
        masks.append(m if m is not None else part)
        if m is None:
            m = np.zeros_like(gt)
        size = max(int(m.sum()), 1)
        row["cands"].append(
            {
                "kind": kind,
                "iou": iou(m, gt),
                "found": bool(m.any()),
                "map_mean": float(pm[m].mean()) if m.any() else 0.0,
                "map_at": float(pm[cy, cx]),
                "in_region": float((m & reg).sum() / size),
                "covers_region": float((m & reg).sum() / reg.sum()),
                "auto_iou": iou(m, auto),
            }
        )

    def union(keep: Callable[[dict], bool]) -> float:
        out = np.zeros_like(gt)
        for m, c in zip(masks, row["cands"], strict=True):
            if m is not None and keep(c):
                out |= m
        return iou(out, gt)

    row["unions"] = {
        "peak (every blob, the first CLICK_HEAD)": union(lambda c: c["kind"] == "peak" and c["found"]),
        "peak and auto": union(lambda c: c["kind"] in ("peak", "auto") and c["found"]),
        "every candidate": union(lambda c: c["found"]),
    }
    return row


def best(key: Callable[[dict], float]) -> Callable[[dict], float]:
    def rule(r: dict) -> float:
        found = [c for c in r["cands"] if c["found"]]
        return max(found, key=key)["iou"] if found else 0.0

    return rule


RULES: dict[str, Callable[[dict], float]] = {
    "coarse": lambda r: r.get("coarse", 0.0),
    "auto": lambda r: r.get("auto", 0.0),
    "click_head (auto's components)": lambda r: r.get("click_head", 0.0),
    "union: peak (the first CLICK_HEAD)": lambda r: r["unions"].get("peak (every blob, the first CLICK_HEAD)", 0.0),
    "union: peak and auto": lambda r: r["unions"].get("peak and auto", 0.0),
    "union: every candidate": lambda r: r["unions"].get("every candidate", 0.0),
    "one: highest mean map inside": best(lambda c: c["map_mean"]),
    "one: highest map at the click": best(lambda c: c["map_at"]),
    "one: covers most of the region": best(lambda c: c["covers_region"]),
    "one: closest to auto (IoU)": best(lambda c: c["auto_iou"]),
    "one: closest to auto x mean map": best(lambda c: c["auto_iou"] * c["map_mean"]),
    "oracle: the best candidate": lambda r: max([c["iou"] for c in r["cands"]] or [0.0]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="folder with full.csv and models/<regime>/")
    ap.add_argument("--regime", default="mixed20", help="the model under models/ (it must have a click head)")
    ap.add_argument("--splits", default="val,test", help="comma-separated splits of full.csv")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write (per image)")
    args = ap.parse_args()
    pred = load_model(args.run_dir / "models" / args.regime, device="cpu").predictor
    if pred.click_head is None:
        sys.exit(f"{args.run_dir / 'models' / args.regime}: the model has no click head")
    ds = load_dataset(args.run_dir / "full.csv")
    rows: dict[str, list[dict]] = {}
    for split in args.splits.split(","):
        samples = [s for s in ds.select(split).samples if s.label == 1 and s.pixels_known]
        rows[split] = [image_row(pred, read_image(s.image), read_mask(s.mask)) for s in samples if s.mask]
    rows["pooled"] = [r for v in rows.values() for r in v]
    for split, rs in rows.items():
        hits = np.mean([r["region_hits"] for r in rs])
        peak = np.mean([r.get("peak_in_truth", False) for r in rs])
        print(f"\n{split}: {len(rs)} defects; the region touches the true mask in {hits:.0%}, its peak in {peak:.0%}")
        for name, rule in RULES.items():
            v = np.array([rule(r) for r in rs])
            print(f"  {name:36s} IoU median {np.median(v):.3f} mean {v.mean():.3f}  >= 0.5: {np.mean(v >= 0.5):.0%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({k: v for k, v in rows.items() if k != "pooled"}))


if __name__ == "__main__":
    main()
