"""Sending a round's batch to Label Studio: defectloop's bulk push vs one request per task.

Starts a real Label Studio 1.23.2 (from the cached template, as the tests do), imports N
generated images into a fresh defectloop project with stored pool predictions (a third
of them defective, so their brush masks travel at full resolution), then times in one run:

- defectloop: ``push_batch`` for all N images (rank order, pre-annotated, one import request);
- the peer: the per-task way (``tasks.create`` + ``predictions.create`` for each image) on a
  sample of K images, reported per task and extrapolated to N.

    .venv/bin/python bench/labelstudio_push.py [--n 1000] [--peer-sample 100] [--size 256]

Writes docs/bench/labelstudio_push.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from platformdirs import user_cache_dir
from sqlalchemy import select


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="tasks to push")
    ap.add_argument("--peer-sample", type=int, default=100, help="tasks sent one by one for the comparison")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--out", type=Path, default=Path("docs/bench/labelstudio_push.json"))
    args = ap.parse_args()

    from backend.db.engine import make_engine, session_factory
    from backend.db.migrate import upgrade
    from backend.db.tables import Image, ModelVersion, Prediction, Project
    from backend.services.images import import_path
    from backend.services.labelstudio_link import push_batch
    from backend.settings import Settings
    from labelstudio import server
    from labelstudio.client import Studio
    from labelstudio.conversions import prediction_result

    cache = Path(user_cache_dir("defectloop"))
    venv = server.default_environment_dir(cache)
    server.ensure_environment(venv, say=print)
    template = server.prepare_template(cache / f"labelstudio-template-{server.VERSION}", venv=venv, say=print)
    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-"))
    root = tmp / "images"
    (root / "line").mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : args.size, 0 : args.size]
    for i in range(args.n + args.peer_sample):
        cv2.imwrite(str(root / "line" / f"{i:05d}.png"), (rng.random((args.size, args.size)) * 255).astype(np.uint8))
    info = server.start(tmp / "ls", document_root=root, venv=venv, template=template)
    creds = server.load_credentials(tmp / "ls")
    try:
        settings = Settings(
            data_dir=tmp / "data",
            labelstudio_url=info.url,
            labelstudio_token=creds.token,
            labelstudio_document_root=root,
            import_roots=[root],
            webhook_secret="bench",
        )
        engine = make_engine(settings.resolved_database_url())
        upgrade(engine)
        sessions = session_factory(engine)
        with sessions.begin() as s:
            project = Project(name="bench")
            s.add(project)
            s.flush()
            import_path(s, project=project, path=root / "line", roots=[root])
            mv = ModelVersion(
                project_id=project.id,
                name="v1-bench",
                regime="unsupervised",
                profile="fast",
                config={},
                artifact_path="-",
                artifact_sha256="0" * 64,
                thresholds={"image": 0.5, "pixel": 0.5},
                is_active=True,
            )
            s.add(mv)
            s.flush()
            ids = list(s.scalars(select(Image.id).where(Image.project_id == project.id).order_by(Image.id)))
            (tmp / "maps").mkdir()
            for k, image_id in enumerate(ids):
                cy, cx = rng.integers(40, args.size - 40, size=2)
                amap = np.exp(-(((yy - cy) / 30.0) ** 2 + ((xx - cx) / 30.0) ** 2))
                path = tmp / "maps" / f"{image_id}.png"
                cv2.imwrite(str(path), (amap * 255).astype(np.uint8))
                s.add(
                    Prediction(
                        model_version_id=mv.id,
                        image_id=image_id,
                        score=float(rng.random()),
                        decision=k % 3 == 0,
                        anomaly_map_path=str(path),
                    )
                )
            pid = project.id
        push_ids, peer_ids = ids[: args.n], ids[args.n :]

        with sessions.begin() as s:
            t0 = time.perf_counter()
            report = push_batch(s, settings, s.get(Project, pid), push_ids)
            t_bulk = time.perf_counter() - t0
        assert len(report.pushed) == args.n and report.with_prediction == args.n

        # the peer: one task and one prediction request per image, same proposals
        studio = Studio(info.url, creds.token)
        with sessions() as s:
            ls_pid = s.get(Project, pid).ls_project_id
            mv = s.scalars(select(ModelVersion).where(ModelVersion.project_id == pid)).one()
            rows = [
                (s.get(Image, i), s.scalars(select(Prediction).where(Prediction.image_id == i)).one()) for i in peer_ids
            ]
        from backend.services.labelstudio_link import stored_proposal

        t0 = time.perf_counter()
        for image, pred in rows:
            prop = stored_proposal(pred, mv, image)
            task = studio.sdk.tasks.create(
                project=ls_pid, data={"image": f"/data/local-files/?d=line/{Path(image.uri).name}"}
            )
            studio.sdk.predictions.create(
                task=task.id,
                result=prediction_result(prop.is_defective, prop.mask),
                score=prop.score,
                model_version=mv.name,
            )
        t_peer = time.perf_counter() - t0
    finally:
        server.stop(tmp / "ls")
    per_task_peer = t_peer / max(len(peer_ids), 1)
    result = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "label_studio": server.VERSION,
        "image_size": args.size,
        "tasks": args.n,
        "defective_share": 1 / 3,
        "defectloop_push_s": round(t_bulk, 2),
        "peer_sample": len(peer_ids),
        "peer_s_per_task": round(per_task_peer, 4),
        "peer_extrapolated_s": round(per_task_peer * args.n, 1),
        "speedup": round(per_task_peer * args.n / t_bulk, 1),
        "command": "python bench/labelstudio_push.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in (("n", args.n), ("peer_sample", args.peer_sample), ("size", args.size))
        ),
    }
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
