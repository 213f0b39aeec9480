"""A batch whose images lie in several folders of the document root: Label Studio serves every
image through one local-files storage per top-level folder, made once per folder however many
batches touch it, and the tasks are what a batch from one folder gets."""

from __future__ import annotations

import uuid
from pathlib import Path

import cv2
import httpx
import numpy as np
from ls_support import LabelStudioServer, Service
from test_integration import register_model, res_project

from labelstudio.client import ASK_TEXT, overlay_html


def _folders(root: Path, n_folders: int, per_folder: int) -> list[Path]:
    """``n_folders`` new top-level folders of the document root with ``per_folder`` PNGs each."""
    rng = np.random.default_rng(7)
    tag = uuid.uuid4().hex[:8]
    folders = []
    for f in range(n_folders):
        folder = root / f"spread-{tag}-{f}"
        folder.mkdir()
        for i in range(per_folder):
            cv2.imwrite(str(folder / f"p{i}.png"), (rng.random((40, 48, 3)) * 255).astype(np.uint8))
        folders.append(folder)
    return folders


def _storages(ls: LabelStudioServer, ls_project: int) -> list[str]:
    return sorted(s.path for s in ls.sdk().import_storage.local.list(project=ls_project))


def test_a_batch_over_several_folders_gets_one_storage_per_folder_and_every_image_served(
    ls_server: LabelStudioServer, service: Service
) -> None:
    folders = _folders(ls_server.root, 3, 2)
    pid = service.http.post("/projects", json={"name": f"spread-{uuid.uuid4().hex[:6]}"}).raise_for_status().json()
    pid = pid["id"]
    for folder in folders:
        service.http.post(f"/projects/{pid}/images/import", json={"path": str(folder)}).raise_for_status()
    images = service.http.get(f"/projects/{pid}/images").raise_for_status().json()
    by_file = {str(Path(im["uri"]).relative_to(ls_server.root)): im["id"] for im in images}
    register_model(service, pid, defective=set())  # every proposal: OK, no overlay
    sdk, headers = ls_server.sdk(), {"Authorization": f"Token {ls_server.creds.token}"}

    def push_and_check(files: list[str]) -> None:
        order = [by_file[f] for f in files]
        res = service.http.post(f"/projects/{pid}/labelstudio/push", json={"image_ids": order}).raise_for_status()
        res = res.json()
        assert res["pushed"] == len(files) and res["with_prediction"] == len(files)
        for rank, (file, tid) in enumerate(zip(files, res["task_ids"], strict=True), start=1):
            task = sdk.tasks.get(id=tid)
            assert task.data == {
                "image": f"/data/local-files/?d={file}",
                "rank": rank,
                "ask": "verdict",
                "instruction": ASK_TEXT["verdict"],
                "overlay": overlay_html(None),
                "defectloop_image_id": by_file[file],
                "score": 0.1,
            }
            img = httpx.get(ls_server.info.url + task.data["image"], headers=headers)
            assert img.status_code == 200 and img.content[:4] == b"\x89PNG"  # its folder's storage grants it

    a, b, c = (f.name for f in folders)
    push_and_check([f"{b}/p0.png", f"{a}/p1.png", f"{b}/p1.png"])
    ls_project = res_project(service, pid)
    assert _storages(ls_server, ls_project) == sorted(str(folders[k]) for k in (0, 1))
    push_and_check([f"{c}/p0.png", f"{a}/p0.png"])  # a folder seen before and a new one
    assert _storages(ls_server, ls_project) == sorted(map(str, folders))  # one each, none twice
