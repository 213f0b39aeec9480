"""`defectloop demo` for real: Label Studio and the service start, the bootstrap trains, the
first ranked batch lands in Label Studio pre-annotated, and `--stop` ends both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from labelstudio import server
from ml.demo_data import DemoSpec, generate

pytestmark = pytest.mark.slow  # the demo's bootstrap training


def _demo(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFECTLOOP_")}
    return subprocess.run(
        [str(Path(sys.executable).parent / "defectloop"), "demo", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=False,
    )


def test_demo_starts_everything_and_pushes_the_first_batch(tmp_path: Path, ls_server) -> None:
    data = tmp_path / "data"
    generate(
        data,
        DemoSpec(
            train_normal=16,
            train_defective=6,
            val_normal=6,
            val_defective=4,
            test_normal=8,
            test_defective=4,
            size=64,
            seed=3,
        ),
    )
    work, port = tmp_path / "demo", server.free_port()
    res = _demo("--data", str(data), "--dir", str(work), "--port", str(port), "--image-size", "64")
    try:
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        out = res.stdout
        ls_url = re.search(r"Label Studio:\s+(http://127\.0\.0\.1:\d+)/projects/(\d+)/data", out)
        login = re.search(r"log in as\s+(\S+) / (\S+)", out)
        page = re.search(r"Curves, rounds: (\S+)#token=(\S+)", out)
        assert ls_url and login and page, out
        token = (work / "token").read_text().strip()
        assert page.group(2) == token
        # the first batch is in Label Studio, ranked and pre-annotated by the bootstrap model
        creds = server.load_credentials(work / "workbench" / "labelstudio")
        assert creds.username == login.group(1)
        from label_studio_sdk import LabelStudio

        sdk = LabelStudio(base_url=ls_url.group(1), api_key=creds.token)
        tasks = list(sdk.tasks.list(project=int(ls_url.group(2)), fields="all"))
        assert tasks and all(t.data["ask"] in ("verdict", "mask") for t in tasks)
        assert [t.data["rank"] for t in tasks] == sorted(t.data["rank"] for t in tasks)
        assert all(t.total_predictions == 1 for t in tasks)
        # the printed API line: the token file it names opens Label Studio's REST API
        api = re.search(r"its API\s+(\S+)/api\s+.*the token in (\S+credentials\.json)", out)
        assert api and api.group(1) == ls_url.group(1), out
        ls_token = json.loads(Path(api.group(2)).read_text())["token"]
        listed = httpx.get(f"{api.group(1)}/api/projects", headers={"Authorization": f"Token {ls_token}"})
        assert listed.status_code == 200, listed.text[:300]
        h = {"Authorization": f"Bearer {token}"}
        rounds = httpx.get(f"http://127.0.0.1:{port}/projects/1/rounds", headers=h).json()
        assert [r["status"] for r in rounds] == ["done", "annotating"]
        assert rounds[0]["metrics"]["regime"] == "unsupervised"
        assert httpx.get(page.group(1)).status_code == 200
        # again: nothing new is started or pushed
        again = _demo("--data", str(data), "--dir", str(work), "--port", str(port), "--image-size", "64")
        assert again.returncode == 0, again.stderr[-2000:]
        assert len(httpx.get(f"http://127.0.0.1:{port}/projects/1/rounds", headers=h).json()) == 2
    finally:
        stop = _demo("--dir", str(work), "--stop")
    assert stop.returncode == 0 and "service stopped" in stop.stdout and "Label Studio stopped" in stop.stdout
    try:
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        raise AssertionError("the service still answers after --stop")
    except httpx.HTTPError:
        pass
