"""One-click masks from a click head taught by N masks, against the image-only rule, in one run.

Teaches a click head (``ml.click_train``, as ``defectloop train`` does) on the training split's
masks of a split CSV (``defectloop split``; ``--train-masks N`` keeps N of them), then clicks
every defective test image with a valid mask at the innermost point of its true mask (the
maximum of its distance transform) and compares the mask with the truth at the image's own
resolution, for the head and for the image-only rule (``ml.assist`` without a head). Latency
is timed as ``defectloop assist`` times it: the head loaded, the image decoded, the mask only.

Writes ``--out`` (JSON: per segmenter the median / mean IoU, share of clicks at IoU >= 0.5 and
0.7, p50 / p95 ms, per defect type where the CSV has a ``defect_type`` column, and each
click) and prints a summary. Threads: the process's default (2 on the reference machine).

    python bench/click_head.py runs/click/mt.csv --out docs/bench/click_head/magnetic-tile_all.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from refine_masks import iou_dice  # noqa: E402

from ml.assist import Click, assist_mask  # noqa: E402
from ml.click_train import MIN_MASKS, ClickTrainConfig  # noqa: E402
from ml.data import load_dataset  # noqa: E402
from ml.images import read_image, read_mask  # noqa: E402
from ml.pipeline import click_head_masks, fit_click_head  # noqa: E402
from ml.refine import innermost  # noqa: E402
from ml.train_config import TrainConfig  # noqa: E402


def summary(rows: list[dict], kinds: list[str]) -> dict:
    v = np.array([r["iou"] for r in rows])
    ms = np.array([r["ms"] for r in rows])
    out = {
        "iou_median": float(np.median(v)),
        "iou_mean": float(v.mean()),
        "share_iou_ge_0.5": float((v >= 0.5).mean()),
        "share_iou_ge_0.7": float((v >= 0.7).mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
    }
    if any(kinds):
        out["by_type"] = {
            k: {
                "n": kinds.count(k),
                "iou_median": float(np.median([x for x, kk in zip(v, kinds, strict=True) if kk == k])),
            }
            for k in sorted(set(kinds))
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path, help="split CSV (defectloop split) with train and test rows")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--steps", type=int, default=ClickTrainConfig.steps, help="training steps of the head")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--min-masks",
        type=int,
        default=MIN_MASKS,
        help=f"teach a head from fewer masks than training would ({MIN_MASKS})",
    )
    ap.add_argument("--split", default="test", help="the split clicked (default test)")
    args = ap.parse_args()
    ds = load_dataset(args.csv)
    train = list(ds.select("train").samples)
    print(
        f"{args.csv}: teaching a head on {len(click_head_masks(train))} training masks, {args.steps} steps", flush=True
    )
    t0 = time.perf_counter()

    def report(_stage: str, step: int, total: int, _info: dict) -> None:
        if step % 100 == 0:
            print(f"  step {step}/{total} {time.perf_counter() - t0:.0f}s", flush=True)

    # as training teaches it (ml.pipeline), on the CPU
    cfg = TrainConfig(seed=args.seed, device="cpu", click_head_steps=args.steps, click_head_min_masks=args.min_masks)
    head = fit_click_head(train, cfg, report)
    if head is None:
        sys.exit(f"{args.csv}: fewer than {args.min_masks} training images with a mask: no head to measure")
    print(f"  taught in {head.info.seconds:.0f}s, final loss {head.info.final_loss}", flush=True)
    test = [s for s in ds.select(args.split).samples if s.label == 1 and s.pixels_known]
    rows: dict[str, list[dict]] = {"click_head": [], "image_rule": []}
    kinds: list[str] = []
    assist_mask(np.zeros((64, 64, 3), np.uint8), Click(32, 32), head)  # warm-up, not timed
    for s in test:
        image, truth = read_image(s.image), read_mask(s.mask)
        if not truth.any():
            continue
        x, y = innermost(truth)
        kinds.append(s.extra_value("defect_type", ""))
        for name, h in (("click_head", head), ("image_rule", None)):
            t1 = time.perf_counter()
            mask = assist_mask(image, Click(x, y), h)
            ms = 1000 * (time.perf_counter() - t1)
            rows[name].append(
                {"file": s.image.name, "x": x, "y": y, "iou": round(iou_dice(mask, truth)[0], 4), "ms": round(ms, 2)}
            )
    result = {
        "csv": str(args.csv),
        "split": args.split,
        "n_clicks": len(kinds),
        "head": {
            "n_masks": head.info.n_masks,
            "steps": head.info.steps,
            "seconds": head.info.seconds,
            "first_side": head.info.first_side,
            "final_loss": head.info.final_loss,
        },
        "segmenters": {k: summary(v, kinds) for k, v in rows.items()},
        "clicks": rows,
    }
    for k, r in result["segmenters"].items():
        print(
            f"{k:11s} IoU median {r['iou_median']:.3f} mean {r['iou_mean']:.3f}  >=0.7 {r['share_iou_ge_0.7']:.2f}  "
            f"p50 {r['p50_ms']:.0f} ms p95 {r['p95_ms']:.0f} ms",
            flush=True,
        )
        for t, v in r.get("by_type", {}).items():
            print(f"    {t:10s} n={v['n']:3d} median {v['iou_median']:.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
