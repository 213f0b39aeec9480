"""Inference and training speed: defectloop vs anomalib's SuperSimpleNet, same run, same images.

Both models use the same backbone, stages, input size and thread count; both start from
the same preprocessed float tensors (image decoding is excluded for both). Heads are
freshly initialised: speed does not depend on trained values.

    .venv-bench/bin/python bench/inference.py [--backbone tf_efficientnet_lite2] [--threads 2]

Needs anomalib (``pip install anomalib==2.7.0`` into a separate environment together with
defectloop: ``python -m venv .venv-bench && .venv-bench/bin/pip install anomalib==2.7.0 -e .``).
Prints a table of latencies, throughputs and the ratios defectloop / anomalib.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ANOMALIB_LAYERS = {
    "tf_efficientnet_lite0": ["blocks.2", "blocks.4"],
    "tf_efficientnet_lite1": ["blocks.2", "blocks.4"],
    "tf_efficientnet_lite2": ["blocks.2", "blocks.4"],
    "wide_resnet50_2": ["layer2", "layer3"],
}


def load_images(data: Path, n: int, size: int) -> torch.Tensor:
    """``n`` real images as float ``(n, 3, size, size)`` in [0, 1]."""
    from ml.data import load_dataset
    from ml.images import read_image, resize_rgb, to_tensor_batch

    samples = load_dataset(data, check_pixels=False).samples[:n]
    return to_tensor_batch([resize_rgb(read_image(s.image), (size, size)) for s in samples])


def time_calls(fn, x: torch.Tensor, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn(x)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t)
    return out


def anomalib_model(backbone: str, weights_model: torch.nn.Module, stop_grad: bool = True):
    """anomalib's SupersimplenetModel with the same ImageNet weights as ours (no download).

    ``stop_grad``: as anomalib sets it, True unsupervised, False supervised."""
    import timm

    create = timm.create_model

    def offline(*args, **kwargs):  # anomalib asks timm to download
        kwargs["pretrained"] = False
        return create(*args, **kwargs)

    timm.create_model = offline
    try:
        from anomalib.models.image.supersimplenet.torch_model import SupersimplenetModel

        model = SupersimplenetModel(backbone=backbone, layers=ANOMALIB_LAYERS[backbone], stop_grad=stop_grad)
    finally:
        timm.create_model = create
    fx = model.feature_extractor.feature_extractor.feature_extractor
    missing, _ = fx.load_state_dict(weights_model.state_dict(), strict=False)
    assert not missing, missing
    return model.eval()


def defectloop_predictor(backbone: str, profile: str):
    from ml.predict import Predictor
    from ml.supersimplenet.features import FeatureExtractor, get_backbone_spec
    from ml.supersimplenet.model import HeadConfig, SuperSimpleNet
    from ml.train import PROFILES

    p = PROFILES[profile]
    ext = FeatureExtractor(get_backbone_spec(backbone), "pretrained", upscale=p.upscale)
    model = SuperSimpleNet(HeadConfig(ext.channels, p.seg_hidden, p.cls_hidden, p.cls_kernel))
    return Predictor(ext, model, (0, 0), device=torch.device("cpu")), ext


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="tf_efficientnet_lite2")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/datasets/magnetic-tile")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from backend.runtime import tune_process
    from ml.supersimplenet.features import build_classifier_model, get_backbone_spec

    tune_process(args.threads)
    x = (
        load_images(args.data, args.batch, args.size)
        if args.data.exists()
        else torch.rand(args.batch, 3, args.size, args.size)
    )
    spec = get_backbone_spec(args.backbone)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    full, _ = build_classifier_model(spec, "pretrained")
    rows = {}
    with torch.inference_mode():
        ano = anomalib_model(args.backbone, full)
        xa = (x - mean) / std  # anomalib's pre-processor normalises outside the model
        runners = {"anomalib 2.7.0": lambda t: ano(t)}
        for profile in ("fast", "paper"):
            pred, _ = defectloop_predictor(args.backbone, profile)
            pred.image_size = (args.size, args.size)
            runners[f"defectloop {profile}"] = pred.forward_tensor
        for name, fn in runners.items():
            xi = xa if name.startswith("anomalib") else x
            lat = time_calls(fn, xi[:1], args.repeats * 2)
            thr = time_calls(fn, xi, args.repeats)
            rows[name] = {
                "batch1_ms": 1000 * statistics.median(lat),
                f"batch{args.batch}_img_per_s": args.batch / statistics.median(thr),
            }
    base = rows["anomalib 2.7.0"]
    key = f"batch{args.batch}_img_per_s"
    print(f"backbone {args.backbone}, {args.size}x{args.size}, {torch.get_num_threads()} threads, batch {args.batch}")
    print(f"{'model':<20}{'batch-1 ms':>12}{'img/s':>10}{'latency x':>12}{'throughput x':>14}")
    for name, r in rows.items():
        r["latency_ratio"] = base["batch1_ms"] / r["batch1_ms"]
        r["throughput_ratio"] = r[key] / base[key]
        print(
            f"{name:<20}{r['batch1_ms']:>12.1f}{r[key]:>10.2f}{r['latency_ratio']:>12.2f}{r['throughput_ratio']:>14.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
