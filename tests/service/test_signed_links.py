"""Signed image and overlay links: one picture of one image, until they expire or their
project's key is rotated; pushing again or refreshing gives tasks fresh links."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from backend.api.app import create_app
from backend.db.tables import Image, Project
from backend.services import labelstudio_link as link
from backend.services.link_signing import signed_link
from backend.settings import Settings

TOKEN = "links-token"


@pytest.fixture
def client(migrated: Engine, tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN, signed_link_ttl_s=3600)
    c = TestClient(create_app(settings, engine=migrated))
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    return c


def _project_with_images(c: TestClient, name: str, n: int = 2) -> tuple[int, list[int]]:
    pid = c.post("/projects", json={"name": name}).json()["id"]
    rng = np.random.default_rng(len(name))
    files = [
        (
            "files",
            (
                f"{name}-{i}.png",
                cv2.imencode(".png", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))[1].tobytes(),
                "image/png",
            ),
        )
        for i in range(n)
    ]
    r = c.post(f"/projects/{pid}/images/upload", files=files)
    assert r.json()["imported"] == n, r.text
    return pid, [im["id"] for im in c.get(f"/projects/{pid}/images").json()]


def _get(c: TestClient, url: str):
    """Fetch a signed link as an annotator's browser would: no token."""
    parts = urlsplit(url)
    return TestClient(c.app).get(f"{parts.path}?{parts.query}")


def _image(c: TestClient, image_id: int) -> Image:
    with c.app.state.sessions() as s:
        im = s.get(Image, image_id)
        s.expunge(im)
        return im


def test_a_signed_link_opens_its_image_until_it_expires(client: TestClient) -> None:
    settings = client.app.state.settings
    pid, (a, b) = _project_with_images(client, "line-1")
    url, _ = link.image_link(settings, _image(client, a), None)
    assert "exp=" in url and "sig=" in url
    assert _get(client, url).status_code == 200
    exp = int(url.split("exp=")[1].split("&")[0])
    assert time.time() + 3500 < exp <= time.time() + 3600  # the configured lifetime
    assert _get(client, url.replace(f"/images/{a}?", f"/images/{b}?")).status_code == 403  # one image only
    assert _get(client, url.replace("/images/", "/overlays/")).status_code == 403  # one picture only
    longer = url.replace(f"exp={exp}", f"exp={exp + 10**6}")
    assert _get(client, longer).status_code == 403  # the expiry is signed
    old = signed_link(settings, pid, "images", a, now=time.time() - 3601)
    r = _get(client, old)
    assert r.status_code == 403 and "expired" in r.json()["detail"]
    assert _get(client, url.split("?")[0] + "?sig=" + url.split("sig=")[1]).status_code == 422  # no expiry: refused
    assert _get(client, url.replace(f"/images/{a}?", "/images/999999?")).status_code == 403


def test_rotating_a_projects_key_revokes_its_links_only(client: TestClient) -> None:
    settings = client.app.state.settings
    p1, (a, _) = _project_with_images(client, "line-1")
    _, (c, _) = _project_with_images(client, "line-2")
    before_a = link.image_link(settings, _image(client, a), None)[0]
    before_c = link.image_link(settings, _image(client, c), None)[0]
    r = client.post(f"/projects/{p1}/labelstudio/links", json={"rotate": True})
    assert r.status_code == 200 and r.json() == {"rotated": True, "tasks_updated": 0}  # no Label Studio project yet
    r = _get(client, before_a)
    assert r.status_code == 403 and "revoked" in r.json()["detail"]
    assert _get(client, before_c).status_code == 200
    assert _get(client, link.image_link(settings, _image(client, a), None)[0]).status_code == 200


class FakeStudio:
    """The two Label Studio calls refresh_links makes, on tasks held in memory."""

    def __init__(self, tasks: dict[int, dict]) -> None:
        self.tasks, self.updated = tasks, []

    def task_data(self, ls_project_id: int) -> dict[int, dict]:
        return {k: dict(v) for k, v in self.tasks.items()}

    def update_task_data(self, task_id: int, data: dict) -> None:
        self.tasks[task_id] = data
        self.updated.append(task_id)


def test_refresh_gives_tasks_fresh_links_and_leaves_others_alone(client: TestClient) -> None:
    from labelstudio.client import overlay_html

    settings = client.app.state.settings
    pid, (a, b) = _project_with_images(client, "line-1")
    _, (other,) = _project_with_images(client, "line-2", n=1)
    stale = signed_link(settings, pid, "images", a, now=time.time() - 7200)
    legacy = f"{settings.public_url}/labelstudio/images/{b}?sig={'0' * 32}"  # signed before links expired
    foreign = signed_link(settings, pid, "images", other, now=time.time() - 7200)  # another project's image
    studio = FakeStudio(
        {
            1: {
                "image": stale,
                "overlay": overlay_html(signed_link(settings, pid, "overlays", a, now=0)),
                "defectloop_image_id": a,
                "rank": 1,
            },
            2: {"image": legacy, "overlay": "", "defectloop_image_id": b, "rank": 2},
            3: {"image": "/data/local-files/?d=line1/x.png", "overlay": "", "defectloop_image_id": b, "rank": 3},
            4: {"image": foreign, "overlay": "", "defectloop_image_id": other, "rank": 4},
        }
    )
    with client.app.state.sessions.begin() as s:
        project = s.get(Project, pid)
        project.ls_project_id = 7
        assert link.refresh_links(s, settings, project, image_ids={b}, st=studio) == 1
        assert studio.updated == [2]
        link.refresh_links(s, settings, project, st=studio)  # every task (task 2 again when a second has passed)
    assert studio.updated[:2] == [2, 1] and set(studio.updated) == {1, 2}
    t1, t2 = studio.tasks[1], studio.tasks[2]
    assert t1["rank"] == 1 and t1["defectloop_image_id"] == a  # the rest of the data stays
    assert _get(client, t1["image"]).status_code == 200 and _get(client, t2["image"]).status_code == 200
    overlay_url = t1["overlay"].split('src="')[1].split('"')[0].replace("&amp;", "&")
    assert _get(client, overlay_url).status_code != 403  # valid again (404: no anomaly map for it)
    assert studio.tasks[3]["image"].startswith("/data/local-files/") and studio.tasks[4]["image"] == foreign
