import numpy as np
import pytest

from ml.metrics import aupro, best_f1_threshold, image_metrics, pixel_metrics


def test_aupro_hand_case() -> None:
    """Two regions of unequal size; 4 normal pixels. Worked out by hand below.

    pixels (score, kind): r1 = {0.9, 0.5} (region 1, 2 px), r2 = {0.8} (region 2, 1 px),
    normal = {0.7, 0.4, 0.2, 0.1}. Sorted descending thresholds:
      0.9 -> PRO = (1/2 + 0)/2 = 0.25, FPR 0
      0.8 -> PRO = (1/2 + 1)/2 = 0.75, FPR 0
      0.7 -> PRO 0.75, FPR 0.25
      0.5 -> PRO 1.0, FPR 0.25
    Integrate to FPR 0.3: area = 0.25 * 0.75 + 0.05 * 1.0 = 0.2375; / 0.3 = 0.791666...
    """
    m1 = np.array([[0.9, 0.5, 0.7, 0.1]])  # region 1 = first two pixels
    g1 = np.array([[1, 1, 0, 0]], bool)
    m2 = np.array([[0.8, 0.4, 0.2]])  # region 2 = first pixel
    g2 = np.array([[1, 0, 0]], bool)
    assert aupro([m1, m2], [g1, g2]) == pytest.approx(0.2375 / 0.3)


def test_aupro_perfect_and_inverted() -> None:
    g = np.zeros((8, 8), bool)
    g[2:4, 2:4] = True
    assert aupro([g.astype(float)], [g]) == pytest.approx(1.0)
    assert aupro([1.0 - g.astype(float)], [g]) == pytest.approx(0.0)


def test_image_metrics_and_f1_threshold() -> None:
    scores = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.9])
    labels = np.array([0, 0, 1, 0, 1, 1])
    t, f1 = best_f1_threshold(scores, labels)
    assert t == pytest.approx(0.35) and f1 == pytest.approx(2 * 3 / (2 * 3 + 1))
    m = image_metrics(scores, labels, t)
    assert m["image_auroc"] == pytest.approx(8 / 9) and m["image_f1"] == pytest.approx(6 / 7)
    assert 0 <= m["image_ap"] <= 1
    assert image_metrics(scores, np.zeros(6), 0.5)["image_auroc"] is None


def test_pixel_metrics_none_without_defects() -> None:
    z = np.zeros((4, 4), bool)
    assert pixel_metrics([np.random.rand(4, 4)], [z]) == {"pixel_auroc": None, "pixel_aupro": None, "pixel_ap": None}
    g = z.copy()
    g[1, 1] = True
    out = pixel_metrics([g.astype(float)], [g])
    assert out == {"pixel_auroc": 1.0, "pixel_aupro": pytest.approx(1.0), "pixel_ap": 1.0}
