"""Mask proposals against the true defect: the coarse map, each refinement method, one-click masks.

For every model in ``RUN_DIR/models/<regime>/`` (``bench/refine_models.sh`` trains them on one
seeded split) and every defective test image of ``RUN_DIR/full.csv`` with a valid mask, at the
image's own resolution:

- the proposal of each ``ml.refine`` method, cut where the product cuts it (the pixel threshold,
  or near the map's peak for an image judged defective that holds no region there;
  ``--no-fallback``: always the pixel threshold): IoU and Dice with the true mask, and the
  milliseconds the refinement adds to the model's forward pass, and the share of the mask an
  annotator would change (``edit``, as the edit cost model charges it);
- a one-click mask (``ml.assist``: the model's click head where it has one, else the image
  around the click) with the click at the innermost point of the true mask (the maximum of
  its distance transform): IoU, and the click's milliseconds, as ``defectloop assist`` times
  them.

Writes ``--out`` (JSON: per regime and method, median / mean IoU and Dice, median and p95
ms) and prints the tables. Threads: the process's default (2 on the reference machine).

    python bench/refine_masks.py runs/refine/magnetic-tile --out docs/bench/refine_magnetic-tile.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.artifact import load_model
from ml.assist import Click, assist_mask
from ml.data import load_dataset
from ml.images import read_image, read_mask
from ml.refine import RefineMethod, innermost, refine_mask, region_threshold

REGIMES = ("unsupervised", "weak", "mixed5", "mixed20", "full")


def edit_share(proposal: np.ndarray, truth: np.ndarray) -> float:
    """What an annotator changes to turn ``proposal`` into ``truth``: differing pixels over the
    truth's, at most 1 (as ``Label.mask_edit``; no proposal: 1)."""
    if not proposal.any():
        return 1.0
    return min(1.0, float(np.logical_xor(proposal, truth).sum()) / max(float(truth.sum()), 1.0))


def iou_dice(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    inter = float(np.logical_and(a, b).sum())
    sa, sb = float(a.sum()), float(b.sum())
    union = sa + sb - inter
    return (inter / union if union else 1.0), (2 * inter / (sa + sb) if sa + sb else 1.0)


def stats(rows: list[dict], key: str) -> dict[str, float]:
    v = np.array([r[key] for r in rows], dtype=float)
    return {"median": float(np.median(v)), "mean": float(v.mean()), "p95": float(np.percentile(v, 95))}


def add_choices(run_dir: Path, out: Path) -> None:
    """Per model: the mask method chosen on the val split's defects and that method's test IoU."""
    from ml.pipeline import choose_mask_method

    result = json.loads(out.read_text())
    val = list(load_dataset(run_dir / "full.csv").select("val").samples)
    for regime, r in result["regimes"].items():
        pred = load_model(run_dir / "models" / regime, device="cpu").predictor
        t0 = time.perf_counter()
        choice = choose_mask_method(pred, val, pred.thresholds.pixel)
        seconds = time.perf_counter() - t0
        test = r["methods"][choice.method.value]
        r["chosen"] = {
            "method": choice.method.value,
            "val_mean_iou": choice.mean_iou,
            "n_val": choice.n,
            "seconds": round(seconds, 1),
            "test_iou": test["iou"],
            "test_dice": test["dice"],
        }
        print(
            f"{regime}: chose {choice.method.value} on {choice.n} val defects in {seconds:.1f} s; test IoU median "
            f"{test['iou']['median']:.3f} mean {test['iou']['mean']:.3f}",
            flush=True,
        )
    out.write_text(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="folder with full.csv and models/<regime>/")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--regimes", default=",".join(REGIMES), help="comma-separated model names under models/")
    ap.add_argument("--methods", default=",".join(m.value for m in RefineMethod), help="ml.refine methods")
    ap.add_argument("--limit", type=int, default=None, help="at most this many test defects (first ones)")
    ap.add_argument("--no-assist", action="store_true", help="skip the one-click masks")
    ap.add_argument(
        "--no-fallback",
        action="store_true",
        help="cut every region at the pixel threshold, also where an image judged defective holds none there "
        "(as proposals were before ml.refine.region_threshold)",
    )
    ap.add_argument(
        "--choose-only",
        action="store_true",
        help="only add to --out (already written) the method each model would choose on the val split "
        "(as training does, ml.pipeline.choose_mask_method) and its test IoU",
    )
    args = ap.parse_args()
    if args.choose_only:
        add_choices(args.run_dir, args.out)
        return
    methods = [RefineMethod(m) for m in args.methods.split(",")]
    ds = load_dataset(args.run_dir / "full.csv")
    test = [s for s in ds.select("test").samples if s.label == 1 and s.pixels_known]
    test = test[: args.limit] if args.limit else test
    images = [read_image(s.image) for s in test]
    truths = [read_mask(s.mask) for s in test]
    result: dict = {
        "run_dir": str(args.run_dir),
        "n_defects": len(test),
        "pixels_median": float(np.median([t.size for t in truths])),
        "regimes": {},
    }
    for regime in args.regimes.split(","):
        model_dir = args.run_dir / "models" / regime
        if not (model_dir / "config.json").is_file():
            print(f"{regime}: no model in {model_dir}, skipped", flush=True)
            continue
        pred = load_model(model_dir, device="cpu").predictor
        pred.predict(images[:1], refine=False)  # warm-up, not timed
        t_px = pred.thresholds.pixel
        rows: dict[str, list[dict]] = {m.value: [] for m in methods}
        clicks: list[dict] = []
        kinds = [s.extra_value("defect_type", "") for s in test]
        for img, gt in zip(images, truths, strict=True):
            t0 = time.perf_counter()
            p = pred.predict([img], refine=False)[0]
            forward_ms = 1000 * (time.perf_counter() - t0)
            cut = t_px if args.no_fallback else region_threshold(p.pred_map, t_px, p.decision)
            for m in methods:
                t1 = time.perf_counter()
                mask = refine_mask(img, p.pred_map, cut, m, pred.click_head)
                ms = 1000 * (time.perf_counter() - t1)
                iou, dice = iou_dice(mask, gt)
                rows[m.value].append(
                    {"iou": iou, "dice": dice, "ms": ms, "empty": float(not mask.any()), "edit": edit_share(mask, gt)}
                )
            if not args.no_assist:
                x, y = innermost(gt)
                t1 = time.perf_counter()
                mask = assist_mask(img, Click(x, y), pred.click_head)
                ms = 1000 * (time.perf_counter() - t1)
                clicks.append({"iou": iou_dice(mask, gt)[0], "ms": ms, "forward_ms": forward_ms})
        out = {"threshold_pixel": t_px, "methods": {}}
        for m, rs in rows.items():
            out["methods"][m] = {
                "iou": stats(rs, "iou"),
                "dice": stats(rs, "dice"),
                "ms": stats(rs, "ms"),
                "empty_share": float(np.mean([r["empty"] for r in rs])),
                "edit": stats(rs, "edit"),
            }
        if clicks:
            out["assist"] = {
                "segmenter": "click_head" if pred.click_head is not None else "image",
                "iou": stats(clicks, "iou"),
                "ms": stats(clicks, "ms"),
                "share_iou_ge_0.5": float(np.mean([c["iou"] >= 0.5 for c in clicks])),
            }
        if any(kinds):  # per defect type (a `defect_type` column): median IoU of each method and of one click
            out["by_type"] = {
                k: {
                    "n": kinds.count(k),
                    **{
                        m: float(np.median([r["iou"] for r, kk in zip(rs, kinds, strict=True) if kk == k]))
                        for m, rs in rows.items()
                    },
                    **(
                        {
                            "one_click": float(
                                np.median([c["iou"] for c, kk in zip(clicks, kinds, strict=True) if kk == k])
                            )
                        }
                        if clicks
                        else {}
                    ),
                }
                for k in sorted(set(kinds))
            }
        result["regimes"][regime] = out
        print(f"\n{regime} (pixel threshold {t_px:.3f}, {len(test)} defects)", flush=True)
        for m, r in out["methods"].items():
            print(
                f"  {m:14s} IoU median {r['iou']['median']:.3f} mean {r['iou']['mean']:.3f}  "
                f"Dice median {r['dice']['median']:.3f}  ms median {r['ms']['median']:.1f} p95 {r['ms']['p95']:.1f}  "
                f"empty {r['empty_share']:.2f}  edit mean {r['edit']['mean']:.2f}",
                flush=True,
            )
        if clicks:
            a = out["assist"]
            print(
                f"  one click      IoU median {a['iou']['median']:.3f} mean {a['iou']['mean']:.3f}  "
                f"ms p50 {a['ms']['median']:.0f} p95 {a['ms']['p95']:.0f}",
                flush=True,
            )
        for k, v in out.get("by_type", {}).items():
            print(f"  {k:12s} n={v['n']:3d} " + " ".join(f"{m} {x:.2f}" for m, x in v.items() if m != "n"), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
