"""Two RQ workers share one pool scoring (its chunks) and store what one process stores alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, select

from backend.db.engine import session_factory
from backend.db.tables import Job, JobStatus, Prediction, Project
from backend.handlers import job_handlers
from backend.jobs.dispatch import dispatch_on_commit
from backend.jobs.runner import execute
from backend.services.images import import_path
from backend.services.predictions import decode_embedding
from backend.services.retrain import enqueue_pool_scoring, register_model_version
from backend.settings import Settings
from ml import Regime, TrainConfig, load_dataset, load_model, train_and_save

pytestmark = pytest.mark.slow  # trains a model, starts two worker processes

REDIS_URL = os.environ.get("DEFECTLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _predictions(engine: Engine, mv_id: int) -> dict[int, tuple[float, bool, np.ndarray]]:
    with session_factory(engine)() as s:
        rows = s.scalars(select(Prediction).where(Prediction.model_version_id == mv_id))
        return {p.image_id: (p.score, p.decision, decode_embedding(p.embedding or b"")) for p in rows}


def test_two_workers_share_the_chunks_and_score_as_one_process(
    db_url: str, migrated: Engine, tmp_path: Path, tiny_demo: Path, missing_service
) -> None:
    from redis import Redis

    try:
        Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as e:  # noqa: BLE001
        missing_service(f"Redis not reachable at {REDIS_URL} ({type(e).__name__}: {e})")
    settings = Settings(database_url=db_url, data_dir=tmp_path / "data", device="cpu", redis_url=REDIS_URL)
    model = tmp_path / "model"
    train_and_save(load_dataset(tiny_demo), model, TrainConfig(image_size=(64, 64), epochs=1, device="cpu"))
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project = Project(name="line", image_height=64, image_width=64)
        s.add(project)
        s.flush()
        import_path(s, project=project, path=tiny_demo, roots=[tiny_demo.parent], labels="none")
        mv = register_model_version(
            s,
            project_id=project.id,
            name="v1",
            model_dir=model,
            regime=Regime.FULL,
            profile="fast",
            thresholds={"image": 0.5},
            metrics={},
            label_ids=[],
        )
        pid, mv_id = project.id, mv.id
        (alone,) = enqueue_pool_scoring(s, project_id=pid, model_version_id=mv_id)  # one job: not announced
    assert execute(alone, sessions, settings, job_handlers()) is JobStatus.SUCCEEDED
    one_process = _predictions(migrated, mv_id)
    assert len(one_process) == 44

    with dispatch_on_commit(session_factory(migrated), settings).begin() as s:  # to RQ on commit
        chunked = enqueue_pool_scoring(s, project_id=pid, model_version_id=mv_id, chunk=5)
    assert len(chunked) == 9
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFECTLOOP_")}
    env |= {
        "DEFECTLOOP_DATABASE_URL": db_url,
        "DEFECTLOOP_REDIS_URL": REDIS_URL,
        "DEFECTLOOP_DATA_DIR": str(tmp_path / "data"),
        "DEFECTLOOP_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "backend.cli", "worker", "--burst"]
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    logs = [w.communicate(timeout=300)[0].decode() for w in workers]
    ran = [{int(j) for j in re.findall(r"run_rq_job\((\d+)\)", log)} for log in logs]
    assert ran[0] and ran[1], logs  # both workers took chunks
    assert ran[0] | ran[1] == set(chunked) and not ran[0] & ran[1]
    with sessions() as s:
        statuses = set(s.scalars(select(Job.status).where(Job.id.in_(chunked))))
    assert statuses == {JobStatus.SUCCEEDED}
    shared = _predictions(migrated, mv_id)
    assert shared.keys() == one_process.keys()
    # the calibrated threshold is one of these images' own score, so float noise between batch
    # layouts may put that one image on either side of it: only there may the decision differ
    threshold = load_model(model, device="cpu").predictor.thresholds.image
    for image_id, (score, decision, embedding) in one_process.items():
        got = shared[image_id]
        assert got[0] == pytest.approx(score, abs=1e-5)
        assert got[1] == decision or min(got[0], score) <= threshold <= max(got[0], score), (got, score, threshold)
        assert np.allclose(got[2], embedding, atol=1e-5)
