import numpy as np
import pytest

from ml.predict import Predictor, Thresholds, calibrate
from ml.supersimplenet.features import FeatureExtractor, get_backbone_spec
from ml.supersimplenet.model import HeadConfig, SuperSimpleNet


def test_calibration_modes() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    th = calibrate(scores, labels)
    assert th.image == pytest.approx(0.4) and "max F1" in th.image_method
    fpr = calibrate(scores, labels, mode="fpr:0.0").image
    assert ((scores >= fpr) & (labels == 0)).sum() == 0 and fpr <= 0.7
    fnr = calibrate(scores, labels, mode="fnr:0.0").image
    assert ((scores < fnr) & (labels == 1)).sum() == 0 and fnr == pytest.approx(0.4)
    with pytest.raises(ValueError, match="threshold mode"):
        calibrate(scores, labels, mode="youden")


def test_calibration_fallbacks_are_stated() -> None:
    normal_only = calibrate(np.array([0.1, 0.2, 0.9]), np.zeros(3))
    assert normal_only.image >= 0.5 and any("no defective validation" in n for n in normal_only.notes)
    low = calibrate(np.array([0.1, 0.2, 0.3]), np.zeros(3))
    assert low.image == 0.5  # never flags everything when normal scores are low
    none = calibrate(np.zeros(0), np.zeros(0))
    assert none.image == 0.5 and none.pixel == 0.5 and len(none.notes) == 2
    px = calibrate(np.array([0.1, 0.9]), np.array([0, 1]), np.array([0.1, 0.2, 0.8]), np.array([0, 0, 1]))
    assert px.pixel == pytest.approx(0.8)


def test_predictions_come_back_at_original_resolution() -> None:
    ext = FeatureExtractor(get_backbone_spec("tf_efficientnet_lite0"), "random", upscale=1)
    model = SuperSimpleNet(HeadConfig(ext.channels, 16, 8, 3))
    pred = Predictor(ext, model, (64, 64), Thresholds(image=0.5, pixel=0.5))
    images = [np.zeros((50, 90, 3), np.uint8), np.full((130, 70, 3), 200, np.uint8)]
    out = pred.predict(images)
    assert [p.pred_map.shape for p in out] == [(50, 90), (130, 70)]
    assert all(p.pred_mask.dtype == bool and p.pred_mask.shape == p.pred_map.shape for p in out)
    assert all(0 <= p.score <= 1 and p.embedding.shape == (ext.channels,) for p in out)
    assert all(0 <= p.pred_map.min() and p.pred_map.max() <= 1 for p in out)
    assert set(out[0].uncertainty) >= {"score_margin", "score_entropy", "map_max", "map_score_disagreement"}


def test_map_max_score_reads_the_anomaly_map() -> None:
    ext = FeatureExtractor(get_backbone_spec("tf_efficientnet_lite0"), "random", upscale=1)
    model = SuperSimpleNet(HeadConfig(ext.channels, 16, 8, 3))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    head = Predictor(ext, model, (64, 64)).raw(images)
    by_map = Predictor(ext, model, (64, 64), image_score="map_max").raw(images)
    assert np.allclose(by_map[0], by_map[1].max(axis=(1, 2)))
    assert np.allclose(head[1], by_map[1]) and not np.allclose(head[0], by_map[0])
    with pytest.raises(ValueError, match="image_score"):
        Predictor(ext, model, (64, 64), image_score="mean")
