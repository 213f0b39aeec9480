"""One-click masks in the real Label Studio, driven through headless Chromium: the annotator
turns Auto-Annotation on, clicks a defect with the smart point tool, a brush region appears
over it, and the submitted answer is stored as a mask label."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from ls_support import LabelStudioServer, Service, activate_model

pytestmark = pytest.mark.slow  # trains a model and drives a browser

SHOTS = Path(os.environ["DEFECTLOOP_TEST_SHOTS"]) if os.environ.get("DEFECTLOOP_TEST_SHOTS") else None


def missing_service(message: str) -> None:
    """Skip, or fail where CI demands every service (DEFECTLOOP_REQUIRE_SERVICES=1)."""
    if os.environ.get("DEFECTLOOP_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _browser():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing_service("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_service("playwright is not installed (pip install -e '.[test]')")
    return exe, sync_playwright


def _shot(page, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"))


def _login(page, ls_server: LabelStudioServer) -> None:
    page.goto(ls_server.info.url + "/user/login")
    page.fill("input[name=email]", ls_server.creds.username)
    page.fill("input[name=password]", ls_server.creds.password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def _click_and_submit(
    ls_server: LabelStudioServer,
    service: Service,
    model_dir: Path,
    summary,
    img: np.ndarray,
    click: tuple[int, int],
    shots: str,
) -> np.ndarray:
    """Push ``img`` as a mask task of a new project whose active model is ``model_dir``; in the
    browser, turn Auto-Annotation on, click ``click`` (image pixels) with the smart point tool,
    check a brush region appears around it, answer Defect and submit. Returns the stored mask
    label (bool, the image's size) and the brush region seen on screen (red pixels)."""
    exe, sync_playwright = _browser()
    h, w = img.shape[:2]
    folder = ls_server.root / f"{shots}-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    cv2.imwrite(str(folder / "part.png"), img)
    pid = service.http.post("/projects", json={"name": folder.name}).raise_for_status().json()["id"]
    service.http.post(f"/projects/{pid}/images/import", json={"path": str(folder)}).raise_for_status()
    (image_id,) = [im["id"] for im in service.http.get(f"/projects/{pid}/images").raise_for_status().json()]
    activate_model(service, pid, f"v-{shots}", model_dir, summary)
    push = (
        service.http.post(
            f"/projects/{pid}/labelstudio/push", json={"image_ids": [image_id], "asks": {str(image_id): "mask"}}
        )
        .raise_for_status()
        .json()
    )
    service.http.post(f"/projects/{pid}/labelstudio/connect").raise_for_status()
    ls_pid = service.http.get(f"/projects/{pid}").raise_for_status().json()["ls_project_id"]
    task_id = push["task_ids"][0]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        _login(page, ls_server)
        page.goto(f"{ls_server.info.url}/projects/{ls_pid}/data?task={task_id}")
        page.wait_for_timeout(5000)
        _shot(page, f"{shots}-1-task")
        page.get_by_text("Auto-Annotation").click()
        page.get_by_text("Auto-Accept Suggestions").click()
        smart = page.locator(".lsf-tool_smart").first
        for _ in range(3):  # the smart tools take turns (brush, point, box): pick the point
            if page.locator(".lsf-tool_smart.lsf-tool_active[aria-label=key-point-tool]").count():
                break
            smart.click()
            page.wait_for_timeout(300)
        page.get_by_text("Verdict and mask").click()  # focus away from the switches, so hotkeys reach the editor
        page.keyboard.press("4")  # the point tool's label (hotkeys: 3 brush, 4 point, 5 box)
        shown = page.evaluate("""() => {  // the labeling image: the largest one on the page
            const r = Array.from(document.images).map(i => i.getBoundingClientRect())
                .sort((a, b) => b.width - a.width)[0];
            return {x: r.x, y: r.y, width: r.width, height: r.height};
        }""")
        sx, sy = shown["width"] / w, shown["height"] / h
        with page.expect_response(lambda r: "interactive-annotating" in r.url, timeout=60_000) as answered:
            page.mouse.click(shown["x"] + (click[0] + 0.5) * sx, shown["y"] + (click[1] + 0.5) * sy)
        assert answered.value.status == 200
        page.wait_for_timeout(1500)
        _shot(page, f"{shots}-3-click")
        # the brush region as drawn on screen (red), mapped back to image pixels
        png = cv2.imdecode(np.frombuffer(page.screenshot(), np.uint8), cv2.IMREAD_COLOR)
        b_, g_, r_ = (png[..., i].astype(int) for i in range(3))
        red = ((r_ > 120) & (r_ > g_ + 60) & (r_ > b_ + 60)).astype(np.uint8)
        x0, y0 = round(shown["x"]), round(shown["y"])
        on_image = red[y0 : y0 + round(shown["height"]), x0 : x0 + round(shown["width"])].astype(np.float32)
        assert on_image.shape == (round(shown["height"]), round(shown["width"])), "the image is not wholly on screen"
        seen = cv2.resize(on_image, (w, h), interpolation=cv2.INTER_AREA) >= 0.5
        page.get_by_text("Verdict and mask").click()
        page.keyboard.press("2")  # the verdict Defect
        page.wait_for_timeout(300)
        page.get_by_role("button", name="Submit").click()
        page.wait_for_timeout(1000)
        _shot(page, f"{shots}-4-submitted")
        browser.close()

    import time

    deadline = time.monotonic() + 30
    lab = None
    while time.monotonic() < deadline and not (lab and lab["kind"] == "mask"):
        lab = service.http.get(f"/projects/{pid}/images/{image_id}/label").raise_for_status().json()["current"]
        time.sleep(0.5)
    assert lab is not None and lab["is_defective"] is True and lab["kind"] == "mask", lab
    stored = service.http.get(f"/projects/{pid}/images/{image_id}/label/mask").raise_for_status().content
    return cv2.imdecode(np.frombuffer(stored, np.uint8), cv2.IMREAD_GRAYSCALE) > 127, seen


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.slow
def test_a_click_in_labelstudio_makes_a_mask_that_is_stored(
    ls_server: LabelStudioServer, service: Service, tiny_demo: Path
) -> None:
    """Without a click head (a model trained with no masks to teach one): the image rule."""
    from ml.data import load_dataset
    from ml.pipeline import train_and_save
    from ml.train import TrainConfig

    model_dir = service.settings.data_dir / "models" / "browser"
    summary = train_and_save(load_dataset(tiny_demo), model_dir, TrainConfig(image_size=(64, 64), epochs=1))
    assert summary.click_head is None
    h, w = 240, 320
    img = np.full((h, w, 3), 150, np.uint8) + np.random.default_rng(1).integers(0, 12, (h, w, 3), dtype=np.uint8)
    spot = np.zeros((h, w), np.uint8)
    cv2.circle(spot, (200, 100), 16, 1, -1)
    img[spot > 0] = 40
    got, seen = _click_and_submit(ls_server, service, model_dir, summary, img, (200, 100), "rule")
    truth = spot > 0
    # the brush region was drawn over the spot, and what was submitted is stored as the mask
    assert _iou(seen, truth) >= 0.7 and seen[_far(truth)].mean() < 0.01
    assert _iou(got, truth) >= 0.8


def _far(truth: np.ndarray, margin: int = 10) -> np.ndarray:
    """Pixels more than ``margin`` px from the true mask."""
    return cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_L2, 5) > margin


@pytest.mark.slow
def test_a_click_uses_the_models_click_head(ls_server: LabelStudioServer, service: Service, tiny_demo: Path) -> None:
    """With a click head in the active model (taught by striped patches the image rule cannot
    see), the clicked patch comes back as the brush region and is stored."""
    from helpers import striped_defect

    from ml.artifact import save_model
    from ml.assist import Click, assist_mask
    from ml.click_train import ClickTrainConfig, click_case, train_click_head
    from ml.data import load_dataset
    from ml.pipeline import train_and_save
    from ml.train import TrainConfig

    model_dir = service.settings.data_dir / "models" / "browser-head"
    summary = train_and_save(load_dataset(tiny_demo), model_dir, TrainConfig(image_size=(64, 64), epochs=1))
    cases = [click_case(*striped_defect(s, 240, 320)) for s in range(24)]
    head = train_click_head([c for c in cases if c is not None], ClickTrainConfig(steps=40, batch=6, lr=2e-3))
    save_model(model_dir, summary.trained, summary.thresholds, [], click_head=head)
    img, truth = striped_defect(1000, 240, 320)
    d = cv2.distanceTransform(truth.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    rule = assist_mask(img, Click(float(x), float(y)))
    got, seen = _click_and_submit(ls_server, service, model_dir, summary, img, (int(x), int(y)), "head")
    assert _iou(seen, truth) >= 0.6 and _iou(seen, truth) >= _iou(rule, truth) + 0.2
    assert _iou(got, truth) >= 0.6


@pytest.mark.slow
def test_a_verdict_task_shows_the_model_view_and_stores_no_mask(ls_server: LabelStudioServer, service: Service) -> None:
    exe, sync_playwright = _browser()
    from backend.db.tables import ModelVersion, Prediction

    folder = ls_server.root / f"verdict-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    h, w = 240, 320
    img = np.full((h, w, 3), 150, np.uint8)
    cv2.circle(img, (200, 100), 16, (40, 40, 40), -1)
    cv2.imwrite(str(folder / "part.png"), img)
    pid = service.http.post("/projects", json={"name": folder.name}).raise_for_status().json()["id"]
    service.http.post(f"/projects/{pid}/images/import", json={"path": str(folder)}).raise_for_status()
    (image_id,) = [im["id"] for im in service.http.get(f"/projects/{pid}/images").raise_for_status().json()]
    yy, xx = np.mgrid[0:h, 0:w]
    amap = np.exp(-(((yy - 100) / 40.0) ** 2 + ((xx - 200) / 40.0) ** 2))
    map_path = folder.parent / f"{folder.name}-map.png"
    cv2.imwrite(str(map_path), (amap * 255).astype(np.uint8))
    with service.sessions().begin() as s:
        mv = ModelVersion(
            project_id=pid,
            name="v-view",
            regime="weak",
            profile="fast",
            config={},
            artifact_path="-",
            artifact_sha256="0" * 64,
            thresholds={"image": 0.5, "pixel": 0.5},
            is_active=True,
        )
        s.add(mv)
        s.flush()
        s.add(
            Prediction(
                model_version_id=mv.id, image_id=image_id, score=0.93, decision=True, anomaly_map_path=str(map_path)
            )
        )
    push = (
        service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": [image_id]}).raise_for_status().json()
    )
    ls_pid = service.http.get(f"/projects/{pid}").raise_for_status().json()["ls_project_id"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        _login(page, ls_server)
        page.goto(f"{ls_server.info.url}/projects/{ls_pid}/data?task={push['task_ids'][0]}")
        page.wait_for_selector("img[src*='/labelstudio/overlays/']", timeout=30_000)
        page.wait_for_timeout(1500)
        _shot(page, "5-verdict-task")
        # the model's view is a rendered picture, not a region: nothing to submit as a mask
        assert page.evaluate("() => document.querySelector(\"img[src*='/labelstudio/overlays/']\").naturalWidth") > 0
        assert page.get_by_text("Labeled regions will appear here").count() == 1
        page.get_by_role("button", name="Submit").click()  # the pre-selected verdict, Defect, as it is
        page.wait_for_timeout(1000)
        browser.close()

    import time

    deadline = time.monotonic() + 30
    lab = None
    while time.monotonic() < deadline and lab is None:
        lab = service.http.get(f"/projects/{pid}/images/{image_id}/label").raise_for_status().json()["current"]
        time.sleep(0.5)
    assert lab is not None and lab["is_defective"] is True and lab["kind"] == "image" and lab["mask_origin"] is None
