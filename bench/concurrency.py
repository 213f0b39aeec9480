"""Concurrent clients against a real `defectloop serve`: label writes, uploads and Label Studio
webhooks at once, with a /health poller alongside.

Each client runs its share of requests back to back (a third label PUTs, a third uploads of a
new small PNG, a third webhook deliveries of a new annotation); the poller asks /health every
0.2 s. The report per run: requests, server errors (5xx or no answer), latency p50/p99/max,
and /health's worst answer time. The same number of requests from one client is the baseline
each run is compared with (the ratio of p99s).

    python bench/concurrency.py --clients 1 2 8 --requests 240            # embedded SQLite
    python bench/concurrency.py --clients 1 8 --database postgresql://postgres@127.0.0.1:5432/test
    python bench/concurrency.py --clients 1 2 8 --mix labels                # label PUTs only

The service runs in its own process (as `serve` runs it: embedded job worker included) on a
database prepared here: one project linked to a Label Studio project id, 64 images with a
task each (no Label Studio server is needed: the webhooks are what it would send).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image as PILImage

TOKEN = "bench-token"
SECRET = "bench-webhook-secret"
LS_PROJECT = 4242
N_IMAGES = 64
SIZE = (48, 64)  # (H, W) of every image


@dataclass(frozen=True)
class LoadReport:
    """One run: ``clients`` clients sending ``requests`` requests in all."""

    database: str
    mix: str
    clients: int
    requests: int
    errors: int
    error_samples: tuple[str, ...]
    p50_s: float
    p99_s: float
    max_s: float
    wall_s: float
    health_checks: int
    health_failures: int
    health_max_s: float


def _png(seed: int, mask: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    if mask:
        arr = np.zeros(SIZE, np.uint8)
        arr[10:20, 10:30] = 255
    else:
        arr = rng.integers(0, 255, (*SIZE, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_database(url: str, folder: Path) -> tuple[int, list[int], list[int]]:
    """Migrate ``url`` and add a project linked to Label Studio project ``LS_PROJECT`` with
    ``N_IMAGES`` images (files under ``folder``), each with a verdict task; returns the project
    id, the image ids and their task ids."""
    from backend.db.engine import make_engine, session_factory
    from backend.db.migrate import upgrade
    from backend.db.tables import Image, LsTask, Project, Split

    engine = make_engine(url)
    upgrade(engine)
    folder.mkdir(parents=True, exist_ok=True)
    with session_factory(engine).begin() as s:
        project = Project(name=f"bench-{uuid.uuid4().hex[:8]}", ls_project_id=LS_PROJECT)
        s.add(project)
        s.flush()
        images = []
        for i in range(N_IMAGES):
            path = folder / f"part_{i}.png"
            path.write_bytes(_png(i))
            img = Image(
                project_id=project.id,
                uri=str(path),
                sha256=uuid.uuid4().hex * 2,
                width=SIZE[1],
                height=SIZE[0],
                split=Split.POOL,
            )
            s.add(img)
            images.append(img)
        s.flush()
        tasks = [
            LsTask(
                project_id=project.id,
                image_id=im.id,
                ls_project_id=LS_PROJECT,
                ls_task_id=100_000 + im.id,
                ask="verdict",
            )
            for im in images
        ]
        s.add_all(tasks)
        s.flush()
        out = project.id, [im.id for im in images], [t.ls_task_id for t in tasks]
    engine.dispose()
    return out


@contextmanager
def serve(url: str, data_dir: Path, port: int) -> Iterator[str]:
    """`defectloop serve` (with its embedded worker) on ``url``; yields its base URL."""
    env = {
        **os.environ,
        "DEFECTLOOP_DATA_DIR": str(data_dir),
        "DEFECTLOOP_DATABASE_URL": url,
        "DEFECTLOOP_API_TOKEN": TOKEN,
        "DEFECTLOOP_WEBHOOK_SECRET": SECRET,
    }
    env.pop("DEFECTLOOP_REDIS_URL", None)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {(data_dir / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def webhook_request(base: str, ls_task: int, annotation_id: int, defective: bool) -> httpx.Request:
    """What Label Studio sends when an annotation is created."""
    from labelstudio.conversions import choice_result

    body = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": LS_PROJECT},
        "annotation": {
            "id": annotation_id,
            "task": ls_task,
            "project": LS_PROJECT,
            "result": [choice_result(defective)],
            "updated_at": "2026-12-01T10:00:00Z",
            "completed_by": 1,
            "lead_time": 3.0,
        },
    }
    return httpx.Request("POST", f"{base}/labelstudio/{SECRET}/webhook", json=body)


MIXES = ("mixed", "labels")


def run_load(
    base: str,
    project_id: int,
    image_ids: list[int],
    task_ids: list[int],
    *,
    clients: int,
    requests: int,
    database: str = "",
    mix: str = "mixed",
    timeout_s: float = 60.0,
) -> LoadReport:
    """``clients`` threads share ``requests`` requests: label PUT, upload and webhook in turn
    (``mix="mixed"``), or label PUTs only (``"labels"``)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    health: list[float] = []
    health_fail = [0]
    mask_png = _png(0, mask=True)
    run_tag = uuid.uuid4().int % 100_000  # annotation ids stay 32-bit, as Label Studio's are

    def one(client: httpx.Client, k: int) -> None:
        i = k % len(image_ids)
        kind = k % 3 if mix == "mixed" else 0
        t0 = time.perf_counter()
        try:
            if kind == 0:
                files = {"mask": ("m.png", mask_png, "image/png")} if k % 2 else None
                r = client.put(
                    f"{base}/projects/{project_id}/images/{image_ids[i]}/label",
                    data={"is_defective": "true" if files else "false", "annotator": "bench"},
                    files=files,
                    headers=auth,
                )
            elif kind == 1:
                r = client.post(
                    f"{base}/projects/{project_id}/images/upload",
                    files={"files": (f"u{run_tag}_{k}.png", _png(run_tag * 10_000 + k + 1000), "image/png")},
                    headers=auth,
                )
            else:
                r = client.send(webhook_request(base, task_ids[i], run_tag * 10_000 + k, bool(k % 2)))
            ok = r.status_code < 500 and r.status_code in (200, 201, 202)
            why = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            ok, why = False, f"{type(e).__name__}: {e}"
        dt = time.perf_counter() - t0
        with lock:
            latencies.append(dt)
            if not ok:
                errors.append(why)

    def client_loop(c: int) -> None:
        with httpx.Client(timeout=timeout_s) as client:
            for k in range(c, requests, clients):
                one(client, k)

    def poll_health() -> None:
        with httpx.Client(timeout=timeout_s) as client:
            while not done.is_set():
                t0 = time.perf_counter()
                try:
                    ok = client.get(f"{base}/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                health.append(time.perf_counter() - t0)
                health_fail[0] += not ok
                done.wait(0.2)

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done.set()
    poller.join()
    lat = sorted(latencies)
    return LoadReport(
        database=database,
        mix=mix,
        clients=clients,
        requests=len(lat),
        errors=len(errors),
        error_samples=tuple(errors[:5]),
        p50_s=round(statistics.median(lat), 4),
        p99_s=round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 4),
        max_s=round(lat[-1], 4),
        wall_s=round(wall, 2),
        health_checks=len(health),
        health_failures=health_fail[0],
        health_max_s=round(max(health, default=0.0), 4),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 8], help="client counts to run, in turn")
    parser.add_argument("--requests", type=int, default=240, help="requests per run (shared by its clients)")
    parser.add_argument(
        "--database",
        default=None,
        help="database URL (default: a new embedded SQLite file); a PostgreSQL URL gets a fresh schema",
    )
    parser.add_argument(
        "--mix",
        choices=MIXES,
        default="mixed",
        help="mixed: label PUTs, uploads and webhooks in turn; labels: label PUTs only",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds a request may take before it counts as an error"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the reports here")
    args = parser.parse_args()

    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url, cleanup = _database(args.database, folder)
        try:
            pid, images, tasks = prepare_database(url, folder / "images")
            with serve(url, folder / "data", free_port()) as base:
                for n in args.clients:
                    rep = run_load(
                        base,
                        pid,
                        images,
                        tasks,
                        clients=n,
                        requests=args.requests,
                        mix=args.mix,
                        timeout_s=args.timeout,
                        database="postgresql" if url.startswith("postgresql") else "sqlite",
                    )
                    reports.append(rep)
                    print(json.dumps(asdict(rep)), flush=True)
        finally:
            cleanup()
    base_p99 = next((r.p99_s for r in reports if r.clients == 1), None)
    print(
        f"{'db':<11}{'clients':>8}{'requests':>9}{'errors':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'p99/1 client':>13}{'health max ms':>14}{'health fails':>13}"
    )
    for r in reports:
        ratio = f"{r.p99_s / base_p99:.1f}x" if base_p99 else "-"
        print(
            f"{r.database:<11}{r.clients:>8}{r.requests:>9}{r.errors:>7}{r.p50_s * 1e3:>8.0f}{r.p99_s * 1e3:>8.0f}"
            f"{r.max_s * 1e3:>8.0f}{ratio:>13}{r.health_max_s * 1e3:>14.0f}{r.health_failures:>13}"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=1))


def _database(url: str | None, folder: Path):
    """The URL to use and a cleanup function (a PostgreSQL URL gets its own schema, dropped after)."""
    if not url:
        return f"sqlite:///{folder / 'data' / 'defectloop.db'}", lambda: None
    from sqlalchemy import text

    from backend.db.engine import make_engine

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{url}{sep}options=-csearch_path%3D{schema}", drop


if __name__ == "__main__":
    main()
