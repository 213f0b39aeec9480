"""Why a loop round can train worse than a labelled split with as many defects.

A round of the active-learning loop trains on the defects the strategy chose and, as
normal images, the few labelled ones plus the pseudo-normal half of the pool (the lowest
scores of the active model). A matrix run (bench/train_matrix.py) trains on randomly
chosen defects and every true normal image. This trains the four combinations on one
split's training images, with the same number of defects (a tenth of them with a mask),
and evaluates each on the test split:

- defects ``random``: a seeded random choice; ``top``: the pool images the refined
  bootstrap scores highest, down the ranking until K defects are found (the normal images
  met on the way become labelled normals, as top-score selection would label them);
- normals ``true``: every normal training image; ``pseudo-F``: the labelled normals plus the
  lowest-scoring fraction F of the pool (``--pseudo``, default 0.5 as a round trains) from
  the rest of it, hidden defects included.

    python bench/loop_ablation.py runs/small/magnetic-tile/labels.csv --image-size 128 128 \\
        --defects 30 --json runs/loop_ablation.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pseudo_normal import (  # bench/ is on the path as the script's folder
    ablation_parser,
    as_unlabelled,
    predictor,
    train_test,
)

from ml.data import Sample
from ml.evaluate import metrics_from_outputs, run_samples
from ml.pipeline import refine_unsupervised
from ml.train import TrainConfig, TrainedModel, fit

METRICS = ("image_auroc", "image_ap", "pixel_aupro", "pixel_ap")


def with_masks(defects: list[Sample], n_masks: int) -> list[Sample]:
    """The first ``n_masks`` keep their mask, the rest are image-level labels."""
    return [s if i < n_masks else replace(s, mask=None, has_mask=False) for i, s in enumerate(defects)]


def test_metrics(tr: TrainedModel, size: tuple[int, int], test: list[Sample]) -> dict[str, float]:
    pred = predictor(tr, size)
    m = metrics_from_outputs(run_samples(pred, test), 0.5)
    return {k: m[k] for k in METRICS}


def main() -> None:
    ap = ablation_parser(__doc__)
    ap.add_argument("--defects", type=int, default=30, help="labelled defects K (K/10 with a mask)")
    ap.add_argument("--pseudo", type=float, nargs="+", default=[0.5], help="pseudo-normal fractions of the pool")
    ap.add_argument("--defect-picks", nargs="+", default=["random", "top"], choices=["random", "top"])
    ap.add_argument("--no-true", action="store_true", help="skip the true-normals runs")
    args = ap.parse_args()
    size = (args.image_size[0], args.image_size[1])
    train, test = train_test(args.data)
    k, n_masks = args.defects, max(1, args.defects // 10)
    t0 = time.perf_counter()

    # the bootstrap as round 0 trains it: the whole pool presumed normal, refined on its lower half
    pool = [as_unlabelled(s) for s in train]
    unsup = TrainConfig(image_size=size, seed=args.seed, device=args.device, regime="unsupervised")
    boot, _ = refine_unsupervised(fit(pool, unsup), pool, 0.5)
    pred = predictor(boot, size)
    scores = run_samples(pred, pool).scores
    results: dict[str, dict] = {"bootstrap": test_metrics(boot, size, test)}
    print(f"bootstrap: {results['bootstrap']}", flush=True)

    rng = np.random.default_rng(args.seed)
    defective = [i for i, s in enumerate(train) if s.label == 1]
    picks: dict[str, tuple[list[int], list[int]]] = {}  # name -> (defect rows, labelled normal rows)
    random_rows = sorted(rng.choice(defective, size=k, replace=False).tolist(), key=lambda i: -scores[i])
    picks["random"] = (random_rows, [])
    top_def, top_norm = [], []
    for i in np.argsort(-scores, kind="stable").tolist():
        if len(top_def) == k:
            break
        (top_def if train[i].label == 1 else top_norm).append(i)
    picks["top"] = (top_def, top_norm)

    cfg = TrainConfig(image_size=size, seed=args.seed, device=args.device)
    for name in args.defect_picks:
        def_rows, norm_rows = picks[name]
        defects = with_masks([train[i] for i in def_rows], n_masks)  # masks for the likeliest defects
        labelled = set(def_rows) | set(norm_rows)
        rest = [i for i in np.argsort(scores, kind="stable").tolist() if i not in labelled]
        normal_sets = {} if args.no_true else {"true": ([s for s in train if s.label == 0], 0)}
        for f in args.pseudo:
            chosen = rest[: int(f * len(pool))]
            normal_sets[f"pseudo-{f:g}"] = (
                [train[i] for i in norm_rows] + [as_unlabelled(train[i]) for i in chosen],
                sum(1 for i in chosen if train[i].label == 1),
            )
        for normals_name, (normals, hidden) in normal_sets.items():
            tr = fit(defects + normals, cfg)
            key = f"{name}-defects+{normals_name}-normals"
            results[key] = {
                "n_normal": len(normals),
                "hidden_defects": hidden,
                "labelled_normals": len(norm_rows),
                "regime": tr.regime.value,
                **test_metrics(tr, size, test),
            }
            print(f"{key}: {results[key]}", flush=True)
    print(f"{time.perf_counter() - t0:.0f}s", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "data": str(args.data),
                    "image_size": size,
                    "defects": k,
                    "masks": n_masks,
                    "seed": args.seed,
                    "results": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
