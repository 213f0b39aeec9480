"""Markdown tables from bench/regimes.sh runs: one row per run, metrics on the test split.

python bench/summarize.py runs/lite0 [runs/lite2 ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ["image_auroc", "image_ap", "image_f1", "pixel_auroc", "pixel_aupro", "pixel_ap"]


def fmt(v: object) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}"


def rows(run_root: Path) -> list[str]:
    out = []
    for metrics in sorted(run_root.glob("*/*/metrics.json")):
        run = metrics.parent
        m = json.loads(metrics.read_text())
        cfg = json.loads((run / "model" / "config.json").read_text())
        counts = cfg["training"]["counts"]
        wall = (run / "wall_seconds.txt").read_text().strip() if (run / "wall_seconds.txt").exists() else "?"
        labels = f"{counts['normal']} / {counts['mask']} / {counts['image']}"
        backbone = cfg["backbone"]["name"].replace("tf_efficientnet_", "")
        seconds = f"{cfg['training']['feature_seconds']:.0f} + {cfg['training']['train_seconds']:.0f}"
        out.append(
            f"| {run.parent.name} | {run_root.name}/{run.name} | {cfg['regime']} | {backbone} | {labels} | "
            + " | ".join(fmt(m[c]) for c in COLUMNS)
            + f" | {m['n_normal']} / {m['n_defective']} | {seconds} | {wall} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_roots", type=Path, nargs="+", help="RUNS_DIR of bench/regimes.sh (one table row per run)")
    args = ap.parse_args()
    print(
        "| dataset | run | regime | backbone | train normal / mask / image-level | img AUROC | img AP | img F1 "
        "| px AUROC | px AUPRO | px AP | test normal / defective | features + heads s | wall s |"
    )
    print("|" + "---|" * 14)
    for root in args.run_roots:
        for r in rows(root):
            print(r)


if __name__ == "__main__":
    main()
