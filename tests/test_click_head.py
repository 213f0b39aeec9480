"""The learned one-click head (ml.click_head, ml.click_train): it learns defects from masks on
generated surfaces, keeps the assist contract, travels in the model directory and is trained
by the pipeline only when there are enough masks."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import striped_defect
from scipy.ndimage import distance_transform_edt

from ml.artifact import click_head_of, load_model
from ml.assist import Click, assist_mask
from ml.click_head import INPUT_SIDE, WEIGHTS_FILE, ClickHead, find, find_all, segment
from ml.click_train import MIN_MASKS, ClickTrainConfig, click_case, train_click_head
from ml.errors import ArtifactError, TrainingError


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def innermost(mask: np.ndarray) -> tuple[int, int]:
    d = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(x), int(y)


@pytest.fixture(scope="module")
def taught() -> ClickHead:
    """A head taught by 24 generated striped defects (a short schedule: seconds)."""
    cases = [click_case(*striped_defect(s)) for s in range(24)]
    return train_click_head([c for c in cases if c is not None], ClickTrainConfig(steps=40, batch=6, lr=2e-3))


def test_the_head_learns_defects_the_image_rule_misses(taught: ClickHead) -> None:
    rule, head = [], []
    for s in range(100, 112):  # defects it never saw
        img, truth = striped_defect(s)
        x, y = innermost(truth)
        rule.append(iou(assist_mask(img, Click(x, y)), truth))
        head.append(iou(assist_mask(img, Click(x, y), taught), truth))
    print(f"median IoU: head {np.median(head):.3f}, image rule {np.median(rule):.3f}")
    assert np.median(head) >= 0.6, head
    assert np.median(head) >= np.median(rule) + 0.25, (head, rule)


def test_a_click_always_gets_a_mask_of_the_image_size_holding_the_click(taught: ClickHead) -> None:
    img, _ = striped_defect(7)
    flat = np.full((40, 300, 3), 128, np.uint8)  # nothing to find; a thin image
    for image, (x, y) in [(img, (0, 0)), (img, (159, 127)), (img, (80.5, 60.2)), (flat, (150, 20)), (flat, (0, 39))]:
        out = segment(taught, image, x, y)
        assert out.dtype == bool and out.shape == image.shape[:2]
        assert out[int(y), int(x)]


def test_clicks_zoomed_together_find_what_each_finds_alone(taught: ClickHead) -> None:
    img, truth = striped_defect(101)
    x, y = innermost(truth)
    flat = np.full(img.shape, 128, np.uint8)
    clicks = [(float(x), float(y)), (3.0, 3.0), (float(x) + 1, float(y)), (150.0, 100.0)]
    for image in (img, flat):
        together = find_all(taught, image, clicks)
        assert len(together) == len(clicks)
        for (cx, cy), mask in zip(clicks, together, strict=True):
            alone = find(taught, image, cx, cy)
            assert (mask is None) == (alone is None), (cx, cy)
            if mask is not None and alone is not None:
                assert mask.shape == image.shape[:2] and mask[int(cy), int(cx)]
                assert iou(mask, alone) >= 0.99, (cx, cy, iou(mask, alone))
    assert find_all(taught, img, []) == []
    assert find_all(taught, img, clicks[:1])[0] is not None  # the defect is found: the test can fail


def test_a_box_is_still_grabcut_and_a_click_outside_is_refused(taught: ClickHead) -> None:
    img, truth = striped_defect(3)
    ys, xs = np.nonzero(truth)
    box = Click(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    cv2.setRNGSeed(0)  # GrabCut's colour models start from OpenCV's random generator
    with_head = assist_mask(img, box, taught)
    cv2.setRNGSeed(0)
    assert (with_head == assist_mask(img, box)).all()
    with pytest.raises(ValueError, match="outside"):
        assist_mask(img, Click(500, 5), taught)


def test_too_few_masks_teach_no_head() -> None:
    cases = [click_case(*striped_defect(s)) for s in range(MIN_MASKS - 1)]
    with pytest.raises(TrainingError, match=f"at least {MIN_MASKS} masks"):
        train_click_head([c for c in cases if c is not None], ClickTrainConfig(steps=2))
    assert click_case(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)) is None


def test_a_head_saved_with_the_encoders_unused_blocks_still_loads(taught: ClickHead, tmp_path: Path) -> None:
    """The encoder stops at its deepest stage read; heads saved when it still held timm's later
    blocks load, ignoring them, and any other stray or missing weight is refused."""
    from dataclasses import asdict

    from safetensors.torch import load_file, save_file

    from ml.click_head import load_click_head, save_click_head

    assert not any(k.startswith("encoder.blocks.5.") for k in taught.net.state_dict())
    save_click_head(taught, tmp_path)
    state = load_file(str(tmp_path / WEIGHTS_FILE))
    extra = dict(state, **{"encoder.blocks.5.0.conv_pw.weight": torch.zeros(1152, 192, 1, 1, dtype=torch.float16)})
    save_file(extra, str(tmp_path / WEIGHTS_FILE))
    loaded = load_click_head(tmp_path, asdict(taught.info))
    x = torch.rand(1, 3, INPUT_SIDE, INPUT_SIDE) * 2 - 1
    click = torch.zeros(1, 1, INPUT_SIDE, INPUT_SIDE)
    with torch.no_grad():
        a, b = taught.net(x, click), loaded.net(x, click)
    assert torch.allclose(a, b, atol=0.05 * float(a.abs().max()) + 1e-3)
    for bad in (dict(state, stray=torch.zeros(1)), {k: v for k, v in state.items() if "up1" not in k}):
        save_file(bad, str(tmp_path / WEIGHTS_FILE))
        with pytest.raises(ArtifactError, match="does not fit"):
            load_click_head(tmp_path, asdict(taught.info))


def test_the_pipeline_keeps_the_head_in_the_model_directory(tiny_demo: Path, tmp_path: Path) -> None:
    from ml.data import load_dataset
    from ml.pipeline import train_and_save
    from ml.train_config import TrainConfig

    ds = load_dataset(tiny_demo)
    cfg = TrainConfig(
        image_size=(64, 64),
        epochs=1,
        backbone_weights="random",
        device="cpu",
        click_head_steps=4,
        click_head_min_masks=5,
    )
    summary = train_and_save(ds, tmp_path / "m", cfg)
    assert summary.click_head is not None and summary.click_head.info.steps == 4
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["click_head"]["n_masks"] == 6
    assert WEIGHTS_FILE in (tmp_path / "m" / "checksum.sha256").read_text()
    loaded = load_model(tmp_path / "m", device="cpu")
    assert loaded.click_head is not None and loaded.predictor.click_head is loaded.click_head
    # stored in float16: the loaded network answers as the trained one, to float16's precision
    x = torch.rand(1, 3, INPUT_SIDE, INPUT_SIDE) * 2 - 1
    click = torch.zeros(1, 1, INPUT_SIDE, INPUT_SIDE)
    click[..., 75:85, 75:85] = 1
    with torch.no_grad():
        a, b = summary.click_head.net(x, click), loaded.click_head.net(x, click)
    assert torch.allclose(a, b, atol=0.05 * float(a.abs().max()) + 1e-3)
    # without the steps, or with the head's file damaged
    plain = TrainConfig(image_size=(64, 64), epochs=1, backbone_weights="random", device="cpu")
    none = train_and_save(ds, tmp_path / "n", plain)
    assert none.click_head is None and click_head_of(tmp_path / "n") is None
    # `defectloop assist` segments with the head where the model has one, and says which
    from backend.cli.assist_files import assist_files

    cv2.imwrite(str(tmp_path / "part.png"), cv2.cvtColor(striped_defect(5)[0], cv2.COLOR_RGB2BGR))
    (tmp_path / "clicks.csv").write_text("file,x,y\npart.png,40,30\n")
    for model, segmenter in (("m", "click_head"), ("n", "image")):
        report = assist_files(tmp_path / model, tmp_path / "clicks.csv", tmp_path / f"out-{model}")
        assert report["segmenter"] == segmenter and report["clicks"] == 1 and not report["errors"]
    with (tmp_path / "m" / WEIGHTS_FILE).open("r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactError, match="checksum"):
        click_head_of(tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(ArtifactError, match=f"missing {WEIGHTS_FILE}"):
        load_model(tmp_path / "m", device="cpu")


def test_proposals_clicked_inside_the_maps_blob_hug_the_defect(taught: ClickHead) -> None:
    """CLICK_HEAD: the head clicked inside the blob AUTO makes of the coarse map, against the blob itself
    (COARSE) and the image-guided refinement (AUTO)."""
    from ml.refine import RefineMethod, choose_method, refine_mask

    cases = []
    for s in range(200, 210):
        img, truth = striped_defect(s)
        blur = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 12)  # a 1/8-resolution map's blob
        cases.append((img, blur / blur.max(), truth))
    head = [iou(refine_mask(img, pm, 0.2, RefineMethod.CLICK_HEAD, taught), t) for img, pm, t in cases]
    auto = [iou(refine_mask(img, pm, 0.2, RefineMethod.AUTO), t) for img, pm, t in cases]
    coarse = [iou(refine_mask(img, pm, 0.2, RefineMethod.COARSE), t) for img, pm, t in cases]
    assert np.median(head) >= 0.8 and np.median(head) >= np.median(coarse) + 0.3, (head, coarse)
    assert np.mean(head) > np.mean(auto), (head, auto)
    # without the head CLICK_HEAD is AUTO, and only with it is it a candidate
    img, pm, _ = cases[0]
    assert (refine_mask(img, pm, 0.2, RefineMethod.CLICK_HEAD) == refine_mask(img, pm, 0.2, RefineMethod.AUTO)).all()
    chosen = choose_method(cases, 0.2, head=taught)
    assert "click_head" in chosen.mean_iou and chosen.method is RefineMethod.CLICK_HEAD
    assert "click_head" not in choose_method(cases, 0.2).mean_iou


def test_a_proposal_keeps_autos_component_where_the_head_finds_nothing(
    taught: ClickHead, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLICK_HEAD clicks the head in AUTO's largest components (MAX_CLICKS), at their innermost
    points; where the head finds nothing there, AUTO's mask stays as it is."""
    import ml.click_head
    from ml.refine import MAX_CLICKS, RefineMethod, innermost, refine_mask

    img, truth = striped_defect(201)
    blur = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 12)
    pm = blur / blur.max()
    auto = refine_mask(img, pm, 0.2, RefineMethod.AUTO)
    clicks: list[tuple[float, float]] = []

    def nothing(head: ClickHead, image: np.ndarray, points: list[tuple[float, float]]) -> list[None]:
        clicks.extend(points)
        return [None] * len(points)

    monkeypatch.setattr(ml.click_head, "find_all", nothing)
    assert (refine_mask(img, pm, 0.2, RefineMethod.CLICK_HEAD, taught) == auto).all()
    n, _ = cv2.connectedComponents(auto.astype(np.uint8))
    assert 1 <= len(clicks) == min(n - 1, MAX_CLICKS) and all(auto[int(y), int(x)] for x, y in clicks)
    # the innermost point: the maximum of the distance transform, the image's edge not background
    corner = np.zeros((20, 30), bool)
    corner[0:6, 0:6] = True
    assert innermost(corner) == (0, 0)
    rng = np.random.default_rng(0)
    for _ in range(5):  # worked out on the bounding box: as deep as the whole image's transform says
        blob = cv2.GaussianBlur(rng.random((60, 80)), (0, 0), 4) > 0.52
        x, y = innermost(blob)
        depth = distance_transform_edt(blob)
        assert blob[y, x] and depth[y, x] == depth.max()
