"""API routes against real migrated databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from backend.api.app import create_app
from backend.db.engine import session_factory
from backend.db.tables import Image, Label
from backend.settings import Settings

TOKEN = "s3cret-token"


@pytest.fixture
def client(migrated: Engine, tmp_path: Path, tiny_demo: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN, import_roots=[tiny_demo.parent, tmp_path])
    c = TestClient(create_app(settings, engine=migrated))
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    return c


def png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def _project(client: TestClient, name: str = "line-1") -> int:
    r = client.post("/projects", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_auth_is_required_except_for_health(client: TestClient) -> None:
    anon = TestClient(client.app)
    health = anon.get("/health").json()  # no job worker runs beside this app
    assert health["status"] == "degraded" and health["workers"] == 0 and "no job worker" in health["detail"]
    assert anon.get("/projects").status_code == 401
    assert anon.get("/projects", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/projects").status_code == 200
    assert client.get("/version").json()["defectloop"]


def test_projects_crud_conflict_404_and_field_errors(client: TestClient) -> None:
    pid = _project(client)
    assert client.post("/projects", json={"name": "line-1"}).status_code == 409
    assert client.get(f"/projects/{pid}").json()["name"] == "line-1"
    assert client.get("/projects/999").status_code == 404
    r = client.patch(f"/projects/{pid}", json={"cost_mask_label": 7.5, "backbone": "tf_efficientnet_lite2"})
    assert r.status_code == 200 and r.json()["cost_mask_label"] == 7.5
    bad = client.patch(f"/projects/{pid}", json={"image_height": 5})
    assert bad.status_code == 422 and "image_height" in bad.json()["detail"]
    bad = client.patch(f"/projects/{pid}", json={"backbone": "vgg"})
    assert bad.status_code == 422 and "backbone" in bad.json()["detail"]
    assert [p["id"] for p in client.get("/projects").json()] == [pid]


def test_import_serve_and_list(client: TestClient, tiny_demo: Path, migrated: Engine) -> None:
    pid = _project(client)
    r = client.post(f"/projects/{pid}/images/import", json={"path": str(tiny_demo)})
    assert r.status_code == 200 and r.json()["imported"] == 44
    assert client.post(f"/projects/{pid}/images/import", json={"path": "/etc"}).status_code == 403
    images = client.get(f"/projects/{pid}/images", params={"split": "test"}).json()
    assert len(images) == 12
    f = client.get(f"/projects/{pid}/images/{images[0]['id']}/file")
    assert f.status_code == 200 and f.content == Path(images[0]["uri"]).read_bytes()
    counts = client.get(f"/projects/{pid}/labels/counts").json()
    assert counts == {
        "images": 44,
        "labelled": 44,
        "normal": 30,
        "image_level": 0,
        "mask": 14,
        "review": 0,
        "by_source": {"import": 44},
    }
    from backend.services.labels import LabelIn, add_label

    with session_factory(migrated).begin() as s:  # an answer without a readable verdict
        add_label(s, image=s.get(Image, images[0]["id"]), label=LabelIn(is_defective=None, review_reason="no verdict"))
    counts = client.get(f"/projects/{pid}/labels/counts").json()
    assert counts["review"] == 1 and counts["labelled"] == 44 and counts["normal"] + counts["mask"] == 43
    assert client.get(f"/projects/{pid}/images/99999").status_code == 404


def test_uploads_reject_bad_files_with_reasons_and_store_nothing(client: TestClient, migrated: Engine) -> None:
    pid = _project(client)
    good = png(np.full((24, 32, 3), 90, np.uint8))
    files = [
        ("files", ("a.png", good, "image/png")),
        ("files", ("text.png", b"not an image", "image/png")),
        ("files", ("cut.png", good[: len(good) // 2], "image/png")),
        ("files", ("a-again.png", good, "image/png")),
    ]
    r = client.post(f"/projects/{pid}/images/upload", files=files)
    assert r.status_code == 200
    statuses = {x["file"]: (x["status"], x["reason"]) for x in r.json()["results"]}
    assert statuses["a.png"][0] == "imported" and statuses["a-again.png"][0] == "duplicate"
    assert statuses["text.png"][0] == "rejected" and "cannot decode" in statuses["text.png"][1]
    assert statuses["cut.png"][0] == "rejected"
    with session_factory(migrated)() as s:
        assert s.scalar(select(func.count(Image.id))) == 1


def test_label_put_history_and_mask_errors(client: TestClient, migrated: Engine) -> None:
    pid = _project(client)
    r = client.post(
        f"/projects/{pid}/images/upload",
        files=[("files", ("a.png", png(np.full((24, 32, 3), 90, np.uint8)), "image/png"))],
    )
    iid = r.json()["results"][0]["image_id"]
    url = f"/projects/{pid}/images/{iid}/label"
    assert client.put(url, data={"is_defective": "false", "annotator": "ann"}).status_code == 200
    assert client.put(url, data={"is_defective": "true"}).status_code == 200
    mask = np.zeros((24, 32), np.uint8)
    mask[5:9, 3:20] = 255
    r = client.put(
        url, data={"is_defective": "true", "lead_time": "4.5"}, files={"mask": ("m.png", png(mask), "image/png")}
    )
    assert r.status_code == 200 and r.json()["has_mask"]
    hist = client.get(url).json()
    assert [h["is_defective"] for h in hist["history"]] == [False, True, True]
    assert hist["current"]["id"] == hist["history"][-1]["id"] and hist["current"]["lead_time"] == 4.5
    wrong = client.put(
        url,
        data={"is_defective": "true"},
        files={"mask": ("m.png", png(np.full((10, 10), 255, np.uint8)), "image/png")},
    )
    assert wrong.status_code == 422 and "mask: size 10x10 differs" in wrong.json()["detail"]
    junk = client.put(url, data={"is_defective": "true"}, files={"mask": ("m.png", b"junk", "image/png")})
    assert junk.status_code == 422 and "mask" in junk.json()["detail"]
    missing = client.put(url, data={})
    assert missing.status_code == 422 and "is_defective" in missing.json()["detail"]
    with session_factory(migrated)() as s:
        assert s.scalar(select(func.count(Label.id))) == 3  # the rejected answers stored nothing
    kinds = client.get(f"/projects/{pid}/labels", params={"kind": "mask"}).json()
    assert len(kinds) == 1


def test_model_versions_activate_series_jobs_and_404s(client: TestClient, migrated: Engine, tmp_path: Path) -> None:
    from backend.db.tables import Job, JobKind, ModelVersion

    pid = _project(client)
    with session_factory(migrated).begin() as s:
        for i in (1, 2):
            s.add(
                ModelVersion(
                    project_id=pid,
                    name=f"v{i}",
                    regime="full",
                    profile="fast",
                    config={},
                    artifact_path=str(tmp_path),
                    artifact_sha256="0" * 64,
                    thresholds={"image": 0.5},
                    metrics={"image_auroc": 0.5 + i / 10},
                    label_ids=[],
                    is_active=i == 2,
                )
            )
        s.add(Job(kind=JobKind.TRAIN, project_id=pid))
    versions = client.get(f"/projects/{pid}/model-versions").json()
    assert [v["is_active"] for v in versions] == [False, True]
    r = client.post(f"/model-versions/{versions[0]['id']}/activate")
    assert r.status_code == 200 and r.json()["is_active"]
    assert [v["is_active"] for v in client.get(f"/projects/{pid}/model-versions").json()] == [True, False]
    assert client.get(f"/model-versions/{versions[1]['id']}/metrics").json() == {"image_auroc": 0.7}
    series = client.get(f"/projects/{pid}/metrics/series").json()
    assert [p["metrics"]["image_auroc"] for p in series] == [0.6, 0.7]
    assert client.get("/model-versions/999").status_code == 404
    jobs = client.get("/jobs", params={"project_id": pid}).json()
    assert len(jobs) == 1 and jobs[0]["status"] == "queued"
    conflict = client.post(f"/projects/{pid}/retrain")
    assert conflict.status_code == 409 and conflict.json()["job_id"] == jobs[0]["id"]
    cancelled = client.post(f"/jobs/{jobs[0]['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert client.post(f"/projects/{pid}/retrain").status_code == 202  # free again
    assert client.get("/jobs/999").status_code == 404
    assert client.post("/jobs/999/cancel").status_code == 404
    assert client.get(f"/projects/{pid}/images/1/overlay").status_code == 404
