"""defectloop against a real Label Studio 1.23.2: batches out, answers in, nothing lost."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from ls_support import SECRET, LabelStudioServer, Service, activate_model
from sqlalchemy import select

from labelstudio.conversions import (
    brush_result,
    choice_result,
    mask_to_rle,
    rle_to_mask,
)


# ---- helpers --------------------------------------------------------------------------------
def make_project(svc: Service, ls: LabelStudioServer) -> tuple[int, dict[str, int]]:
    """A project with the server's images imported; returns its id and {file name: image id}."""
    name = f"line-{uuid.uuid4().hex[:8]}"
    pid = svc.http.post("/projects", json={"name": name}).raise_for_status().json()["id"]
    res = (
        svc.http.post(f"/projects/{pid}/images/import", json={"path": str(ls.root / "line1")}).raise_for_status().json()
    )
    assert res["imported"] == 6
    images = svc.http.get(f"/projects/{pid}/images").raise_for_status().json()
    return pid, {Path(im["uri"]).name: im["id"] for im in images}


def anomaly_map(h: int, w: int, seed: int) -> np.ndarray:
    """A float map in [0, 1] with one bright blob (the proposal)."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    cy, cx = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
    return np.exp(-(((yy - cy) / (h / 6)) ** 2 + ((xx - cx) / (w / 6)) ** 2)).astype(np.float32)


def register_model(svc: Service, pid: int, defective: set[int]) -> dict[int, np.ndarray]:
    """An active model version whose pool scores and maps are stored (what pool scoring writes).

    Returns the expected pseudo-mask of each image (map >= pixel threshold, full resolution).
    """
    from backend.db.tables import Image, ModelVersion, Prediction

    expected: dict[int, np.ndarray] = {}
    maps = svc.settings.data_dir / "maps-test"
    maps.mkdir(parents=True, exist_ok=True)
    with svc.sessions().begin() as s:
        mv = ModelVersion(
            project_id=pid,
            name="v1-test",
            regime="unsupervised",
            profile="fast",
            config={},
            artifact_path="/nonexistent",
            artifact_sha256="0" * 64,
            thresholds={"image": 0.5, "pixel": 0.5},
            is_active=True,
        )
        s.add(mv)
        s.flush()
        for im in s.scalars(select(Image).where(Image.project_id == pid)):
            amap = anomaly_map(im.height, im.width, im.id)
            png = (amap * 255).astype(np.uint8)
            path = maps / f"{im.id}.png"
            cv2.imwrite(str(path), png)
            is_def = im.id in defective
            s.add(
                Prediction(
                    model_version_id=mv.id,
                    image_id=im.id,
                    score=0.9 if is_def else 0.1,
                    decision=is_def,
                    anomaly_map_path=str(path),
                )
            )
            expected[im.id] = (png.astype(np.float32) / 255.0 >= 0.5) if is_def else None
    return expected


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def current(svc: Service, pid: int, image_id: int) -> dict | None:
    return svc.http.get(f"/projects/{pid}/images/{image_id}/label").raise_for_status().json()["current"]


def label_mask(svc: Service, pid: int, image_id: int) -> np.ndarray | None:
    r = svc.http.get(f"/projects/{pid}/images/{image_id}/label/mask")
    if r.status_code == 404:
        return None
    return cv2.imdecode(np.frombuffer(r.raise_for_status().content, np.uint8), cv2.IMREAD_GRAYSCALE) > 127


def history(svc: Service, pid: int, image_id: int) -> list[dict]:
    return svc.http.get(f"/projects/{pid}/images/{image_id}/label").raise_for_status().json()["history"]


def strokes(h: int, w: int) -> list[np.ndarray]:
    """Two separate brush strokes an annotator might paint."""
    a = np.zeros((h, w), bool)
    a[5:20, 10:30] = True
    b = np.zeros((h, w), bool)
    b[h - 25 : h - 8, w - 40 : w - 12] = True
    return [a, b]


# ---- server lifecycle ---------------------------------------------------------------------
def test_start_is_idempotent_and_refuses_a_taken_port(ls_server: LabelStudioServer, tmp_path: Path) -> None:
    from labelstudio import server

    again = server.start(ls_server.home, document_root=ls_server.root, venv=ls_server.venv)
    assert again == ls_server.info  # already running: the same server, no second process
    with pytest.raises(server.ServerError, match="document root"):
        server.start(ls_server.home, document_root=tmp_path, venv=ls_server.venv)
    with pytest.raises(server.ServerError, match=f"port {ls_server.info.port}"):
        server.start(tmp_path / "other", document_root=ls_server.root, venv=ls_server.venv, port=ls_server.info.port)
    assert server.status(tmp_path / "other") is None
    assert httpx.get(f"{ls_server.info.url}/health", timeout=5).status_code == 200


# ---- out ------------------------------------------------------------------------------------
def test_push_creates_tasks_in_rank_order_with_full_resolution_proposals(
    ls_server: LabelStudioServer, service: Service
) -> None:
    pid, ids = make_project(service, ls_server)
    order = [ids["part_3.png"], ids["part_0.png"], ids["part_5.png"], ids["part_1.png"]]
    expected = register_model(service, pid, defective={ids["part_3.png"], ids["part_5.png"]})
    res = (
        service.http.post(
            f"/projects/{pid}/labelstudio/push", json={"image_ids": order, "asks": {str(ids["part_5.png"]): "mask"}}
        )
        .raise_for_status()
        .json()
    )
    assert res["pushed"] == 4 and res["with_prediction"] == 4 and res["model_version"] == "v1-test"
    task_ids = res["task_ids"]
    assert task_ids == sorted(task_ids)  # Community Edition serves tasks by id: id order is rank order

    sdk = ls_server.sdk()
    for rank, (image_id, tid) in enumerate(zip(order, task_ids, strict=True), start=1):
        task = sdk.tasks.get(id=tid)
        assert task.data["rank"] == rank and task.data["defectloop_image_id"] == image_id
        assert task.data["ask"] == ("mask" if image_id == ids["part_5.png"] else "verdict")
        # the image is served by Label Studio itself, with auth
        img = httpx.get(
            ls_server.info.url + task.data["image"], headers={"Authorization": f"Token {ls_server.creds.token}"}
        )
        assert img.status_code == 200 and img.content[:4] == b"\x89PNG"
        (pred,) = sdk.predictions.list(task=tid)
        assert pred.model_version == "v1-test"
        choice = next(r for r in pred.result if r["type"] == "choices")
        brush = [r for r in pred.result if r["type"] == "brushlabels"]
        if expected[image_id] is None:
            assert choice["value"]["choices"] == ["OK"] and not brush and task.data["overlay"] == ""
        elif image_id != ids["part_5.png"]:  # a verdict task: the verdict only, never a brush to submit ...
            assert choice["value"]["choices"] == ["Defect"] and not brush
            # ... and the model's view as a picture behind a link signed for it alone
            url = task.data["overlay"].split('src="')[1].split('"')[0].replace("&amp;", "&")
            pic = httpx.get(url)
            assert (
                pic.status_code == 200
                and pic.headers["content-type"] == "image/jpeg"
                and pic.content[:2] == b"\xff\xd8"
            )
            assert httpx.get(url[:-4] + "0000").status_code == 403
            assert httpx.get(url.replace("/overlays/", "/images/")).status_code == 403  # not an image link
        else:  # the mask task: the proposal refined at full resolution, inside the map's region, kept
            assert choice["value"]["choices"] == ["Defect"]
            h, w = expected[image_id].shape
            assert (brush[0]["original_width"], brush[0]["original_height"]) == (w, h)
            shown = rle_to_mask(brush[0]["value"]["rle"], h, w)
            assert shown.any() and not (shown & ~expected[image_id]).any()
            np.testing.assert_array_equal(shown, task_proposal(service, tid))

    # pushing again duplicates nothing; a labelled image is not sent unless asked
    service.http.put(
        f"/projects/{pid}/images/{ids['part_2.png']}/label", data={"is_defective": "false"}
    ).raise_for_status()
    again = (
        service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": order + [ids["part_2.png"]]})
        .raise_for_status()
        .json()
    )
    assert again["pushed"] == 0 and sorted(again["already_in_labelstudio"]) == sorted(order)
    assert again["already_labelled"] == [ids["part_2.png"]]
    assert len(sdk.tasks.list(project=res_project(service, pid), fields="task_only").items) == 4


def task_proposal(svc: Service, task_id: int) -> np.ndarray | None:
    """The proposal defectloop recorded for a Label Studio task."""
    from backend.db.tables import LsTask
    from backend.services.labels import decode_mask

    with svc.sessions()() as s:
        t = s.scalars(select(LsTask).where(LsTask.ls_task_id == task_id)).one()
        return None if t.proposal_png is None else decode_mask(t.proposal_png)


def res_project(svc: Service, pid: int) -> int:
    return svc.http.get(f"/projects/{pid}").raise_for_status().json()["ls_project_id"]


def test_images_outside_a_document_root_subfolder_get_signed_links(
    ls_server: LabelStudioServer, service: Service
) -> None:
    name = f"loose-{uuid.uuid4().hex[:6]}"
    pid = service.http.post("/projects", json={"name": name}).raise_for_status().json()["id"]
    service.http.post(f"/projects/{pid}/images/import", json={"path": str(ls_server.root)}).raise_for_status()
    loose = next(
        im for im in service.http.get(f"/projects/{pid}/images").json() if Path(im["uri"]).parent == ls_server.root
    )
    res = (
        service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": [loose["id"]]})
        .raise_for_status()
        .json()
    )
    task = ls_server.sdk().tasks.get(id=res["task_ids"][0])
    url = task.data["image"]
    assert url.startswith(service.url + "/labelstudio/images/")
    assert httpx.get(url).status_code == 200  # no token: the signature is the permission
    assert httpx.get(url[:-4] + "0000").status_code == 403
    other = url.replace(f"/images/{loose['id']}?", f"/images/{loose['id'] + 1}?")
    assert httpx.get(other).status_code == 403  # a signature opens one image only
    # pushed again: the task keeps its place and gets a link with a new lifetime
    time.sleep(1.1)
    again = (
        service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": [loose["id"]]})
        .raise_for_status()
        .json()
    )
    assert again["already_in_labelstudio"] == [loose["id"]]
    renewed = ls_server.sdk().tasks.get(id=res["task_ids"][0]).data["image"]
    assert renewed != url and httpx.get(renewed).status_code == 200
    # rotating the project's key revokes every link handed out, and the tasks get working ones
    r = service.http.post(f"/projects/{pid}/labelstudio/links", json={"rotate": True}).raise_for_status().json()
    assert r == {"rotated": True, "tasks_updated": 1}
    assert httpx.get(renewed).status_code == 403
    assert httpx.get(ls_server.sdk().tasks.get(id=res["task_ids"][0]).data["image"]).status_code == 200


# ---- in -------------------------------------------------------------------------------------
def test_round_trip_through_webhooks_is_pixel_exact(ls_server: LabelStudioServer, service: Service) -> None:
    pid, ids = make_project(service, ls_server)
    order = [ids["part_0.png"], ids["part_1.png"], ids["part_4.png"]]
    body = {"image_ids": order, "asks": {str(order[0]): "mask"}}  # brushes count on a task that asks for a mask
    res = service.http.post(f"/projects/{pid}/labelstudio/push", json=body).raise_for_status().json()
    sdk = ls_server.sdk()
    t0, t1, t4 = res["task_ids"]
    h0, w0 = 96, 128
    s1, s2 = strokes(h0, w0)
    # Defect with two brush strokes -> defective with the union mask at full resolution
    a0 = sdk.annotations.create(id=t0, result=[choice_result(True), brush_result(s1), brush_result(s2)], lead_time=14.5)
    # OK -> normal
    sdk.annotations.create(id=t1, result=[choice_result(False)], lead_time=2.0)
    # Defect without a brush -> image-level defect
    sdk.annotations.create(id=t4, result=[choice_result(True)], lead_time=3.0)

    lab0 = wait_for(lambda: current(service, pid, order[0]))
    assert lab0["is_defective"] is True and lab0["source"] == "human" and lab0["lead_time"] == pytest.approx(14.5)
    assert lab0["annotator"] and lab0["ls_annotation_id"] == a0.id
    np.testing.assert_array_equal(label_mask(service, pid, order[0]), s1 | s2)
    lab1 = wait_for(lambda: current(service, pid, order[1]))
    assert lab1["is_defective"] is False and label_mask(service, pid, order[1]) is None
    lab4 = wait_for(lambda: current(service, pid, order[2]))
    assert lab4["is_defective"] is True and lab4["kind"] == "image"

    # the annotator corrects the mask: the new answer supersedes, the old one stays in history
    sdk.annotations.update(id=a0.id, result=[choice_result(True), brush_result(s1)])
    wait_for(lambda: len(history(service, pid, order[0])) == 2)
    np.testing.assert_array_equal(label_mask(service, pid, order[0]), s1)
    # deleting the annotation retracts the label, history kept
    sdk.annotations.delete(id=a0.id)
    wait_for(lambda: current(service, pid, order[0]) is None)
    assert [h["retracted"] for h in history(service, pid, order[0])] == [False, False, True]


def test_a_verdict_answered_in_labelstudio_is_upgraded_to_a_mask(
    ls_server: LabelStudioServer, service: Service
) -> None:
    pid, ids = make_project(service, ls_server)
    a, b = ids["part_0.png"], ids["part_1.png"]
    first = service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": [a, b]}).raise_for_status().json()
    sdk = ls_server.sdk()
    sdk.annotations.create(id=first["task_ids"][0], result=[choice_result(True)], lead_time=3.0)
    assert wait_for(lambda: current(service, pid, a))["kind"] == "image"

    # asking for a's mask adds a second task; b (never answered) and a verdict re-ask add none
    body = {"image_ids": [a, b], "asks": {str(a): "mask", str(b): "verdict"}, "include_labelled": True}
    up = service.http.post(f"/projects/{pid}/labelstudio/push", json=body).raise_for_status().json()
    assert up["mask_upgrades"] == [a] and up["image_ids"] == [a] and up["already_in_labelstudio"] == [b]
    task = sdk.tasks.get(id=up["task_ids"][0])
    assert task.data["ask"] == "mask" and task.data["defectloop_image_id"] == a
    again = service.http.post(f"/projects/{pid}/labelstudio/push", json=body).raise_for_status().json()
    assert again["pushed"] == 0 and again["already_in_labelstudio"] == [a, b]

    # the mask arrives (webhook lost, repaired by sync) and supersedes the verdict
    service.stop()
    h, w = 96, 128
    s1, _ = strokes(h, w)
    sdk.annotations.create(id=up["task_ids"][0], result=[choice_result(True), brush_result(s1)], lead_time=30.0)
    service.start()
    assert current(service, pid, a)["kind"] == "image"
    from backend.db.engine import session_factory
    from backend.handlers import job_handlers
    from backend.jobs.runner import execute

    sync_job = service.http.post(f"/projects/{pid}/labelstudio/sync").raise_for_status().json()
    execute(sync_job["id"], session_factory(service.engine), service.settings, job_handlers())
    assert service.http.get(f"/jobs/{sync_job['id']}").json()["result"]["counts"] == {"ignored": 1, "stored": 1}
    assert current(service, pid, a)["kind"] == "mask"
    np.testing.assert_array_equal(label_mask(service, pid, a), s1)
    assert [x["kind"] for x in history(service, pid, a)] == ["image", "mask"]


def test_two_answers_of_one_image_keep_the_newer_whatever_the_order(
    ls_server: LabelStudioServer, service: Service
) -> None:
    """A verdict, then the mask asked for later: their webhooks delivered in reverse order, a
    sync, and a deletion of the mask in Label Studio each leave the right answer current."""
    pid, ids = make_project(service, ls_server)
    a = ids["part_0.png"]
    first = service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": [a]}).raise_for_status().json()
    up = (
        service.http.post(
            f"/projects/{pid}/labelstudio/push",
            json={"image_ids": [a], "asks": {str(a): "mask"}, "include_labelled": True},
        )
        .raise_for_status()
        .json()
    )
    ls_pid, sdk = res_project(service, pid), ls_server.sdk()
    s1, _ = strokes(96, 128)
    service.stop()  # both answers given while the service is away: their webhooks are lost
    verdict = sdk.annotations.create(id=first["task_ids"][0], result=[choice_result(True)], lead_time=3.0)
    time.sleep(1.1)  # Label Studio's timestamps order the answers
    mask = sdk.annotations.create(id=up["task_ids"][0], result=[choice_result(True), brush_result(s1)], lead_time=30.0)
    service.start()

    def delivered(ann) -> dict:
        ann = sdk.annotations.get(id=ann.id)
        return {
            "action": "ANNOTATION_CREATED",
            "project": {"id": ls_pid},
            "annotation": {
                "id": ann.id,
                "task": ann.task,
                "project": ls_pid,
                "result": ann.result,
                "updated_at": str(ann.updated_at),
                "lead_time": ann.lead_time,
            },
        }

    hook = f"{service.url}/labelstudio/{SECRET}/webhook"
    for body in (delivered(mask), delivered(verdict)):  # the newer answer's webhook first
        assert httpx.post(hook, json=body).raise_for_status().status_code == 200
    assert current(service, pid, a)["kind"] == "mask"
    from backend.db.engine import session_factory
    from backend.handlers import job_handlers
    from backend.jobs.runner import execute

    sync_job = service.http.post(f"/projects/{pid}/labelstudio/sync").raise_for_status().json()
    execute(sync_job["id"], session_factory(service.engine), service.settings, job_handlers())
    assert current(service, pid, a)["kind"] == "mask"  # sync converges to the same state
    sdk.annotations.delete(id=mask.id)  # its ANNOTATIONS_DELETED webhook comes live
    assert wait_for(lambda: (current(service, pid, a) or {}).get("kind") == "image")
    sync_job = service.http.post(f"/projects/{pid}/labelstudio/sync").raise_for_status().json()
    execute(sync_job["id"], session_factory(service.engine), service.settings, job_handlers())
    cur = current(service, pid, a)
    assert cur["kind"] == "image" and cur["ls_annotation_id"] == verdict.id


def test_a_verdict_task_never_yields_a_mask(ls_server: LabelStudioServer, service: Service) -> None:
    """Also when its answer carries a brush, as answers to tasks pushed with the model's blob did."""
    pid, ids = make_project(service, ls_server)
    a = ids["part_3.png"]
    register_model(service, pid, defective={a})
    res = service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": [a]}).raise_for_status().json()
    (pred,) = ls_server.sdk().predictions.list(task=res["task_ids"][0])
    assert [r["type"] for r in pred.result] == ["choices"]
    h, w = 100, 90
    s1, _ = strokes(h, w)
    ls_server.sdk().annotations.create(
        id=res["task_ids"][0], result=[choice_result(True), brush_result(s1)], lead_time=2.0
    )
    lab = wait_for(lambda: current(service, pid, a))
    assert lab["is_defective"] is True and lab["kind"] == "image" and lab["mask_origin"] is None
    assert label_mask(service, pid, a) is None


def test_mask_answers_record_how_they_came_to_be(ls_server: LabelStudioServer, service: Service) -> None:
    pid, ids = make_project(service, ls_server)
    acc, edit, drawn = ids["part_3.png"], ids["part_5.png"], ids["part_0.png"]
    register_model(service, pid, defective={acc, edit})
    body = {"image_ids": [acc, edit, drawn], "asks": {str(i): "mask" for i in (acc, edit, drawn)}}
    t_acc, t_edit, t_drawn = (
        service.http.post(f"/projects/{pid}/labelstudio/push", json=body).raise_for_status().json()["task_ids"]
    )
    sdk = ls_server.sdk()
    (pred,) = sdk.predictions.list(task=t_acc)
    sdk.annotations.create(id=t_acc, result=pred.result, lead_time=4.0)  # submitted as proposed
    (pred_e,) = sdk.predictions.list(task=t_edit)
    brush = next(r for r in pred_e.result if r["type"] == "brushlabels")
    h, w = brush["original_height"], brush["original_width"]
    proposal = rle_to_mask(brush["value"]["rle"], h, w)
    corrected = proposal.copy()
    corrected[: h // 2] = False  # the annotator erases the top half of the proposal and adds a stroke
    corrected[h - 12 : h - 4, 4:20] = True
    sdk.annotations.create(id=t_edit, result=[choice_result(True), brush_result(corrected)], lead_time=9.0)
    s1, _ = strokes(96, 128)
    sdk.annotations.create(id=t_drawn, result=[choice_result(True), brush_result(s1)], lead_time=20.0)

    la = wait_for(lambda: current(service, pid, acc))
    assert la["mask_origin"] == "accepted" and la["proposal_iou"] == 1.0 and la["mask_edit"] == 0.0
    le = wait_for(lambda: current(service, pid, edit))
    inter, union = (proposal & corrected).sum(), (proposal | corrected).sum()
    assert le["mask_origin"] == "edited" and le["proposal_iou"] == pytest.approx(inter / union)
    assert le["mask_edit"] == pytest.approx(min(1.0, (proposal ^ corrected).sum() / corrected.sum()))
    ld = wait_for(lambda: current(service, pid, drawn))
    assert ld["mask_origin"] == "drawn" and ld["proposal_iou"] is None and ld["mask_edit"] == 1.0


def test_lost_webhooks_are_repaired_by_sync_and_before_retrain(ls_server: LabelStudioServer, service: Service) -> None:
    pid, ids = make_project(service, ls_server)
    order = [ids["part_0.png"], ids["part_2.png"], ids["part_3.png"]]
    body = {"image_ids": order, "asks": {str(order[0]): "mask"}}
    res = service.http.post(f"/projects/{pid}/labelstudio/push", json=body).raise_for_status().json()
    sdk = ls_server.sdk()
    gone = sdk.annotations.create(id=res["task_ids"][2], result=[choice_result(False)])
    wait_for(lambda: current(service, pid, order[2]))

    service.stop()  # the webhook endpoint is down: these deliveries are lost
    h, w = 96, 128
    s1, s2 = strokes(h, w)
    sdk.annotations.create(id=res["task_ids"][0], result=[choice_result(True), brush_result(s1), brush_result(s2)])
    sdk.annotations.create(id=res["task_ids"][1], result=[choice_result(False)])
    sdk.annotations.delete(id=gone.id)
    service.start()
    assert current(service, pid, order[0]) is None and current(service, pid, order[2]) is not None

    # the retrain request syncs first, so its snapshot holds the answers the webhooks missed
    job = service.http.post(f"/projects/{pid}/retrain").raise_for_status().json()
    np.testing.assert_array_equal(label_mask(service, pid, order[0]), s1 | s2)
    assert current(service, pid, order[1])["is_defective"] is False
    assert current(service, pid, order[2]) is None  # deleted in Label Studio meanwhile
    from backend.db.tables import Job

    with service.sessions()() as s:
        payload = s.get(Job, job["id"]).payload
    wanted = {current(service, pid, i)["id"] for i in order[:2]}
    assert wanted <= set(payload["label_ids"]) and payload["sync"]["annotations"] == 2

    # an explicit sync now finds nothing new: everything was already taken exactly once
    from backend.db.engine import session_factory
    from backend.handlers import job_handlers
    from backend.jobs.runner import execute
    from backend.services.labelstudio_link import run_sync_job  # noqa: F401 - the job the API queues

    sync_job = service.http.post(f"/projects/{pid}/labelstudio/sync").raise_for_status().json()
    execute(sync_job["id"], session_factory(service.engine), service.settings, job_handlers())
    done = service.http.get(f"/jobs/{sync_job['id']}").json()
    assert done["status"] == "succeeded" and done["result"]["counts"] == {"ignored": 2}
    assert len(history(service, pid, order[0])) == 1


def test_duplicate_and_reordered_deliveries_leave_the_right_state(
    ls_server: LabelStudioServer, service: Service
) -> None:
    pid, ids = make_project(service, ls_server)
    image_id = ids["part_2.png"]
    res = (
        service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": [image_id]}).raise_for_status().json()
    )
    ls_pid, tid = res_project(service, pid), res["task_ids"][0]
    hook = f"{service.url}/labelstudio/{SECRET}/webhook"

    def event(action: str, updated: str, defect: bool) -> dict:
        return {
            "action": action,
            "project": {"id": ls_pid},
            "annotation": {
                "id": 990001,
                "task": tid,
                "project": ls_pid,
                "result": [choice_result(defect)],
                "updated_at": updated,
                "created_at": "2026-11-22T10:00:00Z",
                "completed_by": 7,
                "lead_time": 4,
            },
        }

    first = event("ANNOTATION_CREATED", "2026-11-22T10:00:00Z", False)
    newer = event("ANNOTATION_UPDATED", "2026-11-22T10:05:00Z", True)
    for body in (first, first, newer, first, newer):  # duplicated, and an old one arriving late
        assert httpx.post(hook, json=body).status_code == 200
    assert current(service, pid, image_id)["is_defective"] is True
    assert len(history(service, pid, image_id)) == 2  # created once, updated once
    # a deletion, then a late update of the deleted annotation: stays deleted
    assert (
        httpx.post(
            hook, json={"action": "ANNOTATIONS_DELETED", "project": {"id": ls_pid}, "annotations": [{"id": 990001}]}
        ).status_code
        == 200
    )
    late = event("ANNOTATION_UPDATED", "2026-11-22T10:09:00Z", False)
    out = httpx.post(hook, json=late).json()
    assert out["outcomes"][0]["status"] == "ignored" and current(service, pid, image_id) is None


def test_bad_input_is_rejected_with_a_reason_and_nothing_half_stored(
    ls_server: LabelStudioServer, service: Service
) -> None:
    pid, ids = make_project(service, ls_server)
    image_id = ids["part_0.png"]  # 96 x 128, asked for its mask: brushes are read
    body = {"image_ids": [image_id], "asks": {str(image_id): "mask"}}
    res = service.http.post(f"/projects/{pid}/labelstudio/push", json=body).raise_for_status().json()
    ls_pid, tid = res_project(service, pid), res["task_ids"][0]
    hook = f"{service.url}/labelstudio/{SECRET}/webhook"

    def ann(result: list, task: int = tid, aid: int = 880001) -> dict:
        return {
            "action": "ANNOTATION_CREATED",
            "project": {"id": ls_pid},
            "annotation": {
                "id": aid,
                "task": task,
                "project": ls_pid,
                "result": result,
                "updated_at": "2026-11-22T10:00:00Z",
            },
        }

    assert (
        httpx.post(f"{service.url}/labelstudio/wrong-secret/webhook", json=ann([choice_result(True)])).status_code
        == 403
    )
    bad = httpx.post(hook, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 422
    r = httpx.post(hook, json={"action": "ANNOTATION_CREATED", "annotation": {"id": "x"}})
    assert r.status_code == 422 and "annotation" in r.json()["detail"]
    unknown = httpx.post(hook, json=ann([choice_result(True)], task=tid + 10_000)).json()
    assert (
        unknown["outcomes"][0]["status"] == "rejected"
        and "not a task defectloop created" in unknown["outcomes"][0]["reason"]
    )
    corrupt = brush_result(np.ones((96, 128), bool))
    corrupt["value"]["rle"] = [1, 2, 3]
    out = httpx.post(hook, json=ann([choice_result(True), corrupt])).json()
    assert out["outcomes"][0]["status"] == "rejected" and "RLE" in out["outcomes"][0]["reason"]
    wrong_size = brush_result(np.ones((50, 50), bool))
    out = httpx.post(hook, json=ann([choice_result(True), wrong_size], aid=880002)).json()
    assert out["outcomes"][0]["status"] == "rejected" and "50x50" in out["outcomes"][0]["reason"]
    assert history(service, pid, image_id) == []  # nothing half-stored
    # OK with a brush: stored, flagged for review, never dropped
    flagged = httpx.post(hook, json=ann([choice_result(False), brush_result(strokes(96, 128)[0])], aid=880003)).json()
    assert flagged["outcomes"][0]["status"] == "stored"
    lab = current(service, pid, image_id)
    assert lab["review_reason"] and "review" in lab["review_reason"]
    assert httpx.get(f"{service.url}/health").status_code == 200  # still serving


# ---- Label Studio calling defectloop --------------------------------------------------------
def test_ml_backend_is_driven_by_the_real_server(ls_server: LabelStudioServer, service: Service) -> None:
    pid, ids = make_project(service, ls_server)
    order = [ids["part_3.png"], ids["part_1.png"]]
    body = {"image_ids": order, "asks": {str(order[0]): "mask"}}
    res = service.http.post(f"/projects/{pid}/labelstudio/push", json=body).raise_for_status().json()
    expected = register_model(service, pid, defective={ids["part_3.png"]})
    connected = service.http.post(f"/projects/{pid}/labelstudio/connect").raise_for_status().json()
    sdk = ls_server.sdk()
    ls_pid = connected["ls_project_id"]
    hooks = [h for h in sdk.webhooks.list(project=str(ls_pid)) if h.url.endswith("/webhook")]
    assert len(hooks) == 1  # connecting adds no second delivery of every event
    backend = sdk.ml.get(id=connected["ml_backend_id"])
    assert backend.state in ("CO", "CONNECTED") or str(backend.state).endswith("CO")

    # Label Studio's own "Retrieve predictions" action calls /predict for the selected tasks
    from labelstudio.client import Studio

    Studio(ls_server.info.url, ls_server.creds.token).retrieve_predictions(ls_pid, res["task_ids"])
    preds = {
        tid: [p for p in sdk.predictions.list(task=tid) if p.model_version == "v1-test"] for tid in res["task_ids"]
    }
    assert all(len(v) == 1 for v in preds.values())
    brush = next(r for r in preds[res["task_ids"][0]][0].result if r["type"] == "brushlabels")
    h, w = expected[ids["part_3.png"]].shape
    got = rle_to_mask(brush["value"]["rle"], h, w)  # the map's region refined with the image: inside the region
    assert got.any() and not (got & ~expected[ids["part_3.png"]]).any()
    ok = preds[res["task_ids"][1]][0].result
    assert [r["value"]["choices"] for r in ok if r["type"] == "choices"] == [["OK"]]

    # "Start training" in Label Studio queues a retrain; a second press reports the running one
    hook = f"{service.url}/labelstudio/{SECRET}/webhook"
    first = httpx.post(hook, json={"action": "START_TRAINING", "project": {"id": ls_pid}}).raise_for_status().json()
    second = httpx.post(hook, json={"action": "START_TRAINING", "project": {"id": ls_pid}}).raise_for_status().json()
    assert first["job_id"] and second["job_id"] == first["job_id"] and "already" in second["note"]


def test_conversion_helpers_agree_with_the_sdk_for_an_annotator_mask() -> None:
    m = np.zeros((33, 47), bool)
    m[3:9, 5:40] = True
    assert rle_to_mask(mask_to_rle(m), 33, 47).tolist() == m.tolist()


def test_ml_backend_runs_the_model_for_images_without_stored_scores(
    ls_server: LabelStudioServer, service: Service, tiny_demo: Path
) -> None:
    """/predict on a task whose image was never pool-scored: the model itself runs."""
    from labelstudio.conversions import validate_result
    from ml.data import load_dataset
    from ml.pipeline import train_and_save
    from ml.train import TrainConfig

    model_dir = service.settings.data_dir / "models" / "live"
    summary = train_and_save(load_dataset(tiny_demo), model_dir, TrainConfig(image_size=(64, 64), epochs=1))
    pid, ids = make_project(service, ls_server)
    activate_model(service, pid, "v-live", model_dir, summary)
    order = [ids["part_0.png"], ids["part_3.png"]]
    res = service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": order}).raise_for_status().json()
    assert res["with_prediction"] == 0  # nothing stored to pre-annotate with
    task = ls_server.sdk().tasks.get(id=res["task_ids"][1])
    body = {"tasks": [{"id": task.id, "data": task.data}], "project": f"{res_project(service, pid)}.1795354220"}
    out = httpx.post(f"{service.url}/labelstudio/{SECRET}/predict", json=body, timeout=120).raise_for_status().json()
    (one,) = out["results"]
    assert one["model_version"] == "v-live" and 0.0 <= one["score"] <= 1.0
    validate_result(one["result"])
    for r in one["result"]:
        if r["type"] == "brushlabels":  # full resolution of part_3 (100 x 90), not the model's 64 x 64
            assert (r["original_height"], r["original_width"]) == (100, 90)


def test_ml_backend_answers_a_click_with_the_defect_mask(
    ls_server: LabelStudioServer, service: Service, tiny_demo: Path
) -> None:
    """Label Studio's interactive pre-annotation: a smart keypoint (or box) in the /predict
    context comes back as a brush region over the defect at that point."""
    from labelstudio.conversions import validate_result
    from ml.data import load_dataset
    from ml.pipeline import train_and_save
    from ml.train import TrainConfig

    model_dir = service.settings.data_dir / "models" / "click"
    summary = train_and_save(load_dataset(tiny_demo), model_dir, TrainConfig(image_size=(64, 64), epochs=1))
    # a part with a dark spot, in its own folder under the document root
    folder = ls_server.root / f"spot-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    h, w = 96, 128
    img = np.full((h, w, 3), 150, np.uint8)
    img += np.random.default_rng(0).integers(0, 12, img.shape, dtype=np.uint8)
    spot = np.zeros((h, w), np.uint8)
    cv2.circle(spot, (80, 40), 7, 1, -1)
    img[spot > 0] = 40
    cv2.imwrite(str(folder / "spot.png"), img)
    pid = service.http.post("/projects", json={"name": folder.name}).raise_for_status().json()["id"]
    service.http.post(f"/projects/{pid}/images/import", json={"path": str(folder)}).raise_for_status()
    (part,) = [im["id"] for im in service.http.get(f"/projects/{pid}/images").raise_for_status().json()]
    activate_model(service, pid, "v-click", model_dir, summary)
    res = service.http.post(
        f"/projects/{pid}/labelstudio/push", json={"image_ids": [part], "asks": {str(part): "mask"}}
    )
    task = ls_server.sdk().tasks.get(id=res.raise_for_status().json()["task_ids"][0])

    def ask(context: dict) -> httpx.Response:
        body = {
            "tasks": [{"id": task.id, "data": task.data}],
            "project": f"{res_project(service, pid)}.1795354220",
            "params": {"context": context},
        }
        return httpx.post(f"{service.url}/labelstudio/{SECRET}/predict", json=body, timeout=120)

    point = {
        "type": "keypointlabels",
        "original_width": w,
        "original_height": h,
        "value": {"x": 80 / w * 100, "y": 40 / h * 100, "width": 0.5, "keypointlabels": ["Click a defect"]},
    }
    box = {
        "type": "rectanglelabels",
        "original_width": w,
        "original_height": h,
        "value": {
            "x": 64 / w * 100,
            "y": 24 / h * 100,
            "width": 32 / w * 100,
            "height": 32 / h * 100,
            "rectanglelabels": ["Box a defect"],
        },
    }
    for ctx in (point, box):
        (one,) = ask({"result": [ctx]}).raise_for_status().json()["results"]
        validate_result(one["result"])
        (brush,) = one["result"]
        assert brush["type"] == "brushlabels" and (brush["original_width"], brush["original_height"]) == (w, h)
        got = rle_to_mask(brush["value"]["rle"], h, w)
        inter, union = (got & (spot > 0)).sum(), (got | (spot > 0)).sum()
        assert inter / union >= 0.6
    outside = {**point, "value": {**point["value"], "x": 140.0}}
    bad = ask({"result": [outside]})
    assert bad.status_code == 422 and "outside" in bad.text
