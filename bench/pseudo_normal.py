"""Does pseudo-normal refinement help the bootstrap? Unsupervised training on a contaminated pool.

A new line's pool is mostly, not only, normal. The bootstrap trains UNSUPERVISED on all of
it (hidden defects included, as normal); refinement scores the pool with that model and
retrains on the lowest-scoring fraction only. This compares, on one split's test images:

- ``clean``: the training split's true normal images only (the upper bound);
- ``pool``: every training image, defects included, treated as normal (the bootstrap);
- ``refined-F``: ``pool``'s model scores the training images, the lowest-scoring fraction F
  is kept and a new model trains on it (and how many hidden defects F still holds).

    python bench/pseudo_normal.py runs/lite0/magnetic-tile/full.csv --image-size 128 128 \\
        --keep 0.5 0.7 --json runs/pseudo_normal.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.data import Sample, load_dataset
from ml.evaluate import metrics_from_outputs, run_samples
from ml.pipeline import refine_unsupervised
from ml.predict import Predictor
from ml.train import TrainConfig, TrainedModel, fit


def as_unlabelled(s: Sample) -> Sample:
    """A pool image as the bootstrap sees it: presumed normal, no mask."""
    return replace(s, label=0, mask=None, has_mask=False)


def predictor(tr: TrainedModel, size: tuple[int, int]) -> Predictor:
    return Predictor(tr.extractor, tr.model, size, image_score=tr.settings.image_score)


def ablation_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every pool ablation script shares: data, --image-size, --seed, --device, --json."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="dataset folder or labels CSV with train and test splits")
    ap.add_argument("--image-size", type=int, nargs=2, default=[128, 128], metavar=("H", "W"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    return ap


def train_test(data: Path) -> tuple[list[Sample], list[Sample]]:
    """The dataset's split=train and split=test samples."""
    ds = load_dataset(data)
    return list(ds.select("train").samples), list(ds.select("test").samples)


def main() -> None:
    ap = ablation_parser(__doc__)
    ap.add_argument(
        "--keep",
        type=float,
        nargs="+",
        default=[0.5],
        help="fractions of the pool kept",
    )
    args = ap.parse_args()
    size = (args.image_size[0], args.image_size[1])
    train, test = train_test(args.data)
    cfg = TrainConfig(image_size=size, seed=args.seed, device=args.device, regime="unsupervised")
    results: dict[str, dict] = {}

    def record(name: str, tr: TrainedModel, n_train: int, hidden: int) -> None:
        pred = predictor(tr, size)
        m = metrics_from_outputs(run_samples(pred, test), 0.5)
        results[name] = {
            "n_train": n_train,
            "hidden_defects": hidden,
            "train_s": round(tr.train_seconds, 1),
            **{
                k: m[k]
                for k in (
                    "image_auroc",
                    "image_ap",
                    "pixel_auroc",
                    "pixel_aupro",
                    "pixel_ap",
                )
            },
        }
        print(
            f"{name}: {n_train} training images ({hidden} hidden defects) img AUROC {m['image_auroc']:.3f} "
            f"AP {m['image_ap']:.3f} px AUPRO {m['pixel_aupro']:.3f}",
            flush=True,
        )

    t0 = time.perf_counter()
    clean = [s for s in train if s.label == 0]
    record("clean", fit(clean, cfg), len(clean), 0)
    pool = [as_unlabelled(s) for s in train]
    bootstrap = fit(pool, cfg)
    record("pool", bootstrap, len(pool), sum(s.label for s in train))
    defective = {s.image for s in train if s.label == 1}
    for keep in args.keep:
        refined, kept = refine_unsupervised(bootstrap, pool, keep)  # what the bootstrap round runs
        record(f"refined-{keep:g}", refined, len(kept), sum(s.image in defective for s in kept))
    print(f"{time.perf_counter() - t0:.0f}s", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "data": str(args.data),
                    "image_size": size,
                    "seed": args.seed,
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
