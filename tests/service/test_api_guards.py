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
            url = re.sub(
                r"\{(\w+)\}",
                lambda m, n=name: str(bad) if m.group(1) == n else (str(pid) if m.group(1) == "project_id" else "1"),
                path,
            )
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

    settings = Settings(
        data_dir=tmp_path / "data",
        api_token=TOKEN,
        labelstudio_url=f"http://127.0.0.1:{free_port()}",
        labelstudio_token="t",
    )
    c = TestClient(create_app(settings, engine=migrated), raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    pid = c.post("/projects", json={"name": "line-1"}).json()["id"]
    r = c.post(f"/projects/{pid}/labelstudio/setup")
    assert r.status_code == 503 and "Label Studio at http://127.0.0.1" in r.json()["detail"]


# ---- body size limits -----------------------------------------------------------------------
def _small_limits(migrated: Engine, tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN, max_body_bytes=1000, max_upload_bytes=20_000)
    c = TestClient(create_app(settings, engine=migrated), raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    return c


def test_bodies_over_their_limit_are_413(migrated: Engine, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from backend.services.labelstudio_link import webhook_secret

    c = _small_limits(migrated, tmp_path)
    secret = webhook_secret(c.app.state.settings)
    hook = f"/labelstudio/{secret}/webhook"
    assert c.post(hook, json={"action": "PROJECT_UPDATED"}).status_code == 200
    r = c.post(hook, json={"action": "PROJECT_UPDATED", "pad": "x" * 2000})
    assert r.status_code == 413
    assert c.post("/projects", json={"name": "x" * 1200}).status_code == 413
    pid = c.post("/projects", json={"name": "line-1"}).json()["id"]
    # uploads have their own, larger limit: a 10 kB PNG is fine, 30 kB in one request is not
    rng = np.random.default_rng(0)
    png = cv2.imencode(".png", rng.integers(0, 255, (60, 50, 3), dtype=np.uint8))[1].tobytes()
    assert 9_000 < len(png) < 19_000
    r = c.post(f"/projects/{pid}/images/upload", files=[("files", ("a.png", png, "image/png"))])
    assert r.status_code == 200 and r.json()["imported"] == 1
    many = [("files", (f"{i}.png", png, "image/png")) for i in range(3)]
    assert c.post(f"/projects/{pid}/images/upload", files=many).status_code == 413
    assert c.get(f"/projects/{pid}/images").json().__len__() == 1  # nothing of the refused request stored


def test_an_oversized_body_is_refused_before_it_is_sent(migrated: Engine, tmp_path: Path) -> None:
    """A Content-Length over the limit is answered at once: the server never waits for (or
    buffers) the gigabyte announced."""
    import socket
    import time

    from backend.api.threaded import ThreadedServer
    from backend.services.labelstudio_link import webhook_secret
    from labelstudio.server import free_port

    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN)
    server = ThreadedServer(create_app(settings, engine=migrated), free_port()).start()
    try:
        for path in (f"/labelstudio/{webhook_secret(settings)}/webhook", "/projects/1/images/upload"):
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(
                    (
                        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {1 << 30}\r\n\r\n"
                    ).encode()
                    + b"{"
                )
                answer = sock.recv(4096).decode(errors="replace")
            assert answer.startswith("HTTP/1.1 413"), answer[:200]
            assert time.monotonic() - t0 < 5
    finally:
        server.stop()


# ---- a server without a token (serve --dev) -------------------------------------------------
@pytest.fixture
def dev(migrated: Engine, tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", api_token=None)
    return TestClient(create_app(settings, engine=migrated), base_url="http://127.0.0.1:8000")


def test_dev_server_answers_only_to_loopback_host_names(dev: TestClient) -> None:
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "127.0.0.1", "LOCALHOST"):
        assert dev.get("/projects", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example:8000", ""):
        r = dev.get("/projects", headers={"Host": host})
        assert r.status_code == 403 and "loopback" in r.json()["detail"], host
    assert dev.get("/health", headers={"Host": "rebound.example"}).status_code == 403


def test_dev_server_refuses_cross_site_writes(dev: TestClient) -> None:
    from backend.services.labelstudio_link import webhook_secret

    assert dev.post("/projects", json={"name": "cli"}).status_code == 201  # no Origin: the CLI, httpx
    same = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
    assert dev.post("/projects", json={"name": "page"}, headers=same).status_code == 201  # the service's own pages
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:3000"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://127.0.0.1:9000", "Sec-Fetch-Site": "same-site"},
    ):
        for method, url in (
            ("POST", "/projects"),
            ("PATCH", "/projects/1"),
            ("PUT", "/projects/1/images/1/label"),
            ("DELETE", "/projects/1"),
        ):
            r = dev.request(method, url, json={"name": "evil"}, headers=headers)
            assert r.status_code == 403 and "refused" in r.json()["detail"], (method, headers)
    assert [p["name"] for p in dev.get("/projects", headers={"Origin": "http://evil.example"}).json()] == [
        "cli",
        "page",
    ]
    # Label Studio's server calls back without browser headers and still gets through
    hook = f"/labelstudio/{webhook_secret(dev.app.state.settings)}/webhook"
    assert dev.post(hook, json={"action": "PROJECT_UPDATED"}).status_code == 200


def test_a_server_with_a_token_keeps_any_host(client: TestClient) -> None:
    r = client.post(
        "/projects", json={"name": "line-1"}, headers={"Host": "workbench.factory.lan", "Origin": "http://x"}
    )
    assert r.status_code == 201  # the bearer token is the protection; browsers never send it by themselves


# ---- secrets never reach the access log -----------------------------------------------------
def test_access_log_never_shows_the_callback_secret_or_a_link_signature(migrated: Engine, tmp_path: Path) -> None:
    import logging

    import httpx

    from backend.api.threaded import ThreadedServer
    from backend.services.labelstudio_link import webhook_secret
    from labelstudio.server import free_port

    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN)
    secret = webhook_secret(settings)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    access = logging.getLogger("uvicorn.access")
    server = ThreadedServer(create_app(settings, engine=migrated), free_port()).start()
    level, keep = access.level, Keep()
    access.setLevel(logging.INFO)
    access.addHandler(keep)
    try:
        httpx.post(f"{server.url}/labelstudio/{secret}/webhook", json={"action": "PROJECT_UPDATED"}).raise_for_status()
        httpx.get(f"{server.url}/labelstudio/{secret}/health").raise_for_status()
        httpx.get(f"{server.url}/labelstudio/images/1", params={"exp": 1, "sig": "feedface" * 4})
    finally:
        access.removeHandler(keep)
        access.setLevel(level)
        server.stop()
    lines = [r.getMessage() for r in records]
    assert len(lines) >= 3
    assert not any(secret in line or "feedface" in line for line in lines), lines
    assert any("/labelstudio/***/webhook" in line for line in lines) and any("sig=***" in line for line in lines)


# ---- Label Studio's ML backend calls stay inside their project ------------------------------
def test_predict_callback_scores_only_its_own_projects_images(client: TestClient) -> None:
    import cv2
    import numpy as np

    from backend.db.tables import Image, ModelVersion, Prediction, Project
    from backend.services.labelstudio_link import webhook_secret

    ids = {}
    for name in ("mine", "theirs"):
        pid = client.post("/projects", json={"name": name}).json()["id"]
        png = cv2.imencode(".png", np.full((20, 30, 3), 40 + len(name), np.uint8))[1].tobytes()
        client.post(f"/projects/{pid}/images/upload", files=[("files", (f"{name}.png", png, "image/png"))])
        ids[name] = (pid, client.get(f"/projects/{pid}/images").json()[0]["id"])
    with client.app.state.sessions.begin() as s:
        s.get(Project, ids["mine"][0]).ls_project_id = 7
        s.get(Project, ids["theirs"][0]).ls_project_id = 8
        mv = ModelVersion(
            project_id=ids["mine"][0],
            name="v-mine",
            regime="weak",
            profile="fast",
            config={},
            artifact_path="/nonexistent",
            artifact_sha256="0" * 64,
            thresholds={"image": 0.5, "pixel": 0.5},
            is_active=True,
        )
        s.add(mv)
        s.flush()
        # a score for every image under this version, the other project's too: only the project decides
        for _, image_id in ids.values():
            s.add(Prediction(model_version_id=mv.id, image_id=image_id, score=0.9, decision=True))
        assert s.get(Image, ids["theirs"][1]).project_id != ids["mine"][0]
    body = {
        "project": "7.1700000000",
        "tasks": [
            {"id": 501, "data": {"defectloop_image_id": ids["theirs"][1], "ask": "verdict"}},
            {"id": 502, "data": {"defectloop_image_id": ids["mine"][1], "ask": "verdict"}},
        ],
    }
    secret = webhook_secret(client.app.state.settings)
    r = client.post(f"/labelstudio/{secret}/predict", json=body)
    assert r.status_code == 200, r.text
    theirs, mine = r.json()["results"]
    assert theirs == {"result": [], "score": 0.0, "model_version": "v-mine"}
    assert mine["score"] == 0.9 and [x["value"]["choices"] for x in mine["result"]] == [["Defect"]]
    # the other project's Label Studio project gets nothing from this one's model either
    r = client.post(f"/labelstudio/{secret}/predict", json={**body, "project": "8.1700000000"})
    assert all(x["result"] == [] for x in r.json()["results"])


def test_redaction_hides_secrets_and_keeps_the_project_routes_readable() -> None:
    from backend.api.guards import redact

    assert redact('"POST /labelstudio/s3cr3t/webhook HTTP/1.1"') == '"POST /labelstudio/***/webhook HTTP/1.1"'
    assert redact("/labelstudio/s3cr3t/predict") == "/labelstudio/***/predict"
    assert redact("GET /labelstudio/images/5?sig=abc&exp=9") == "GET /labelstudio/images/5?sig=***&exp=9"
    assert redact('"POST /projects/1/labelstudio/sync HTTP/1.1"') == '"POST /projects/1/labelstudio/sync HTTP/1.1"'
