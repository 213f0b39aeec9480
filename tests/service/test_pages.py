"""The curves page in a real browser: Debian's Chromium, headless, against the real service.

A project with two finished rounds is served over HTTP; Chromium loads the page with the
token in the URL fragment, runs its script, and we check the DOM it built (the rounds
table) and a screenshot (the chart's lines are drawn in matplotlib's first colours)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from backend.api.app import create_app
from backend.api.threaded import ThreadedServer
from backend.db.engine import make_engine, session_factory
from backend.db.migrate import upgrade
from backend.db.tables import Project, Round, RoundStatus
from backend.settings import Settings
from labelstudio.server import free_port

TOKEN = "page-test-token"
BLUE_BGR = (180, 119, 31)  # matplotlib C0, the first curve


def _point(index: int, ap: float, cost: float, regime: str) -> dict:
    return {
        "round": index,
        "strategy": "hybrid",
        "regime": regime,
        "model_version": f"v{index + 1}",
        "labels": {"normal": 10 * index, "image": 3 * index, "mask": index, "total": 14 * index},
        "cost": cost,
        "annotation_seconds": 30.0 * index,
        "metrics": {
            "image_ap": ap,
            "image_auroc": ap + 0.05,
            "image_f1": ap - 0.1,
            "pixel_aupro": 0.2 * index,
            "pixel_ap": 0.1,
        },
        "audit": {"answered": 14, "flip_rate": 0.25 if index else None, "mask_iou_mean": 0.5 if index else None},
    }


@pytest.fixture
def served(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        p = Project(name="line-7")
        s.add(p)
        s.flush()
        for i, (ap, cost, regime) in enumerate([(0.41, 0, "unsupervised"), (0.72, 30, "weak"), (0.86, 60, "mixed")]):
            s.add(
                Round(
                    project_id=p.id,
                    index=i,
                    strategy="bootstrap" if i == 0 else "hybrid",
                    budget=30,
                    status=RoundStatus.DONE,
                    metrics=_point(i, ap, cost, regime),
                    message=f"trained v{i + 1}",
                )
            )
        s.add(Round(project_id=p.id, index=3, strategy="hybrid", budget=30, status=RoundStatus.ANNOTATING))
        pid = p.id
    settings = Settings(data_dir=tmp_path / "data", database_url=url, api_token=TOKEN)
    api = ThreadedServer(create_app(settings, engine=engine), free_port()).start()
    yield api.url, pid
    api.stop()
    engine.dispose()


def _chromium(missing_service) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        missing_service("Debian's chromium is not installed (apt-get install chromium)")
    return exe


def _run(exe: str, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,1500",
            "--virtual-time-budget=8000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _blue_pixels(png: Path) -> int:
    img = cv2.imread(str(png))
    assert img is not None, f"no screenshot at {png}"
    return int((np.abs(img.astype(int) - np.array(BLUE_BGR)).sum(axis=2) < 24).sum())


def test_the_page_shows_the_rounds_and_draws_the_chart(served, tmp_path: Path, missing_service) -> None:
    exe = _chromium(missing_service)
    url, pid = served
    page = f"{url}/projects/{pid}/curves#token={TOKEN}"
    dom = _run(exe, page, "--dump-dom").stdout
    assert 'data-loaded="1"' in dom, dom[-2000:]
    assert "line-7: label-efficiency curves" in dom
    rows = re.findall(r"<tr>(.*?)</tr>", dom.split('id="rounds"')[1].split("</table>")[0], re.DOTALL)
    assert len(rows) == 1 + 4  # header + four rounds
    assert "unsupervised" in rows[1] and "41.0" in rows[1] and "86.0" in rows[3] and "annotating" in rows[4]
    shot = tmp_path / "page.png"
    _run(exe, page, f"--screenshot={shot}")
    assert _blue_pixels(shot) > 500, "the chart's curve is not on the screenshot"


def test_without_the_token_the_page_says_how_to_open_it(served, tmp_path: Path, missing_service) -> None:
    exe = _chromium(missing_service)
    url, pid = served
    dom = _run(exe, f"{url}/projects/{pid}/curves", "--dump-dom").stdout
    assert "401" in dom and "#token=" in dom and 'data-loaded="1"' not in dom
    shot = tmp_path / "page.png"
    _run(exe, f"{url}/projects/{pid}/curves", f"--screenshot={shot}")
    assert _blue_pixels(shot) < 50  # no chart without data


def test_curves_json_and_png(served) -> None:
    import httpx

    url, pid = served
    h = {"Authorization": f"Bearer {TOKEN}"}
    data = httpx.get(f"{url}/projects/{pid}/curves.json", headers=h).json()
    assert [p["image_ap"] for p in data["runs"][0]["points"]] == [0.41, 0.72, 0.86]
    assert [p["cost"] for p in data["runs"][0]["points"]] == [0, 30, 60]
    for x in ("labels", "cost", "annotation_seconds"):
        r = httpx.get(f"{url}/projects/{pid}/curves.png", params={"x": x}, headers=h)
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    assert httpx.get(f"{url}/projects/{pid}/curves.png", params={"x": "weeks"}, headers=h).status_code == 422
    assert httpx.get(f"{url}/projects/{pid}/curves.json").status_code == 401
    assert httpx.get(f"{url}/projects/999/curves.json", headers=h).status_code == 404


def test_docs_load_everything_from_the_service(served) -> None:
    """/docs and /redoc name no other host: every script, style and icon is served here."""
    import httpx

    url, _ = served
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{url}{page}").text
        assert not re.findall(r"(?:https?:)?//[\w.-]+", html.replace(url, "")), f"{page} names another host"
        assets = re.findall(r"""(?:src|href)=["'](/[^"']+)["']""", html)
        assert any(a.endswith(".js") for a in assets) and (page == "/redoc" or any(a.endswith(".css") for a in assets))
        for a in assets:
            assert httpx.get(f"{url}{a}").status_code == 200, a
        assert "'/openapi.json'" in html or '"/openapi.json"' in html


def test_docs_render_with_no_network(served, missing_service) -> None:
    """Swagger UI draws the operations in a browser that can reach nothing but the service."""
    exe = _chromium(missing_service)
    url, _ = served
    dom = _run(exe, f"{url}/docs", "--dump-dom", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1").stdout
    assert "opblock" in dom and "/projects/{project_id}/rounds/close" in dom, dom[-2000:]
