"""Mask proposals refined with the image (ml.refine) and one-click masks (ml.assist), on generated
surfaces where the true defect is known and the anomaly map is a coarse blob around it, as the
model's 1/8-resolution, blurred map is."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ml.assist import CLICK_WINDOW, AssistError, Click, assist_mask
from ml.refine import RefineMethod, refine_mask, region_threshold


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def surface(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """A gray, brushed-metal-like texture: uint8 (h, w, 3)."""
    rng = np.random.default_rng(seed)
    base = 120 + 25 * cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 6)
    streaks = 6 * cv2.GaussianBlur(rng.standard_normal((1, w)).astype(np.float32), (0, 0), 1.5)
    g = np.clip(base + streaks + 4 * rng.standard_normal((h, w)), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def with_defect(img: np.ndarray, mask: np.ndarray, delta: float) -> np.ndarray:
    out = img.astype(np.float32)
    out[mask] += delta
    return np.clip(out, 0, 255).astype(np.uint8)


def coarse_map(mask: np.ndarray, sigma: float = 10.0) -> np.ndarray:
    """A blurred map peaking on the defect: what a 1/8-resolution head sees."""
    m = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    return m / m.max()


def scratch(h: int = 240, w: int = 320) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.line(m, (90, 150), (210, 110), 1, 3)
    return m > 0


def blob(h: int = 240, w: int = 320, center: tuple[int, int] = (200, 120), r: int = 9) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.circle(m, center, r, 1, -1)
    return m > 0


@pytest.mark.parametrize("truth,delta", [(scratch(), -45.0), (blob(), -50.0), (blob(), 50.0)])
def test_contrast_refinement_hugs_the_defect_where_the_blob_does_not(truth: np.ndarray, delta: float) -> None:
    img = with_defect(surface(), truth, delta)
    pm = coarse_map(truth)
    coarse = refine_mask(img, pm, 0.2, RefineMethod.COARSE)
    refined = refine_mask(img, pm, 0.2, RefineMethod.CONTRAST)
    assert iou(coarse, truth) < 0.35
    assert iou(refined, truth) >= 0.6 and iou(refined, truth) >= iou(coarse, truth) + 0.3


@pytest.mark.parametrize("method", list(RefineMethod))
def test_every_method_keeps_the_contract(method: RefineMethod) -> None:
    truth = blob()
    img = with_defect(surface(seed=1), truth, -50)
    pm = coarse_map(truth)
    out = refine_mask(img, pm, 0.3, method)
    assert out.dtype == bool and out.shape == truth.shape and out.any()
    assert not out[pm < 0.05].any()  # never far outside the map's region
    assert not refine_mask(img, np.zeros_like(pm), 0.3, method).any()  # no region: no mask
    with pytest.raises(ValueError, match="differ in size"):
        refine_mask(img, pm[:-1], 0.3, method)


def test_a_weaker_second_blob_of_the_map_is_not_proposed() -> None:
    truth = blob()
    img = with_defect(surface(seed=2), truth, -50)
    pm = np.maximum(coarse_map(truth), 0.45 * coarse_map(blob(center=(60, 60))))
    refined = refine_mask(img, pm, 0.3, RefineMethod.CONTRAST)
    assert not refined[:120, :120].any() and iou(refined, truth) >= 0.6


def test_a_defect_verdict_whose_map_stays_under_the_threshold_is_proposed_the_region_at_its_peak() -> None:
    truth = blob()
    img = with_defect(surface(), truth, -50.0)
    weak = 0.4 * coarse_map(truth)  # the map peaks on the defect, below the pixel threshold
    threshold = 0.6
    assert not refine_mask(img, weak, threshold, RefineMethod.AUTO).any()
    cut = region_threshold(weak, threshold, defective=True)
    assert 0 < cut < float(weak.max())
    mask = refine_mask(img, weak, cut, RefineMethod.AUTO)
    assert iou(mask, truth) > 0.3
    # judged normal, or a region at the threshold already: the pixel threshold as it is
    assert region_threshold(weak, threshold, defective=False) == threshold
    assert region_threshold(coarse_map(truth), threshold, defective=True) == threshold
    # a flat map points nowhere
    assert region_threshold(np.full(truth.shape, 0.2, np.float32), threshold, defective=True) == threshold


@pytest.mark.parametrize("truth,delta", [(scratch(), -45.0), (blob(), -50.0), (blob(r=14), 40.0)])
def test_one_click_at_the_defect_masks_it(truth: np.ndarray, delta: float) -> None:
    img = with_defect(surface(seed=3), truth, delta)
    ys, xs = np.nonzero(truth)
    k = len(ys) // 2
    out = assist_mask(img, Click(float(xs[k]), float(ys[k])))
    assert iou(out, truth) >= 0.6


def test_a_click_in_a_large_even_area_floods_its_window_and_a_box_takes_it_whole() -> None:
    truth = np.zeros((240, 320), bool)
    truth[40:200, 150:300] = True  # a large, faintly brighter patch (e.g. an uneven area)
    img = with_defect(surface(seed=4), truth, 30)
    out = assist_mask(img, Click(225, 120))
    half = CLICK_WINDOW // 2
    inside = np.zeros_like(truth)
    inside[120 - half : 120 + half, 225 - half : 225 + half] = True
    assert not out[~inside].any() and not out[~truth].any()  # a click looks no further than its window
    assert out.sum() >= 0.3 * inside.sum()  # ... and floods a good part of it
    boxed = assist_mask(img, Click(140, 30, 310, 210))
    assert iou(boxed, truth) >= 0.7


def test_a_box_masks_the_defect_inside_it() -> None:
    truth = blob()
    img = with_defect(surface(seed=5), truth, -50)
    out = assist_mask(img, Click(180, 100, 220, 140))
    assert iou(out, truth) >= 0.6 and not out[:, :175].any()


@pytest.mark.parametrize(
    "click", [Click(-1, 10), Click(320, 10), Click(10, 240), Click(float("nan"), 3), Click(5, 5, 999, 5)]
)
def test_a_point_outside_the_image_is_refused(click: Click) -> None:
    with pytest.raises(AssistError, match="outside the 320x240 image"):
        assist_mask(surface(), click)


def test_auto_takes_the_contrast_mask_for_a_crisp_defect_and_the_region_for_a_faint_large_one() -> None:
    crisp = blob()
    img = with_defect(surface(seed=6), crisp, -50)
    pm = coarse_map(crisp)
    auto = refine_mask(img, pm, 0.2, RefineMethod.AUTO)
    np.testing.assert_array_equal(auto, refine_mask(img, pm, 0.2, RefineMethod.CONTRAST))
    faint = np.zeros((240, 320), bool)
    faint[60:180, 100:240] = True
    img = with_defect(surface(seed=7), faint, 8)
    pm = coarse_map(faint, sigma=12)
    auto = refine_mask(img, pm, 0.5, RefineMethod.AUTO)
    contrast = refine_mask(img, pm, 0.5, RefineMethod.CONTRAST)
    assert iou(auto, faint) >= 0.6 and iou(auto, faint) >= iou(contrast, faint) + 0.2


def test_the_method_is_chosen_on_validation_defects() -> None:
    from ml.refine import DEFAULT_METHOD, choose_method

    faint = np.zeros((240, 320), bool)
    faint[60:180, 100:240] = True  # large, faint areas: the map's region beats the contrast mask
    cases = [(with_defect(surface(seed=10 + i), faint, 8), coarse_map(faint, sigma=12), faint) for i in range(5)]
    choice = choose_method(cases, 0.5)
    # without a click head, every method but CLICK_HEAD is a candidate
    assert choice.n == 5 and set(choice.mean_iou) == {m.value for m in RefineMethod} - {"click_head"}
    assert choice.mean_iou[choice.method.value] == max(choice.mean_iou.values())
    assert choice.mean_iou[choice.method.value] > choice.mean_iou["contrast"] + 0.2
    few = choose_method(cases[:4], 0.5)
    assert few.method is DEFAULT_METHOD and few.mean_iou == {} and "< 5" in few.note


def test_a_trained_model_records_the_chosen_mask_method(tiny_demo, tmp_path) -> None:
    import json

    from ml.artifact import load_model
    from ml.data import load_dataset
    from ml.pipeline import train_and_save
    from ml.train import TrainConfig

    summary = train_and_save(
        load_dataset(tiny_demo), tmp_path / "m", TrainConfig(backbone_weights="random", image_size=(64, 64), epochs=1)
    )
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["mask_method"] == summary.mask_choice.method.value
    assert config["mask_method_choice"]["n"] == summary.mask_choice.n
    assert load_model(tmp_path / "m", device="cpu").predictor.mask_method is summary.mask_choice.method
