"""Retrain end to end with real worker processes: embedded executor and RQ on the local Redis.

Progress reaches the job record, cancel stops a running job, and a worker killed with
SIGKILL leaves its job failed, nothing half-registered and the previous version active.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from backend.api.app import create_app
from backend.db.engine import session_factory
from backend.db.tables import ModelVersion, Prediction
from backend.settings import Settings

pytestmark = pytest.mark.slow  # real retrains in worker processes

TOKEN = "t"
REDIS_URL = os.environ.get("DEFECTLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_available() -> str | None:
    try:
        from redis import Redis

        Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


class Stack:
    """An API client plus a worker process sharing one database and data dir."""

    def __init__(self, db_url: str, engine: Engine, data_dir: Path, roots: list[Path], redis_url: str | None) -> None:
        self.env = {
            **os.environ,
            "DEFECTLOOP_DATABASE_URL": db_url,
            "DEFECTLOOP_DATA_DIR": str(data_dir),
            "DEFECTLOOP_HEARTBEAT_TIMEOUT_S": "4",
            "DEFECTLOOP_DEVICE": "cpu",
        }
        self.env.pop("DEFECTLOOP_REDIS_URL", None)
        if redis_url:
            self.env["DEFECTLOOP_REDIS_URL"] = redis_url
        settings = Settings(
            database_url=db_url,
            data_dir=data_dir,
            api_token=TOKEN,
            import_roots=roots,
            heartbeat_timeout_s=4,
            redis_url=redis_url,
            device="cpu",
        )
        self.client = TestClient(create_app(settings, engine=engine))
        self.client.headers["Authorization"] = f"Bearer {TOKEN}"
        self.engine = engine
        self.redis_url = redis_url
        self.worker: subprocess.Popen | None = None

    def start_worker(self) -> None:
        cmd = [sys.executable, "-m", "backend.handlers"]
        if self.redis_url:
            cmd = [sys.executable, "-m", "backend.cli", "worker"]
        self.worker = subprocess.Popen(cmd, env=self.env, start_new_session=True)

    def kill_worker(self) -> None:
        """SIGKILL the worker and the children it forked, as a crashed host would lose them
        (RQ runs each job in a forked "work horse" in its own session)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.worker.pid:  # field 4 of stat: the parent pid
                children.append(int(stat.parent.name))
        for pid in [self.worker.pid, *children]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.worker.wait()

    def stop_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()

    def wait_job(self, job_id: int, done: Callable[[dict], bool], timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/jobs/{job_id}").json()
            if done(job):
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not reach the state in {timeout}s: {job}")


@pytest.fixture
def make_stack(
    db_url: str, migrated: Engine, tmp_path: Path, tiny_demo: Path, missing_service: Callable[[str], None]
) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(redis: bool = False) -> Stack:
        redis_url = None
        if redis:
            why = _redis_available()
            if why:
                missing_service(f"Redis not reachable at {REDIS_URL} ({why}); set DEFECTLOOP_TEST_REDIS_URL")
            from redis import Redis

            Redis.from_url(REDIS_URL).flushdb()
            redis_url = REDIS_URL
        st = Stack(db_url, migrated, tmp_path / "data", [tiny_demo.parent, tmp_path], redis_url)
        stacks.append(st)
        return st

    yield make
    for st in stacks:
        st.stop_worker()


def _setup_project(st: Stack, tiny_demo: Path, tmp_path: Path, epochs: int, click_head_steps: int = 0) -> int:
    defaults = {"epochs": epochs, "click_head_steps": click_head_steps, "click_head_min_masks": 5}
    r = st.client.post(
        "/projects", json={"name": "line", "image_height": 64, "image_width": 64, "train_defaults": defaults}
    )
    pid = r.json()["id"]
    assert st.client.post(f"/projects/{pid}/images/import", json={"path": str(tiny_demo)}).json()["imported"] == 44
    pool = tmp_path / "pool"
    pool.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(pool / f"p{i}.png"), rng.integers(0, 255, (70, 90, 3), dtype=np.uint8))
    assert st.client.post(f"/projects/{pid}/images/import", json={"path": str(pool)}).json()["imported"] == 3
    return pid


def _n_versions(engine: Engine) -> int:
    with session_factory(engine)() as s:
        return s.scalar(select(func.count(ModelVersion.id))) or 0


@pytest.mark.parametrize("redis", [False, True], ids=["embedded", "rq"])
def test_retrain_end_to_end(make_stack, tiny_demo: Path, tmp_path: Path, redis: bool) -> None:
    st = make_stack(redis=redis)
    pid = _setup_project(st, tiny_demo, tmp_path, epochs=3, click_head_steps=4)  # 6 training masks: a click head
    r = st.client.post(f"/projects/{pid}/retrain")
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    # an answer arriving after the request is kept, but is not in this retrain's snapshot
    train_images = st.client.get(f"/projects/{pid}/images", params={"split": "train"}).json()
    late = st.client.put(f"/projects/{pid}/images/{train_images[0]['id']}/label", data={"is_defective": "true"}).json()
    second = st.client.post(f"/projects/{pid}/retrain")
    assert second.status_code == 409 and second.json()["job_id"] == job_id
    st.start_worker()
    seen_progress = set()
    job = st.wait_job(
        job_id, lambda j: seen_progress.add(round(j["progress"], 2)) or j["status"] in ("succeeded", "failed")
    )
    assert job["status"] == "succeeded", job
    assert len(seen_progress) >= 2  # progress moved while the job ran
    assert job["result"]["regime"] == "full" and job["result"]["metrics"]["n_defective"] == 4
    versions = st.client.get(f"/projects/{pid}/model-versions").json()
    assert len(versions) == 1 and versions[0]["is_active"] and versions[0]["n_labels"] == 32  # train + val labels
    detail = st.client.get(f"/model-versions/{versions[0]['id']}").json()
    assert detail["metrics"]["image_auroc"] is not None and len(detail["label_ids"]) == 32
    assert detail["config"]["click_head"]["n_masks"] == 6 and detail["config"]["click_head"]["steps"] == 4
    assert late["id"] not in detail["label_ids"]
    series = st.client.get(f"/projects/{pid}/metrics/series").json()
    assert series[0]["labels_mask"] == 10 and series[0]["labels_normal"] == 22
    jobs = st.client.get("/jobs", params={"project_id": pid}).json()
    predict = next(j for j in jobs if j["kind"] == "predict")
    predict = st.wait_job(predict["id"], lambda j: j["status"] in ("succeeded", "failed"))
    assert predict["status"] == "succeeded" and predict["result"]["scored"] == 3, predict
    with session_factory(st.engine)() as s:
        preds = s.scalars(select(Prediction)).all()
        assert len(preds) == 3 and all(Path(p.anomaly_map_path).is_file() for p in preds)
        pool_image = preds[0].image_id
    overlay = st.client.get(f"/projects/{pid}/images/{pool_image}/overlay")
    assert overlay.status_code == 200 and overlay.content[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("redis", [False, True], ids=["embedded", "rq"])
def test_cancel_stops_a_running_retrain(make_stack, tiny_demo: Path, tmp_path: Path, redis: bool) -> None:
    st = make_stack(redis=redis)
    pid = _setup_project(st, tiny_demo, tmp_path, epochs=500)
    job_id = st.client.post(f"/projects/{pid}/retrain").json()["id"]
    st.start_worker()
    st.wait_job(job_id, lambda j: j["status"] == "running" and "train" in j["message"])
    t0 = time.monotonic()
    assert st.client.post(f"/jobs/{job_id}/cancel").json()["cancel_requested"]
    job = st.wait_job(job_id, lambda j: j["status"] not in ("queued", "running"), timeout=60)
    assert job["status"] == "cancelled" and time.monotonic() - t0 < 20
    assert _n_versions(st.engine) == 0
    assert not list((tmp_path / "data" / "models").rglob("config.json"))  # no artifact left behind


@pytest.mark.parametrize("redis", [False, True], ids=["embedded", "rq"])
def test_killed_worker_fails_the_job_and_keeps_the_active_version(
    make_stack, tiny_demo: Path, tmp_path: Path, redis: bool
) -> None:
    st = make_stack(redis=redis)
    pid = _setup_project(st, tiny_demo, tmp_path, epochs=2)
    first = st.client.post(f"/projects/{pid}/retrain").json()["id"]
    st.start_worker()
    assert st.wait_job(first, lambda j: j["status"] in ("succeeded", "failed"))["status"] == "succeeded"
    active = [v for v in st.client.get(f"/projects/{pid}/model-versions").json() if v["is_active"]]
    st.client.patch(f"/projects/{pid}", json={"train_defaults": {"epochs": 500}})
    # labels written while a retrain runs are kept, and not in its snapshot
    job_id = st.client.post(f"/projects/{pid}/retrain").json()["id"]
    st.wait_job(job_id, lambda j: j["status"] == "running" and "train" in j["message"])
    images = st.client.get(f"/projects/{pid}/images", params={"split": "train"}).json()
    assert (
        st.client.put(f"/projects/{pid}/images/{images[0]['id']}/label", data={"is_defective": "true"}).status_code
        == 200
    )
    st.kill_worker()
    job = st.wait_job(job_id, lambda j: j["status"] != "running", timeout=30)
    assert job["status"] == "failed" and "heartbeat" in job["error"]
    assert not (tmp_path / "data" / "jobs" / str(job_id)).exists()  # the dead job's scratch files are gone
    assert len(list((tmp_path / "data" / "models").rglob("config.json"))) == 1  # only the registered version
    versions = st.client.get(f"/projects/{pid}/model-versions").json()
    assert [v["id"] for v in versions if v["is_active"]] == [active[0]["id"]] and len(versions) == 1
    hist = st.client.get(f"/projects/{pid}/images/{images[0]['id']}/label").json()
    assert hist["current"]["is_defective"] is True and hist["current"]["source"] == "human"


def test_stopping_the_worker_interrupts_its_job(make_stack, tiny_demo: Path, tmp_path: Path) -> None:
    st = make_stack()
    pid = _setup_project(st, tiny_demo, tmp_path, epochs=500)
    job_id = st.client.post(f"/projects/{pid}/retrain").json()["id"]
    st.start_worker()
    st.wait_job(job_id, lambda j: j["status"] == "running" and "train" in j["message"])
    t0 = time.monotonic()
    st.worker.send_signal(signal.SIGTERM)
    st.worker.wait(30)
    assert time.monotonic() - t0 < 20
    job = st.client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed" and job["message"].startswith("interrupted")
    assert _n_versions(st.engine) == 0
