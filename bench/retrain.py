"""Retrain cost: defectloop vs anomalib's SuperSimpleNet on the same normal images, same run.

anomalib trains end to end (the frozen backbone runs on every image in every epoch);
defectloop computes backbone features once and trains the heads from the cache. Measured:
time of one training epoch for each (unsupervised, batch 32), and defectloop's whole
fast-profile retrain (features + every epoch). anomalib's 300-epoch schedule is not run
to completion here; its per-epoch time is what is measured.

    .venv-bench/bin/python bench/retrain.py [--images 64] [--backbone tf_efficientnet_lite2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="tf_efficientnet_lite2")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2, help="anomalib epochs to time")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/datasets/magnetic-tile")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from backend.runtime import tune_process

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from inference import anomalib_model

    from ml.data import load_dataset
    from ml.images import read_image, resize_rgb, to_tensor_batch
    from ml.supersimplenet.features import build_classifier_model, get_backbone_spec
    from ml.train import TrainConfig, fit

    tune_process(args.threads)
    samples = [s for s in load_dataset(args.data, check_pixels=False).samples if s.label == 0][: args.images]
    spec = get_backbone_spec(args.backbone)
    results: dict[str, float] = {}

    # defectloop: the whole fast retrain, and its per-epoch head time
    cfg = TrainConfig(backbone=args.backbone, image_size=(args.size, args.size), profile="fast", regime="unsupervised")
    t0 = time.perf_counter()
    trained = fit(samples, cfg)
    results["defectloop_fast_round_s"] = time.perf_counter() - t0
    results["defectloop_fast_epochs"] = len(trained.losses)
    results["defectloop_feature_s"] = trained.feature_seconds
    results["defectloop_fast_epoch_s"] = trained.train_seconds / len(trained.losses)
    paper = TrainConfig(**{**cfg.__dict__, "profile": "paper", "epochs": 1})
    trained_p = fit(samples, paper)
    results["defectloop_paper_epoch_s"] = trained_p.train_seconds

    # anomalib: end-to-end epochs over the same images (its optimiser groups and loss)
    from anomalib.models.image.supersimplenet.loss import SSNLoss

    full, _ = build_classifier_model(spec, "pretrained")
    model = anomalib_model(args.backbone, full).train()
    loss_fn = SSNLoss()
    opt = torch.optim.AdamW(
        [
            {"params": model.adaptor.parameters(), "lr": 1e-4},
            {"params": model.segdec.parameters(), "lr": 2e-4, "weight_decay": 1e-5},
        ]
    )
    x = to_tensor_batch([resize_rgb(read_image(s.image), (args.size, args.size)) for s in samples])
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    times = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        for i in range(0, len(x), 32):
            xb = x[i : i + 32]
            amap, score, masks, labels = model(xb, None, torch.zeros(len(xb)))
            loss = loss_fn(pred_map=amap, pred_score=score, target_mask=masks, target_label=labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    results["anomalib_epoch_s"] = min(times)
    results["epoch_ratio_fast"] = results["anomalib_epoch_s"] / results["defectloop_fast_epoch_s"]
    results["epoch_ratio_paper"] = results["anomalib_epoch_s"] / results["defectloop_paper_epoch_s"]

    print(f"{len(samples)} normal images, {args.backbone}, {args.size}x{args.size}, {torch.get_num_threads()} threads")
    for k, v in results.items():
        print(f"{k:<28}{v:10.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
