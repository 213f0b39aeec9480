import json
from pathlib import Path

import numpy as np
import pytest

from ml.artifact import load_model, read_config, save_model
from ml.data import load_dataset
from ml.errors import ArtifactError
from ml.predict import Thresholds
from ml.train import TrainConfig, fit


@pytest.fixture(scope="module")
def trained(tiny_demo: Path):
    samples = list(load_dataset(tiny_demo).select("train").samples)
    return fit(samples, TrainConfig(backbone_weights="random", image_size=(64, 64), epochs=1)), samples


def test_round_trip_predicts_identically(trained, tmp_path: Path) -> None:
    tm, samples = trained
    th = Thresholds(0.42, 0.61, "test", "test")
    out = save_model(tmp_path / "m", tm, th, samples, {"image_auroc": 0.5})
    assert sorted(p.name for p in out.iterdir()) == ["checksum.sha256", "config.json", "model.safetensors"]
    cfg = read_config(out)
    assert cfg["regime"] == tm.regime.value and cfg["backbone"]["weights"] == "random"
    assert cfg["training_set"]["n_images"] == len(samples)
    sched = cfg["schedule"]  # what the run actually used, overrides resolved
    assert sched["epochs"] == 1 and sched["max_steps"] is None and sched["head_lr"] == tm.config.profile_spec().head_lr
    assert cfg["training_set"]["images"] == sorted(
        cfg["training_set"]["images"], key=lambda d: (d["sha256"], d["kind"])
    )
    assert {d["kind"] for d in cfg["training_set"]["images"]} == {"normal", "mask"}
    assert not any(
        "backbone" in k for k in __import__("safetensors.torch").torch.load_file(str(out / "model.safetensors"))
    )
    loaded = load_model(out, backbone_weights="random")
    assert loaded.predictor.thresholds == th
    img = np.random.default_rng(0).integers(0, 255, (70, 80, 3), dtype=np.uint8)
    from ml.predict import Predictor

    direct = Predictor(tm.extractor, tm.model, (64, 64), th).predict([img])[0]
    again = loaded.predictor.predict([img])[0]
    assert direct.score == pytest.approx(again.score, abs=1e-6)
    np.testing.assert_allclose(direct.pred_map, again.pred_map, atol=1e-5)


def test_refuses_a_different_backbone(trained, tmp_path: Path) -> None:
    tm, samples = trained
    out = save_model(tmp_path / "m", tm, Thresholds(), samples)
    with pytest.raises(ArtifactError, match="backbone weights differ"):
        load_model(out, backbone_weights="pretrained")


def test_detects_corruption_and_missing_files(trained, tmp_path: Path) -> None:
    tm, samples = trained
    out = save_model(tmp_path / "m", tm, Thresholds(), samples)
    cfg = json.loads((out / "config.json").read_text())
    cfg["thresholds"]["image"] = 0.01
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_config(out)
    (out / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing model.safetensors"):
        read_config(out)
    with pytest.raises(ArtifactError, match="no such model directory"):
        read_config(tmp_path / "nothing")


def test_writing_is_atomic(trained, tmp_path: Path) -> None:
    """A failure while saving leaves the previous model untouched and no temporary folder."""
    tm, samples = trained
    out = save_model(tmp_path / "m", tm, Thresholds(0.3, 0.3), samples)
    before = (out / "config.json").read_text()
    with pytest.raises(FileNotFoundError):  # the fingerprint cannot hash a vanished image
        save_model(tmp_path / "m", tm, Thresholds(0.9, 0.9), samples + [samples[0].__class__(tmp_path / "gone.png", 0)])
    assert (out / "config.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
