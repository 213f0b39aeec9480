"""POST /projects/{id}/pool-scoring: the pool scored again by the active model version."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from backend.api.app import create_app
from backend.db.engine import session_factory
from backend.settings import Settings

TOKEN = "pool-token"


def test_the_pool_is_queued_for_scoring_by_the_active_version(
    migrated: Engine, tmp_path: Path, tiny_demo: Path
) -> None:
    from backend.db.tables import ModelVersion

    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN, import_roots=[tiny_demo.parent])
    client = TestClient(create_app(settings, engine=migrated))
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    pid = client.post("/projects", json={"name": "line-1"}).json()["id"]
    assert (
        client.post(f"/projects/{pid}/images/import", json={"path": str(tiny_demo), "labels": "none"}).status_code
        == 200
    )
    refused = client.post(f"/projects/{pid}/pool-scoring")
    assert refused.status_code == 409 and "bootstrap" in refused.json()["detail"]
    with session_factory(migrated).begin() as s:
        mv = ModelVersion(
            project_id=pid,
            name="v1",
            regime="unsupervised",
            profile="fast",
            config={},
            artifact_path=str(tmp_path),
            artifact_sha256="0" * 64,
            thresholds={"image": 0.5},
            metrics={},
            label_ids=[],
            is_active=True,
        )
        s.add(mv)
    jobs = client.post(f"/projects/{pid}/pool-scoring")
    assert jobs.status_code == 202, jobs.text
    assert [(j["kind"], j["status"], j["project_id"]) for j in jobs.json()] == [("predict", "queued", pid)]
    assert client.post("/projects/999/pool-scoring").status_code == 404
