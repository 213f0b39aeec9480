"""Saving and loading a trained model directory.

Layout::

    MODEL_DIR/
      model.safetensors   adaptor + heads (never the backbone)
      config.json         backbone (name, weights source, sha256, normalisation), image size,
                          regime, profile, hyperparameters, thresholds, the mask method and
                          how it was chosen (``ml.refine``; absent in older directories: the
                          default), validation metrics,
                          training-set fingerprint (sorted image sha256s and label kinds)
      click_head.safetensors
                          the one-click segmenter taught by the training masks
                          (``ml.click_head``; only when training had enough masks; its
                          training record is config.json's ``click_head``)
      checksum.sha256     sha256 of the files above

A directory is written under a temporary name and renamed into place, so a crash never
leaves a half-written model. Loading verifies the checksums and that the backbone weights
found now are byte-identical to those the model was trained on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from ml.click_head import ClickHead, info_json, load_click_head, save_click_head
from ml.data import Sample, file_sha256
from ml.errors import ArtifactError, BackboneWeightsError
from ml.predict import Predictor, Thresholds
from ml.refine import DEFAULT_METHOD, MethodChoice
from ml.regimes import Regime
from ml.supersimplenet.features import FeatureExtractor, get_backbone_spec
from ml.supersimplenet.model import HeadConfig, SuperSimpleNet
from ml.train import TrainedModel, resolve_device

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CHECKSUM = "checksum.sha256"


def training_fingerprint(samples: Sequence[Sample]) -> dict:
    """Sorted (image sha256, label kind) pairs and one sha256 over them."""
    items = sorted((file_sha256(s.image), s.label_kind) for s in samples)
    digest = hashlib.sha256("\n".join(f"{h} {k}" for h, k in items).encode()).hexdigest()
    return {"sha256": digest, "n_images": len(items), "images": [{"sha256": h, "kind": k} for h, k in items]}


def save_model(
    out_dir: Path,
    trained: TrainedModel,
    thresholds: Thresholds,
    train_samples: Sequence[Sample],
    val_metrics: dict | None = None,
    mask_choice: MethodChoice | None = None,
    click_head: ClickHead | None = None,
) -> Path:
    """Write the model directory atomically (replacing an existing one only on success).
    ``mask_choice``: how its predictions turn anomaly maps into masks (``ml.refine``; None: the
    default method). ``click_head``: the one-click segmenter to keep with it (None: none)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    ext = trained.extractor
    config = {
        "format_version": FORMAT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backbone": {
            "name": ext.spec.name,
            "weights": trained.config.backbone_weights,
            "sha256": ext.weights_sha256,
            "mean": list(ext.spec.mean),
            "std": list(ext.spec.std),
            "out_indices": list(ext.spec.out_indices),
            "upscale": ext.upscale,
        },
        "image_size": list(trained.config.image_size),
        "regime": trained.regime.value,
        "profile": trained.config.profile,
        "schedule": asdict(trained.config.profile_spec()),  # the resolved epochs, step budget, learning rates
        "head": {
            "channels": trained.head_config.channels,
            "seg_hidden": trained.head_config.seg_hidden,
            "cls_hidden": trained.head_config.cls_hidden,
            "cls_kernel": trained.head_config.cls_kernel,
            "journal_cls_input": trained.head_config.journal_cls_input,
        },
        "train_config": trained.config.to_json(),
        "regime_settings": trained.settings.__dict__,
        "thresholds": thresholds.to_json(),
        "mask_method": (mask_choice.method if mask_choice else DEFAULT_METHOD).value,
        "mask_method_choice": None
        if mask_choice is None
        else {"mean_iou": mask_choice.mean_iou, "n": mask_choice.n, "note": mask_choice.note},
        "click_head": None if click_head is None else info_json(click_head),
        "validation_metrics": val_metrics,
        "training": {
            "losses": trained.losses,
            "feature_seconds": trained.feature_seconds,
            "train_seconds": trained.train_seconds,
            "counts": trained.n_train,
        },
        "training_set": training_fingerprint(train_samples),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        files = [WEIGHTS, CONFIG, *(save_click_head(click_head, tmp) if click_head is not None else [])]
        (tmp / CHECKSUM).write_text("".join(f"{file_sha256(tmp / n)}  {n}\n" for n in files))
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{time.time_ns()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


@dataclass
class LoadedModel:
    """A model directory ready to predict."""

    predictor: Predictor
    config: dict
    path: Path
    click_head: ClickHead | None = None

    @property
    def regime(self) -> Regime:
        return Regime(self.config["regime"])


def read_config(model_dir: Path) -> dict:
    """Verify the checksums and return config.json."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ArtifactError(f"{model_dir}: no such model directory")
    for name in (WEIGHTS, CONFIG, CHECKSUM):
        if not (model_dir / name).is_file():
            raise ArtifactError(f"{model_dir}: missing {name}; not a defectloop model directory")
    for line in (model_dir / CHECKSUM).read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name and not (model_dir / name).is_file():
            raise ArtifactError(f"{model_dir}: missing {name}, which {CHECKSUM} lists")
        if name and file_sha256(model_dir / name) != digest:
            raise ArtifactError(f"{model_dir / name}: checksum mismatch (file corrupted or edited)")
    try:
        config = json.loads((model_dir / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{model_dir / CONFIG}: invalid JSON ({e})") from e
    if config.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{model_dir}: unsupported format version {config.get('format_version')}")
    return config


def load_model(model_dir: Path, device: str = "auto", backbone_weights: str | None = None) -> LoadedModel:
    """Rebuild the backbone from its own weights, check they match, load adaptor + heads.

    ``backbone_weights``: override the weights source recorded at training (e.g. the same
    file at another path); it must hash to the recorded sha256.
    """
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    bb = config["backbone"]
    source = backbone_weights or bb["weights"]
    try:
        extractor = FeatureExtractor(get_backbone_spec(bb["name"]), source, upscale=int(bb["upscale"]))
    except BackboneWeightsError as e:
        raise ArtifactError(f"{model_dir}: cannot rebuild backbone {bb['name']}: {e}") from e
    if extractor.weights_sha256 != bb["sha256"]:
        raise ArtifactError(
            f"{model_dir}: backbone weights differ from those the model was trained on "
            f"({bb['name']}: expected sha256 {bb['sha256'][:16]}..., found {extractor.weights_sha256[:16]}...); "
            "pass the original file with --backbone-weights"
        )
    heads = HeadConfig(**config["head"])
    model = SuperSimpleNet(heads)
    try:
        model.load_state_dict(load_file(str(model_dir / WEIGHTS)), strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{model_dir / WEIGHTS}: weights do not fit the recorded heads ({str(e)[:300]})") from e
    dev = resolve_device(device)
    click_head = click_head_of(model_dir, config)
    predictor = Predictor(
        extractor,
        model.to(dev),
        tuple(config["image_size"]),
        Thresholds.from_json(config["thresholds"]),
        dev,
        image_score=config["regime_settings"].get("image_score", "head"),
        mask_method=config.get("mask_method", DEFAULT_METHOD),
        click_head=click_head,
    )
    return LoadedModel(predictor, config, model_dir, click_head)


def click_head_of(model_dir: Path, config: dict | None = None) -> ClickHead | None:
    """The one-click segmenter kept in ``model_dir`` (None: the model has none, e.g. it was
    trained with too few masks, or before heads existed); ``config``: its verified config.json,
    read here when not given."""
    config = read_config(model_dir) if config is None else config
    info = config.get("click_head")
    return None if not info else load_click_head(Path(model_dir), info)
