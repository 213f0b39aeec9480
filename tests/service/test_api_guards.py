"""What the service refuses before any work: ids out of range, oversized bodies, cross-site
requests to a token-less server, and links past their time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from backend.api.app import create_app
from backend.settings import Settings

TOKEN = "guard-token"


@pytest.fixture
def client(migrated: Engine, tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN)
    c = TestClient(create_app(settings, engine=migrated), raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    return c


def _routes_with_ids(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) of the API with an id or index in its path."""
    paths = client.app.openapi()["paths"]
    return [(m.upper(), p) for p, ops in paths.items() if re.search(r"\{\w*(_id|index)\}", p) for m in ops]


@pytest.mark.parametrize("bad", [2**64, 2**63, -1, 0, -(2**70)])
def test_out_of_range_ids_are_client_errors_on_every_route(client: TestClient, bad: int) -> None:
    pid = client.post("/projects", json={"name": "line-1"}).json()["id"]
    routes = _routes_with_ids(client)
    assert len(routes) >= 25
    for method, path in routes:
        for name in re.findall(r"\{(\w+)\}", path):
            if name in ("secret",):
                continue
            # each id out of range in turn, the others pointing at a real project
            url = re.sub(r"\{(\w+)\}", lambda m, n=name: str(bad) if m.group(1) == n else
                         (str(pid) if m.group(1) == "project_id" else "1"), path)
            r = client.request(method, url, params={"sig": "0", "exp": "0"}, json={"image_ids": [1]})
            assert r.status_code in (403, 404, 422), (method, url, r.status_code, r.text[:200])


def test_out_of_range_ids_in_bodies_and_queries_are_422(client: TestClient) -> None:
    pid = client.post("/projects", json={"name": "line-1"}).json()["id"]
    r = client.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": [2**64]})
    assert r.status_code == 422 and "image_ids" in r.json()["detail"]
    r = client.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": [1], "asks": {str(2**64): "mask"}})
    assert r.status_code == 422 and "asks" in r.json()["detail"]
    assert client.get("/jobs", params={"project_id": 2**64}).status_code == 422
    assert client.get("/jobs", params={"limit": 2**64}).status_code == 422
    assert client.post(f"/projects/{pid}/rounds/bootstrap", params={"seed": 2**64}).status_code == 422
    assert client.post(f"/projects/{pid}/rounds", json={"seed": -1}).status_code == 422


def test_labelstudio_down_is_503_naming_it(migrated: Engine, tmp_path: Path) -> None:
    from labelstudio.server import free_port

    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN, labelstudio_url=f"http://127.0.0.1:{free_port()}",
                        labelstudio_token="t")
    c = TestClient(create_app(settings, engine=migrated), raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    pid = c.post("/projects", json={"name": "line-1"}).json()["id"]
    r = c.post(f"/projects/{pid}/labelstudio/setup")
    assert r.status_code == 503 and "Label Studio at http://127.0.0.1" in r.json()["detail"]
