"""Unsupervised SuperSimpleNet against the synthetic-noise scale, on a labels CSV.

    python bench/unsupervised_noise.py runs/lite0/magnetic-tile/unsup.csv --sigmas 0.015 0.1 \\
        --max-train 250 --test-stride 2

Trains on the CSV's normal training images and prints, per noise sigma, the test metrics
(threshold 0.5) and the AUROC of the anomaly map's maximum as an alternative score.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.015])
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--test-stride", type=int, default=1)
    ap.add_argument("--image-size", type=int, nargs=2, default=(256, 256))
    ap.add_argument(
        "--standardize",
        choices=["off", "on", "both"],
        default="off",
        help="per-channel feature standardisation before the noise",
    )
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from backend.runtime import tune_process
    from ml.data import load_dataset
    from ml.evaluate import metrics_from_outputs, run_samples
    from ml.predict import Predictor
    from ml.train import TrainConfig, fit

    tune_process()
    ds = load_dataset(args.data, check_pixels=False)
    train = [s for s in ds.select("train").samples if s.label == 0][: args.max_train]
    test = list(ds.select("test").samples)[:: args.test_stride]
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.standardize]
    for std_on, sigma in [(m, s) for m in modes for s in args.sigmas]:
        t = time.time()
        tm = fit(
            train,
            TrainConfig(
                regime="unsupervised", noise_sigma=sigma, image_size=tuple(args.image_size), standardize_features=std_on
            ),
        )
        out = run_samples(Predictor(tm.extractor, tm.model, tuple(args.image_size)), test)
        m = metrics_from_outputs(out, 0.5)
        map_max = out.maps.reshape(len(test), -1).max(1).astype(float)
        m["map_max_auroc"] = float(roc_auc_score(out.labels, map_max))
        row = {
            "standardize": std_on,
            "sigma": sigma,
            "seconds": round(time.time() - t),
            "first_loss": tm.losses[0],
            "last_loss": tm.losses[-1],
        }
        row.update({k: round(v, 4) for k, v in m.items() if isinstance(v, float)})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
