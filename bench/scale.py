"""A line's volume: N pool images through import, scoring on one and two RQ workers, every
acquisition strategy, a Label Studio push and the image listing, each step timed with the
peak resident memory of every process that does its work.

What it measures, in one run on PostgreSQL and Redis:

- ``generate``: N small textured images (a few percent with a defect) written under DIR/pool
  (the bench process);
- ``train_model``: a tiny model (64x64, two epochs) trained on a separate generated set with
  ``defectloop train``, to score with; set-up, not a scaling figure;
- ``import``: the folder imported into a new project through the API (the ``serve`` process);
- ``score_1_worker`` / ``score_2_workers``: the pool scored by the active model version, queued
  through the API (one job per chunk) and run by one, then two ``defectloop worker --burst``
  processes, each pinned to one core (``taskset``), as if each were its own machine;
  ``seconds`` runs from the workers' start to the last one's exit, ``processing_seconds`` from
  the first job's start to the last job's end, ``cpu_seconds`` what each worker and its
  forked children used; ``scoring_speedup_2_workers`` is the ratio of the two ``seconds``, and
  ``scoring_speedup_2_workers_cpu`` one worker's CPU seconds over the busier of two's (the
  speedup were each worker alone on its core: on a machine other work keeps busy, wall time
  measures that work as much as this one);
- ``select_<strategy>``: a round's selection (candidates read from the database, ranked, a
  budget of 50 verdicts) with each strategy, rolled back (the bench process, as the service
  runs it);
- ``push_50``: a round started through the API with the hybrid strategy, whose 50 tasks are
  pushed pre-annotated to a real Label Studio (``serve`` and Label Studio's process);
- ``list_images``: every image listed through the API, 1,000 per page after the last id
  (``list_images_offset``: by offset, as clients paged before) (``serve``);
- ``rounds_and_curves``: the rounds view and curves.json (``serve``);
- ``storage_per_image``: the prediction table's bytes per row, the embeddings' bytes and the
  anomaly maps' bytes per image on disk, after both scorings;
- ``import_job``: the same folder imported into a second project as a job, as `defectloop
  import` does with a service, run by one burst RQ worker pinned to one core (the worker).

Peak memory is each process's VmHWM (reset at the start of a step for long-lived processes),
the largest over the process and its children (an RQ worker runs each job in a forked child),
sampled every 0.2 s. Writes DIR/scale.json; nothing is hard-coded, every figure is measured.

    nice -n 10 .venv/bin/python bench/scale.py --images 2000 --out runs/scale/n2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 64
PAGE = 1000
BATCH = 50
STRATEGY_BUDGET = 50.0
POLL_S = 0.2


# --- processes and their memory --------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """``pid``'s living descendants (from /proc; empty where there is no /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MiB; None once it is gone."""
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def reset_peak(pid: int) -> None:
    """Start the process's VmHWM again from its current RSS (Linux: clear_refs 5)."""
    with suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


class PeakWatch:
    """Samples the peak RSS of named processes and their children while a step runs.

    ``roots`` maps a name to a pid; pids may be added while it runs (workers started inside
    the step). The result is, per name, the largest VmHWM of the process or any child seen.
    """

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = dict(roots)
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, name: str, pid: int) -> None:
        self.roots[name] = pid

    def sample(self) -> None:
        for name, pid in list(self.roots.items()):
            for p in [pid, *descendants(pid)]:
                mb = peak_rss_mb(p)
                if mb is not None:
                    self.peaks[name] = max(self.peaks.get(name, 0.0), mb)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.sample()

    def __enter__(self) -> PeakWatch:
        for pid in self.roots.values():
            reset_peak(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()


@dataclass
class Step:
    """One measured step: wall seconds, peak RSS per process (MiB) and what else it found."""

    seconds: float = 0.0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "peak_rss_mb": {k: round(v, 1) for k, v in sorted(self.peak_rss_mb.items())},
            **self.extra,
        }


@contextmanager
def measured(roots: dict[str, int]) -> Iterator[tuple[Step, PeakWatch]]:
    """Time the block and watch ``roots``' memory; the Step is filled when the block ends."""
    step = Step()
    with PeakWatch(roots) as watch:
        t0 = time.perf_counter()
        yield step, watch
        step.seconds = time.perf_counter() - t0
    step.peak_rss_mb = dict(watch.peaks)


# --- data -------------------------------------------------------------------------------------


def generate_pool(folder: Path, n: int, seed: int, defect_share: float = 0.05) -> None:
    """Write ``n`` distinct IMAGE_SIZE-square PNGs under ``folder`` (1,000 per subfolder)."""
    import cv2
    import numpy as np

    from ml.demo_data import make_image

    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        img, _, _ = make_image(rng, IMAGE_SIZE, bool(rng.random() < defect_share))
        cv2.imwrite(str(sub / f"part_{i:06d}.png"), img[:, :, ::-1])


def train_model(folder: Path, env: dict[str, str]) -> tuple[Path, subprocess.Popen[bytes]]:
    """Generate a tiny labelled set and start ``defectloop train`` on it (the caller waits)."""
    from ml.demo_data import DemoSpec, generate

    spec = DemoSpec(16, 4, 6, 4, 0, 0, size=IMAGE_SIZE, seed=1)
    generate(folder / "data", spec)
    out = folder / "model"
    cmd = [sys.executable, "-m", "backend.cli", "train", str(folder / "data"), "--out", str(out)]
    cmd += ["--image-size", str(IMAGE_SIZE), str(IMAGE_SIZE), "--epochs", "2", "--device", "cpu", "--quiet"]
    return out, subprocess.Popen(cmd, env=env, cwd=ROOT)


# --- the stack: PostgreSQL schema, Redis, Label Studio, serve --------------------------------


@dataclass
class Stack:
    """Everything the run starts, and how to reach it."""

    out: Path
    db_url: str
    schema: str
    redis_url: str
    token: str
    env: dict[str, str]
    base_url: str = ""
    serve: subprocess.Popen[bytes] | None = None
    ls_home: Path | None = None
    ls_pid: int | None = None

    def pids(self, *, labelstudio: bool = False) -> dict[str, int]:
        out = {"serve": self.serve.pid} if self.serve else {}
        if labelstudio and self.ls_pid:
            out["labelstudio"] = self.ls_pid
        return out


def make_schema(admin_url: str) -> tuple[str, str]:
    """A fresh PostgreSQL schema; the URL that uses it, and its name."""
    from sqlalchemy import text

    from backend.db.engine import make_engine

    schema = f"scale_{uuid.uuid4().hex[:10]}"
    admin = make_engine(admin_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in admin_url else "?"
    return f"{admin_url}{sep}options=-csearch_path%3D{schema}", schema


def drop_schema(admin_url: str, schema: str) -> None:
    from sqlalchemy import text

    from backend.db.engine import make_engine

    admin = make_engine(admin_url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def empty_queue(redis_url: str) -> None:
    """Drop job ids an earlier, interrupted run left on this Redis database's queue."""
    from redis import Redis
    from rq import Queue

    from backend.jobs.dispatch import QUEUE

    Queue(QUEUE, connection=Redis.from_url(redis_url)).empty()


def start_labelstudio(stack: Stack, document_root: Path) -> None:
    """A real Label Studio on a free port, from the cached template (as the tests start it)."""
    from platformdirs import user_cache_dir

    from labelstudio import server

    cache = Path(user_cache_dir("defectloop"))
    venv = server.default_environment_dir(cache)
    server.ensure_environment(venv, say=print)
    template = server.prepare_template(server.default_template_dir(cache), venv=venv, say=print)
    stack.ls_home = stack.out / "labelstudio"
    info = server.start(stack.ls_home, document_root=document_root, venv=venv, template=template)
    creds = server.load_credentials(stack.ls_home)
    assert creds is not None
    stack.ls_pid = info.pid
    stack.env |= {
        "DEFECTLOOP_LABELSTUDIO_URL": info.url,
        "DEFECTLOOP_LABELSTUDIO_TOKEN": creds.token,
        "DEFECTLOOP_LABELSTUDIO_DOCUMENT_ROOT": str(document_root),
    }


def start_serve(stack: Stack) -> None:
    """``defectloop serve`` on a free port (no embedded worker: jobs go to RQ); waits for /health."""
    import httpx

    from labelstudio.ports import free_port

    port = free_port()
    stack.base_url = f"http://127.0.0.1:{port}"
    stack.env["DEFECTLOOP_PUBLIC_URL"] = stack.base_url
    log = (stack.out / "serve.log").open("ab")
    cmd = [sys.executable, "-m", "backend.cli", "serve", "--port", str(port)]
    stack.serve = subprocess.Popen(cmd, env=stack.env, cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if stack.serve.poll() is not None:
            raise RuntimeError(f"serve exited with {stack.serve.returncode}: see {stack.out / 'serve.log'}")
        with suppress(httpx.HTTPError):
            if httpx.get(f"{stack.base_url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError("serve did not answer /health within 180 s")


def stop_stack(stack: Stack, admin_url: str, keep: bool) -> None:
    """Stop what the run started (by pid) and drop its schema unless ``keep``."""
    if stack.serve is not None and stack.serve.poll() is None:
        stack.serve.terminate()
        try:
            stack.serve.wait(30)
        except subprocess.TimeoutExpired:
            stack.serve.kill()
            stack.serve.wait()
    if stack.ls_home is not None:
        from labelstudio import server

        server.stop(stack.ls_home)
    if not keep:
        drop_schema(admin_url, stack.schema)


# --- the steps --------------------------------------------------------------------------------


def api(stack: Stack) -> Any:
    import httpx

    return httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=None)


def checked(resp: Any) -> Any:
    if resp.status_code >= 400:
        raise RuntimeError(f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text[:500]}")
    return resp.json()


def register_model(stack: Stack, project_id: int, model_dir: Path) -> int:
    """Register the trained model as the project's active ModelVersion (as a retrain would)."""
    from backend.db.engine import make_engine, session_factory
    from backend.services.retrain import register_model_version
    from ml import Regime

    final = Path(stack.env["DEFECTLOOP_DATA_DIR"]) / "models" / str(project_id) / "v1-bench"
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, final)
    config = json.loads((final / "config.json").read_text())
    engine = make_engine(stack.db_url)
    with session_factory(engine).begin() as s:
        mv = register_model_version(
            s,
            project_id=project_id,
            name="v1-bench",
            model_dir=final,
            regime=Regime(config.get("regime", "unsupervised")),
            profile=str(config.get("profile", "fast")),
            thresholds=dict(config.get("thresholds") or {"image": 0.5}),
            metrics={},
            label_ids=[],
        )
        mv_id = mv.id
    engine.dispose()
    return mv_id


def reap(proc: subprocess.Popen[bytes], deadline: float) -> Any:
    """Wait for a started process and return its resource usage (CPU seconds of it and its
    children, the largest peak RSS among them); TimeoutError after ``deadline``."""
    while time.monotonic() < deadline:
        done, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if done:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        time.sleep(POLL_S)
    raise TimeoutError(f"process {proc.pid} still running at the step's deadline")


def job_span(stack: Stack, job_ids: list[int]) -> tuple[dict[str, int], float]:
    """The jobs' statuses (counted) and the seconds from the first start to the last finish."""
    from sqlalchemy import select

    from backend.db.engine import make_engine, session_factory
    from backend.db.tables import Job

    engine = make_engine(stack.db_url)
    with session_factory(engine)() as s:
        rows = list(s.execute(select(Job.status, Job.started_at, Job.finished_at).where(Job.id.in_(job_ids))))
    engine.dispose()
    counts: dict[str, int] = {}
    for status, _, _ in rows:
        counts[status.value] = counts.get(status.value, 0) + 1
    starts = [r[1] for r in rows if r[1] is not None]
    ends = [r[2] for r in rows if r[2] is not None]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    return counts, span


def score_pool(stack: Stack, project_id: int, *, workers: int, cores: list[int], timeout_s: float, n: int) -> Step:
    """Queue the pool's scoring through the API, then run ``workers`` burst RQ workers, each
    pinned to one core, until they exit."""
    with api(stack) as c:
        jobs = checked(c.post(f"/projects/{project_id}/pool-scoring"))
    job_ids = [j["id"] for j in jobs]
    procs: list[subprocess.Popen[bytes]] = []
    with measured({}) as (step, watch):
        for k in range(workers):
            log = (stack.out / f"worker_{workers}_{k + 1}.log").open("ab")
            core = cores[k % len(cores)]
            cmd = ["taskset", "-c", str(core), sys.executable, "-m", "backend.cli", "worker", "--burst"]
            procs.append(subprocess.Popen([*cmd, "--device", "cpu"], env=stack.env, cwd=ROOT, stdout=log, stderr=log))
            watch.add(f"worker_{k + 1}", procs[-1].pid)
        usage = [reap(p, time.monotonic() + timeout_s) for p in procs]
    counts, span = job_span(stack, job_ids)
    cpu = [u.ru_utime + u.ru_stime for u in usage]
    step.extra = {
        "cpu_seconds": [round(x, 2) for x in cpu],
        "max_rss_mb_rusage": [round(u.ru_maxrss / 1024, 1) for u in usage],
        "exit_codes": [p.returncode for p in procs],
        "workers": workers,
        "cores": [cores[k % len(cores)] for k in range(workers)],
        "jobs": len(job_ids),
        "job_status": counts,
        "processing_seconds": round(span, 3),
        "images_per_s": round(n / step.seconds, 2),
    }
    return step


def import_job(stack: Stack, core: int, timeout_s: float) -> Step:
    """The same folder imported into a second project as a job (what `defectloop import` does
    with a service), run by one burst RQ worker pinned to ``core``; the worker's peak memory
    and the job's counts and progress."""
    with api(stack) as c:
        body = {"name": "scale-import-job", "image_height": IMAGE_SIZE, "image_width": IMAGE_SIZE}
        pid = checked(c.post("/projects", json=body))["id"]
        job = checked(c.post(f"/projects/{pid}/images/import-jobs", json={"path": str(stack.out / "pool")}))
    with measured(stack.pids()) as (step, watch):
        log = (stack.out / "worker_import.log").open("ab")
        cmd = ["taskset", "-c", str(core), sys.executable, "-m", "backend.cli", "worker", "--burst", "--device", "cpu"]
        proc = subprocess.Popen(cmd, env=stack.env, cwd=ROOT, stdout=log, stderr=log)
        watch.add("worker", proc.pid)
        reap(proc, time.monotonic() + timeout_s)
    with api(stack) as c:
        done = checked(c.get(f"/jobs/{job['id']}"))
    step.extra = {
        "status": done["status"],
        "progress": done["progress"],
        "processing_seconds": round(job_span(stack, [job["id"]])[1], 3),
        **{k: done["result"].get(k) for k in ("listed", "imported", "duplicate", "rejected")},
    }
    return step


def storage(stack: Stack, project_id: int) -> dict[str, Any]:
    """What the pool's scores cost per image: the prediction table's bytes (rows, indexes and
    TOAST) and its embeddings' average bytes on PostgreSQL, and the anomaly-map PNGs on disk."""
    from sqlalchemy import text

    from backend.db.engine import make_engine

    engine = make_engine(stack.db_url)
    with engine.connect() as c:
        rows = c.execute(text("SELECT count(*) FROM prediction")).scalar_one()
        table = c.execute(text("SELECT pg_total_relation_size('prediction')")).scalar_one()
        emb = c.execute(text("SELECT avg(octet_length(embedding)) FROM prediction")).scalar_one()
    engine.dispose()
    maps = [f.stat().st_size for f in (Path(stack.env["DEFECTLOOP_DATA_DIR"]) / "maps").rglob("*.png")]
    return {
        "predictions": int(rows),
        "prediction_table_bytes_per_row": round(table / max(rows, 1), 1),
        "embedding_bytes": round(float(emb or 0), 1),
        "anomaly_maps": len(maps),
        "anomaly_map_bytes_mean": round(sum(maps) / max(len(maps), 1), 1),
    }


def select_each(stack: Stack, project_id: int) -> dict[str, Step]:
    """A round's selection with every strategy, in this process, rolled back each time."""
    from backend.db.engine import make_engine, session_factory
    from backend.db.tables import Project
    from backend.services.rounds import STRATEGY_NAMES, start_round
    from backend.settings import Settings
    from ml import AskPolicy

    settings = Settings(database_url=stack.db_url, data_dir=Path(stack.env["DEFECTLOOP_DATA_DIR"]))
    engine = make_engine(stack.db_url)
    sessions = session_factory(engine)
    steps: dict[str, Step] = {}
    for name in STRATEGY_NAMES:
        with measured({"bench": os.getpid()}) as (step, _), sessions() as s:
            project = s.get_one(Project, project_id)
            rnd = start_round(
                s, settings, project=project, budget=STRATEGY_BUDGET, strategy=name, ask=AskPolicy.VERDICT, push=False
            )
            step.extra = {"asks": len(rnd.params.asks)}
            s.rollback()
        steps[f"select_{name}"] = step
    engine.dispose()
    return steps


def list_images(stack: Stack, project_id: int, *, keyset: bool) -> Step:
    """Every image through the API, PAGE at a time: ``after_id`` pages (``keyset``) or ``offset`` pages."""
    with api(stack) as c, measured(stack.pids()) as (step, _):
        pages: list[float] = []
        seen, last = 0, 0
        while True:
            params = {"after_id": last} if keyset else {"offset": seen}
            t0 = time.perf_counter()
            rows = checked(c.get(f"/projects/{project_id}/images", params={**params, "limit": PAGE}))
            pages.append(time.perf_counter() - t0)
            if rows and rows[0]["id"] <= last:
                raise RuntimeError("the API ignores after_id: no keyset pages in this version")
            seen += len(rows)
            last = rows[-1]["id"] if rows else last
            if len(rows) < PAGE:
                break
    step.extra = {
        "images": seen,
        "pages": len(pages),
        "first_page_s": round(pages[0], 4),
        "last_full_page_s": round(pages[-2] if len(pages) > 1 else pages[0], 4),
    }
    return step


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.machine()}, {cores} cores, load {load:.1f} at start, Python {platform.python_version()}"


# --- the run ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000, help="pool size N (default 100,000)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the images, logs and scale.json")
    ap.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/test", help="database (a schema is made)"
    )
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/12", help="Redis database for the RQ queue")
    ap.add_argument("--no-labelstudio", action="store_true", help="skip the Label Studio push")
    ap.add_argument("--no-import-job", action="store_true", help="skip the second import, as a job")
    ap.add_argument("--keep", action="store_true", help="keep the database schema and the images")
    ap.add_argument("--step-timeout", type=float, default=3600.0, help="seconds a scoring step may take")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def child_env(out: Path, db_url: str, redis_url: str, token: str) -> dict[str, str]:
    """The environment every started process gets: this run's settings, one thread each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEFECTLOOP_")}
    return env | {
        "DEFECTLOOP_DATABASE_URL": db_url,
        "DEFECTLOOP_REDIS_URL": redis_url,
        "DEFECTLOOP_DATA_DIR": str(out / "data"),
        "DEFECTLOOP_IMPORT_ROOTS": json.dumps([str(out / "pool")]),
        "DEFECTLOOP_API_TOKEN": token,
        "DEFECTLOOP_DEVICE": "cpu",
        "DEFECTLOOP_WEBHOOK_SECRET": uuid.uuid4().hex,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every step in order; returns what scale.json holds."""
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, Step] = {}
    started = machine()
    with measured({"bench": os.getpid()}) as (steps["generate"], _):
        generate_pool(out / "pool", args.images, args.seed)
    db_url, schema = make_schema(args.postgres)
    empty_queue(args.redis)
    stack = Stack(out, db_url, schema, args.redis, uuid.uuid4().hex, {})
    stack.env = child_env(out, db_url, args.redis, stack.token)
    try:
        with measured({}) as (steps["train_model"], watch):
            model_dir, trainer = train_model(out / "train", stack.env)
            watch.add("train", trainer.pid)
            if trainer.wait() != 0:
                raise RuntimeError("defectloop train failed")
        if not args.no_labelstudio:
            start_labelstudio(stack, out / "pool")
        start_serve(stack)
        with api(stack) as c:
            body = {"name": "scale", "image_height": IMAGE_SIZE, "image_width": IMAGE_SIZE}
            pid = checked(c.post("/projects", json=body))["id"]
            with measured(stack.pids()) as (steps["import"], _):
                res = checked(c.post(f"/projects/{pid}/images/import", json={"path": str(out / "pool")}))
            steps["import"].extra = {k: res[k] for k in ("imported", "duplicate", "rejected")}
        register_model(stack, pid, model_dir)
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
        for workers, key in ((1, "score_1_worker"), (2, "score_2_workers")):
            steps[key] = score_pool(
                stack, pid, workers=workers, cores=cores, timeout_s=args.step_timeout, n=args.images
            )
        steps |= select_each(stack, pid)
        if not args.no_labelstudio:
            with api(stack) as c, measured(stack.pids(labelstudio=True)) as (steps["push_50"], _):
                body = {"strategy": "hybrid", "budget": BATCH, "ask": "verdict", "push": True}
                rnd = checked(c.post(f"/projects/{pid}/rounds", json=body))
            steps["push_50"].extra = {"message": rnd["message"], "asks": len(rnd["asks"])}
        steps["list_images_offset"] = list_images(stack, pid, keyset=False)
        with suppress(RuntimeError):  # a version without keyset pages lists by offset only
            steps["list_images"] = list_images(stack, pid, keyset=True)
        with api(stack) as c, measured(stack.pids()) as (steps["rounds_and_curves"], _):
            checked(c.get(f"/projects/{pid}/rounds"))
            checked(c.get(f"/projects/{pid}/curves.json"))
        stored = storage(stack, pid)
        if not args.no_import_job:
            steps["import_job"] = import_job(stack, cores[0], args.step_timeout)
    finally:
        stop_stack(stack, args.postgres, args.keep)
        if not args.keep:
            shutil.rmtree(out / "pool", ignore_errors=True)
    one, two = steps["score_1_worker"], steps["score_2_workers"]
    return {
        "images": args.images,
        "image_size": IMAGE_SIZE,
        "machine": started,
        "command": f"python bench/scale.py --images {args.images} --out {args.out}",
        "steps": {k: v.to_json() for k, v in steps.items()},
        "storage_per_image": stored,
        "scoring_speedup_2_workers": round(one.seconds / two.seconds, 3),
        "scoring_speedup_2_workers_processing": round(
            one.extra["processing_seconds"] / two.extra["processing_seconds"], 3
        ),
        # were each worker alone on its core: one worker's CPU seconds over the busier of two's
        "scoring_speedup_2_workers_cpu": round(sum(one.extra["cpu_seconds"]) / max(two.extra["cpu_seconds"]), 3),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=1)
    (args.out / "scale.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
