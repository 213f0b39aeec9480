"""Bad input answers with one clear error naming the file or field, and stores nothing
half-way (SQLite and PostgreSQL): oversized images refused from their header, imports
all-or-nothing, labels validated as the dataset loader validates them."""

from __future__ import annotations

import struct
import zlib
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
from ml.errors import DataError
from ml.images import DEFAULT_MAX_PIXELS, read_image, set_max_pixels

TOKEN = "t0ken"


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


@pytest.fixture
def client(migrated: Engine, tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN, import_roots=[tmp_path])
    c = TestClient(create_app(settings, engine=migrated))
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    yield c
    set_max_pixels(DEFAULT_MAX_PIXELS)


def _project(client: TestClient) -> int:
    return client.post("/projects", json={"name": "line"}).json()["id"]


def _count(engine: Engine, table) -> int:
    with session_factory(engine)() as s:
        return s.scalar(select(func.count(table.id))) or 0


def test_a_decompression_bomb_is_refused_from_its_header_naming_the_file(client: TestClient, migrated: Engine) -> None:
    pid = _project(client)
    good = png(np.full((20, 30, 3), 90, np.uint8))
    r = client.post(
        f"/projects/{pid}/images/upload",
        files=[("files", ("bomb.png", bomb_png(), "image/png")), ("files", ("ok.png", good, "image/png"))],
    )
    assert r.status_code == 200, r.text
    by_file = {x["file"]: x for x in r.json()["results"]}
    assert by_file["bomb.png"]["status"] == "rejected"
    assert "30000x30000" in by_file["bomb.png"]["reason"] and "max_image_pixels" in by_file["bomb.png"]["reason"]
    assert by_file["ok.png"]["status"] == "imported" and _count(migrated, Image) == 1


def test_the_pixel_limit_is_a_setting_and_applies_to_imports_and_masks(migrated: Engine, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", api_token=TOKEN, import_roots=[tmp_path], max_image_pixels=40 * 40)
    c = TestClient(create_app(settings, engine=migrated))
    c.headers["Authorization"] = f"Bearer {TOKEN}"
    try:
        pid = _project(c)
        folder = tmp_path / "imgs"
        folder.mkdir()
        cv2.imwrite(str(folder / "small.png"), np.full((30, 40, 3), 50, np.uint8))
        cv2.imwrite(str(folder / "big.png"), np.full((41, 40, 3), 50, np.uint8))
        res = {
            Path(x["file"]).name: x
            for x in c.post(f"/projects/{pid}/images/import", json={"path": str(folder)}).json()["results"]
        }
        assert res["small.png"]["status"] == "imported"
        assert res["big.png"]["status"] == "rejected" and "40x41" in res["big.png"]["reason"]
        image_id = res["small.png"]["image_id"]
        r = c.put(
            f"/projects/{pid}/images/{image_id}/label",
            data={"is_defective": "true"},
            files={"mask": ("m.png", bomb_png(4000, 4000), "image/png")},
        )
        assert r.status_code == 422 and "mask" in r.json()["detail"] and "4000x4000" in r.json()["detail"]
        with pytest.raises(DataError, match=r"big\.png: 40x41 pixels"):  # what train and predict read through
            read_image(folder / "big.png")
    finally:
        set_max_pixels(DEFAULT_MAX_PIXELS)


def test_an_import_that_fails_stores_nothing(
    client: TestClient, migrated: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.services import images

    pid = _project(client)
    data = tmp_path / "ds"
    (data / "img").mkdir(parents=True)
    rows = ["file,label,split"]
    for i in range(5):
        cv2.imwrite(str(data / "img" / f"{i}.png"), np.full((16, 16, 3), 10 * i, np.uint8))
        rows.append(f"img/{i}.png,0,test")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    calls = {"n": 0}
    real = images.add_label

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "add_label", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        client.post(f"/projects/{pid}/images/import", json={"path": str(data)})
    assert _count(migrated, Image) == 0 and _count(migrated, Label) == 0  # the first two were not kept


def test_a_conflicting_duplicate_row_is_reported_as_train_reports_it(client: TestClient, tmp_path: Path) -> None:
    pid = _project(client)
    data = tmp_path / "ds"
    (data / "img").mkdir(parents=True)
    cv2.imwrite(str(data / "img" / "a.png"), np.full((16, 16, 3), 10, np.uint8))
    (data / "labels.csv").write_text("file,label,split\nimg/a.png,0,train\nimg/a.png,1,train\n")
    res = client.post(f"/projects/{pid}/images/import", json={"path": str(data)}).json()
    assert [r["status"] for r in res["results"]] == ["imported", "rejected"]
    assert res["results"][1]["reason"] == "row 3: duplicate of row 2"


@pytest.mark.parametrize(
    ("form", "mask", "field", "words"),
    [
        ({"is_defective": "true"}, np.zeros((16, 16), np.uint8), "mask", "all zero"),
        ({"is_defective": "false"}, np.full((16, 16), 255, np.uint8), "mask", "normal label"),
        (
            {"is_defective": "true"},
            np.array([[0, 128, 255, 255]] * 4 + [[0] * 4] * 12, np.uint8).repeat(4, 1)[:, :16],
            "mask",
            "0 and 255",
        ),
        ({"is_defective": "true", "lead_time": "inf"}, None, "lead_time", ""),
        ({"is_defective": "true", "lead_time": "nan"}, None, "lead_time", ""),
    ],
    ids=["defective-empty-mask", "normal-with-mask", "grey-mask", "infinite-lead-time", "nan-lead-time"],
)
def test_the_label_api_validates_as_the_dataset_loader(
    client: TestClient, migrated: Engine, form, mask, field, words
) -> None:
    pid = _project(client)
    up = client.post(
        f"/projects/{pid}/images/upload",
        files={"files": ("a.png", png(np.full((16, 16, 3), 7, np.uint8)), "image/png")},
    )
    image_id = up.json()["results"][0]["image_id"]
    files = {"mask": ("m.png", png(mask), "image/png")} if mask is not None else None
    r = client.put(f"/projects/{pid}/images/{image_id}/label", data=form, files=files)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(field) and words in r.json()["detail"]
    assert _count(migrated, Label) == 0
