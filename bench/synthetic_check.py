"""Does an unsupervised model learn its own training task? Held-out synthetic-anomaly detection.

Trains UNSUPERVISED on a labels CSV's normal training images, then puts fresh synthetic
anomalies (the training generator, same sigma and threshold) on the features of held-out
normal images and reports how well the model finds them: pixel AUROC of the segmentation
logits against the synthetic masks, image AUROC of the score against "has a synthetic
anomaly". Near 0.5 means the training signal itself is not learned (a loop problem);
near 1.0 with real defects at chance means the synthetic anomalies do not resemble real ones.

    python bench/synthetic_check.py DATA.csv [--sigma 0.015] [--max-train 250] [--standardize]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--sigma", type=float, default=0.015)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-heldout", type=int, default=64)
    ap.add_argument("--image-size", type=int, nargs=2, default=(256, 256))
    ap.add_argument("--standardize", action="store_true")
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    from backend.runtime import tune_process
    from ml.data import load_dataset
    from ml.feature_cache import load_preprocessed
    from ml.images import to_tensor_batch
    from ml.supersimplenet.anomaly_generator import feature_noise, synthetic_masks
    from ml.train import TrainConfig, fit

    tune_process()
    ds = load_dataset(args.data, check_pixels=False)
    train = [s for s in ds.select("train").samples if s.label == 0][: args.max_train]
    held = [s for s in ds.select("val").samples if s.label == 0][: args.max_heldout]
    size = tuple(args.image_size)
    tm = fit(
        train,
        TrainConfig(
            regime="unsupervised", noise_sigma=args.sigma, image_size=size, standardize_features=args.standardize
        ),
    )
    gen = torch.Generator().manual_seed(123)
    with torch.no_grad():
        imgs = to_tensor_batch([load_preprocessed(s, size)[0] for s in held])
        feats = tm.extractor(imgs)
        b, c, h, w = feats.shape
        masks = synthetic_masks(b, (h, w), tm.settings.perlin_threshold, gen)
        noise = feature_noise(masks, c, args.sigma, gen)
        out = tm.model(feats, noise=noise)
    has = (masks.flatten(1).amax(1) > 0).numpy()
    pix = masks.flatten().numpy() > 0
    row = {
        "sigma": args.sigma,
        "standardize": args.standardize,
        "loss_first": tm.losses[0],
        "loss_last": tm.losses[-1],
        "heldout": b,
        "with_synthetic": int(has.sum()),
        "synthetic_pixel_auroc": round(float(roc_auc_score(pix, out.pred_map.flatten().numpy())), 4),
        "synthetic_image_auroc": round(float(roc_auc_score(has, out.pred_score.numpy())), 4)
        if 0 < has.sum() < b
        else None,
        "feature_std": round(float(feats.std()), 3),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
