"""A run's project, through the service's client only: created and imported, its ground
truth by image id, its jobs waited for, and made whole again after a process died."""

from __future__ import annotations

import csv
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from backend.client import HttpClient
from ml import Sample
from simulator.config import SimConfig
from simulator.environment import Environment
from simulator.errors import SimulationError

Json = dict[str, Any]
ACTIVE = ("queued", "running")


def write_import_csv(path: Path, test: Sequence[Sample], pool: Sequence[Sample]) -> None:
    """A labels CSV (absolute paths) of the test split, then the pool: what a run imports with
    ``labels=test``, so the test images keep their labels and the pool comes in unlabelled,
    in this order (written atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "mask", "has_mask", "split"])
        for s, split in [(s, "test") for s in test] + [(s, s.split) for s in pool]:
            mask = str(s.mask.resolve()) if s.mask is not None else ""
            w.writerow([str(s.image.resolve()), s.label, mask, int(s.has_mask), split])
    tmp.replace(path)


def new_project(
    env: Environment, cfg: SimConfig, strategy: str, name: str, pool: Sequence[Sample], test: Sequence[Sample]
) -> int:
    """Create the run's project (its settings from ``cfg``) and import the test split with its
    labels and the pool without; its id. SimulationError when an image is not imported."""
    body: Json = {
        "name": f"{name}-{secrets.token_hex(3)}",
        "image_height": cfg.image_size[0],
        "image_width": cfg.image_size[1],
        "strategy": strategy,
        "round_budget": cfg.budget,
        "mask_share": cfg.mask_share,
        "cost_image_label": cfg.cost_image,
        "cost_mask_label": cfg.cost_mask,
        "mask_cost_model": cfg.mask_cost,
        "train_defaults": {
            # the simulated annotator paints masks; it never clicks, so no round teaches a click head
            "click_head_steps": 0,
            **({"epochs": cfg.epochs} if cfg.epochs else {}),
            **(
                {"pseudo_normal_fraction": cfg.pseudo_normal_fraction} if cfg.pseudo_normal_fraction is not None else {}
            ),
            **(
                {"min_defects_supervised": cfg.min_defects_supervised} if cfg.min_defects_supervised is not None else {}
            ),
        },
        **({"backbone": cfg.backbone} if cfg.backbone else {}),
    }
    pid = int(env.client.create_project(body)["id"])
    csv_path = env.import_dir / "labels.csv"
    write_import_csv(csv_path, test, pool)
    res = env.client.import_path(pid, csv_path, labels="test")
    bad = [f"{r['file']}: {r['status']} ({r['reason']})" for r in res["results"] if r["status"] != "imported"]
    if bad:
        raise SimulationError(f"{len(bad)} images could not be imported, e.g. " + "; ".join(bad[:3]))
    return pid


def truth(client: HttpClient, project_id: int, pool: Sequence[Sample]) -> dict[int, Sample]:
    """The ground truth of each pool image of the project, by image id (matched by file).

    SimulationError when the project's pool is not this dataset's pool."""
    by_file = {s.image.resolve(): s for s in pool}
    rows = [(int(i["id"]), Path(i["uri"]).resolve()) for i in client.images(project_id, split="pool")]
    missing = [str(path) for _, path in rows if path not in by_file]
    if missing or len(rows) != len(pool):
        raise SimulationError(
            f"project {project_id}'s pool ({len(rows)} images) is not this dataset's pool ({len(pool)}), "
            f"e.g. {missing[:1]}: use a new --out"
        )
    return {i: by_file[path] for i, path in rows}


def wait_for_job(client: HttpClient, project_id: int, job_id: int, what: str, poll_s: float = 0.5) -> Json:
    """Wait for the service's worker to finish job ``job_id`` and the jobs it queued for the
    project (a training's pool scoring); the job. SimulationError naming ``what`` when the
    job, or one it queued, did not succeed."""
    while (job := client.job(job_id))["status"] in ACTIVE:
        time.sleep(poll_s)
    if job["status"] != "succeeded":
        raise SimulationError(f"{what}: job {job_id} {job['status']}: {job['message']}\n{job.get('error') or ''}")
    for later in wait_idle(client, project_id, poll_s):
        if later["id"] > job_id and later["status"] != "succeeded":
            raise SimulationError(
                f"{what}: job {later['id']} ({later['kind']}, queued by job {job_id}) {later['status']}: "
                f"{later['message']}\n{later.get('error') or ''}"
            )
    return job


def wait_idle(client: HttpClient, project_id: int, poll_s: float = 0.5) -> list[Json]:
    """Wait until none of the project's jobs is queued or running (the worker runs the queued
    ones; a running one whose worker died is marked failed once its heartbeat lapses); the
    project's recent jobs, newest first."""
    while True:
        jobs = client.jobs(project_id, limit=200)
        if not any(j["status"] in ACTIVE for j in jobs):
            return jobs
        time.sleep(poll_s)


def wait_for_labels(client: HttpClient, project_id: int, image_ids: list[int], timeout_s: float = 60.0) -> int:
    """Wait until the webhooks delivered labels for ``image_ids``; how many arrived."""
    wanted = set(image_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        n = len({lb["image_id"] for lb in client.labels(project_id)} & wanted)
        if n >= len(wanted) or time.monotonic() > deadline:
            return n
        time.sleep(0.25)


def _time(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def pool_scoring_lost(jobs: Sequence[Json]) -> bool:
    """Whether the pool's scoring by the newest model version ended unfinished and was never
    queued again: a predict job after the newest successful training failed or was cancelled,
    and no predict job was created after it ended. (A scoring split into chunks may have
    later chunks that succeeded: they were queued with the failed one, not after it.)"""
    trained = max((j["id"] for j in jobs if j["kind"] == "train" and j["status"] == "succeeded"), default=0)
    scoring = [j for j in jobs if j["kind"] == "predict" and j["id"] > trained]
    ends = [_time(j.get("finished_at")) for j in scoring if j["status"] in ("failed", "cancelled")]
    if not ends:
        return False
    if any(e is None for e in ends):
        return True
    last = max(e for e in ends if e is not None)
    return not any((c := _time(j.get("created_at"))) is not None and c > last for j in scoring)


def recover(env: Environment, project_id: int) -> None:
    """Make a project left by a dead process consistent, through the API. Its jobs settle: the
    worker runs the queued ones, and one left running by a dead worker is marked failed once
    its heartbeat lapses (so its round can be closed again). A pool scoring that ended
    unfinished is queued again and waited for. Label Studio's webhook is pointed at this
    study's service (on a new port)."""
    if pool_scoring_lost(wait_idle(env.client, project_id)):
        jobs = env.client.score_pool(project_id)
        wait_for_job(env.client, project_id, int(jobs[0]["id"]), f"project {project_id}'s pool scoring")
    if env.client.find_project(str(project_id)).get("ls_project_id") is not None:
        env.client.labelstudio(project_id, "setup")
