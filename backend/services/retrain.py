"""Retrain and pool scoring, as job handlers.

Train: freeze the current labels (the snapshot), derive the regime, train, evaluate on the
project's test split, then register an immutable ModelVersion and make it active, all in
one transaction after the artifact is safely on disk; then queue a predict job. Predict:
score the pool with the active ModelVersion (Prediction rows + anomaly-map PNGs).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from backend.db.batches import in_chunks
from backend.db.tables import Image, Job, JobKind, ModelVersion, Prediction, Project, Split
from backend.domain.jobs import PredictPayload, TrainPayload
from backend.jobs.queue import enqueue
from backend.jobs.runner import JobCancelled, JobContext
from backend.services.anomaly_maps import write_map
from backend.services.pool_candidates import resolve_pseudo_normals
from backend.services.predictions import encode_embedding
from backend.services.rounds import fail_round, finish_round
from backend.services.snapshot import take_snapshot
from ml import Dataset, Regime, TrainingError, file_sha256, read_image

STAGES = {
    "features": (0.0, 0.25),
    "train": (0.25, 0.9),
    "calibrate": (0.9, 0.93),
    "masks": (0.93, 0.95),
    "evaluate": (0.95, 1.0),
}
# a refined bootstrap trains twice: the first pass, scoring the pool, then the second pass
REFINED_STAGES = {
    "features": (0.0, 0.12),
    "train": (0.12, 0.42),
    "refine_score": (0.42, 0.47),
    "refine_features": (0.47, 0.57),
    "refine_train": (0.57, 0.9),
    **{k: v for k, v in STAGES.items() if k in ("calibrate", "masks", "evaluate")},
}
# a cross-fitted calibration trains the kept model, then one model per fold
CROSSFIT_STAGES = {
    "features": (0.0, 0.05),
    "train": (0.05, 0.22),
    "crossfit": (0.22, 0.9),
    **{k: v for k, v in STAGES.items() if k in ("calibrate", "masks", "evaluate")},
}


#: with a click head to teach, the stages before it share this part of the job; the head has the rest
#: up to choosing the mask method (which may choose the head)
BEFORE_CLICK_HEAD = 0.6


def job_fraction(
    stage: str, done: int, total: int, *, refined: bool = False, crossfit: bool = False, click_head: bool = False
) -> float:
    """Where a training stage's ``done`` of ``total`` puts the whole train job (0..1)."""
    stages = CROSSFIT_STAGES if crossfit else REFINED_STAGES if refined else STAGES
    if click_head:  # the stages up to calibration shrink; the head trains between them and the masks
        end = STAGES["masks"][0]
        squeeze = BEFORE_CLICK_HEAD / end
        stages = {k: (v if k in ("masks", "evaluate") else (v[0] * squeeze, v[1] * squeeze)) for k, v in stages.items()}
        stages["click_head"] = (BEFORE_CLICK_HEAD, end)
    lo, hi = stages.get(stage, (0.0, 1.0))
    return lo + (hi - lo) * done / max(total, 1)


def artifact_sha256(model_dir: Path) -> str:
    """One digest over a model directory's checksum file (which covers weights and config)."""
    return file_sha256(model_dir / "checksum.sha256")


def run_train_job(ctx: JobContext) -> dict:
    """Train, evaluate, register; a round this retrain closes is recorded, or marked failed."""
    payload = TrainPayload.model_validate(ctx.payload)
    round_id = payload.round_id
    try:
        return _train(ctx, payload)
    except BaseException as e:
        if round_id is not None:
            with ctx.sessions.begin() as s:
                fail_round(
                    s,
                    round_id=round_id,
                    message="cancelled" if isinstance(e, JobCancelled) else f"failed: {type(e).__name__}: {e}",
                )
        raise


def _train(ctx: JobContext, payload: TrainPayload) -> dict:
    from ml import (
        AUTO,
        CalibrationChoice,
        CalibrationSource,
        RegimeChoice,
        TrainConfig,
        calibration_plan,
        load_model,
        loop_regime,
        teaches_click_head,
        train_and_save,
    )
    from ml import evaluate_model as evaluate

    data_dir = ctx.settings.data_dir
    work = ctx.workdir  # removed when the job ends, or by the reaper when its worker dies
    with ctx.reads() as s:
        project = s.get_one(Project, ctx.project_id)
        pseudo_ids = payload.pseudo_normal_ids  # listed by jobs queued before pools were described
        if payload.pseudo_normal is not None:
            pseudo_ids = tuple(resolve_pseudo_normals(s, project_id=ctx.project_id, pool=payload.pseudo_normal))
        snapshot = take_snapshot(
            s,
            project_id=ctx.project_id,
            folder=work / "masks",
            label_ids=payload.label_ids,
            pseudo_normal_ids=pseudo_ids,
        )
        n_versions = s.scalar(select(func.count(ModelVersion.id)).where(ModelVersion.project_id == ctx.project_id)) or 0
        regime: RegimeChoice = payload.regime or AUTO
        min_defects = payload.min_defects_supervised
        regime_note = ""
        if regime == AUTO and min_defects is not None:
            labelled = snapshot.train + snapshot.val
            forced = loop_regime(labelled, min_defects)
            if forced is not None:
                regime = forced
                n_def = sum(1 for smp in labelled if smp.label == 1)
                regime_note = f"{n_def} labelled defects, supervised from {min_defects}"
        cfg = TrainConfig(
            backbone=project.backbone,
            image_size=(project.image_height, project.image_width),
            profile=project.profile,
            device=ctx.settings.device,
            seed=payload.seed,
            regime=regime,
            epochs=project.train_defaults.epochs,
            perlin_threshold=project.train_defaults.perlin_threshold,
            calibration=(project.train_defaults.calibration or CalibrationChoice.AUTO).value,
            click_head_steps=ctx.settings.click_head_steps
            if project.train_defaults.click_head_steps is None
            else project.train_defaults.click_head_steps,
            click_head_min_masks=TrainConfig.click_head_min_masks
            if project.train_defaults.click_head_min_masks is None
            else project.train_defaults.click_head_min_masks,
        )
    if not snapshot.train:
        raise TrainingError("no labelled images in the train split yet: label some, then retrain")
    name = f"v{n_versions + 1}-job{ctx.job_id}"
    final_dir = data_dir / "models" / str(ctx.project_id) / name

    refine = payload.refine_keep
    round_id = payload.round_id
    # what trains once a holdout is taken out: its masks decide whether a click head is taught
    trains_on, _, source = calibration_plan(list(snapshot.train), list(snapshot.val), cfg)
    crossfits = source is CalibrationSource.CROSSFIT
    heads = teaches_click_head(trains_on, cfg)

    def progress(stage: str, done: int, total: int, info: dict) -> None:
        msg = f"{stage.replace('_', ' ')} {done}/{total}"
        if "loss" in info:
            msg += f", loss {info['loss']:.4f}, ETA {info.get('eta_s', 0):.0f} s"
        ctx.progress(job_fraction(stage, done, total, refined=bool(refine), crossfit=crossfits, click_head=heads), msg)
        ctx.check_cancel()

    ds = Dataset(root=work, samples=tuple(snapshot.train + snapshot.val), source=f"project {ctx.project_id} snapshot")
    try:
        summary = train_and_save(
            ds,
            work / "model",
            cfg,
            progress=progress,
            should_stop=ctx.should_stop,
            refine_keep=refine or None,
        )
    except TrainingError:
        if ctx.should_stop():
            raise JobCancelled() from None
        raise
    try:
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / "model", final_dir)  # complete or absent: never a half-written model folder
        if snapshot.test:
            loaded = load_model(final_dir, device=ctx.settings.device)
            metrics = evaluate(loaded.predictor, snapshot.test, progress=lambda d, t: progress("evaluate", d, t, {}))
        else:
            metrics = {"note": "no test split: nothing evaluated (metrics on training data would mislead)"}
        ctx.check_cancel()
        with ctx.sessions.begin() as s:
            mv = register_model_version(
                s,
                project_id=ctx.project_id,
                name=name,
                model_dir=final_dir,
                regime=summary.trained.regime,
                profile=cfg.profile,
                thresholds=summary.thresholds.to_json(),
                metrics=metrics,
                label_ids=snapshot.label_ids,
            )
            if round_id is not None:
                kept = summary.trained.n_train.get("normal") if refine else None  # the pool share refinement kept
                finish_round(s, round_id=round_id, mv=mv, pseudo_normal=kept, note=regime_note)
            enqueue_pool_scoring(s, project_id=ctx.project_id, model_version_id=mv.id)  # announced on commit
            mv_id = mv.id
    except BaseException:
        shutil.rmtree(final_dir, ignore_errors=True)  # never leave an unregistered artifact behind
        raise
    ctx.progress(1.0, "registered", force=True)
    return {
        "model_version_id": mv_id,
        "regime": summary.trained.regime.value,
        "metrics": metrics,
        "n_labels": len(snapshot.label_ids),
        "round_id": round_id,
    }


POOL_CHUNK = 500


def pool_id_chunks(session: Session, *, project_id: int, chunk: int = POOL_CHUNK) -> Iterator[list[int]]:
    """The project's pool image ids in ascending order, ``chunk`` at a time, each chunk read by
    keyset (ids after the previous chunk's last), so no list of the whole pool is ever held."""
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    last = 0
    while True:
        ids = list(
            session.scalars(
                select(Image.id)
                .where(Image.project_id == project_id, Image.split == Split.POOL, Image.id > last)
                .order_by(Image.id)
                .limit(chunk)
            )
        )
        if not ids:
            return
        yield ids
        if len(ids) < chunk:
            return
        last = ids[-1]


def enqueue_pool_scoring(
    session: Session, *, project_id: int, model_version_id: int, chunk: int = POOL_CHUNK
) -> list[int]:
    """One predict job per ``chunk`` pool images (ascending ids; one job with no ids for an
    empty pool), so several workers can share a large pool; the pool is read a chunk at a time."""

    def job(ids: list[int]) -> Job:
        payload = PredictPayload(model_version_id=model_version_id, image_ids=tuple(ids))
        return enqueue(session, kind=JobKind.PREDICT, project_id=project_id, payload=payload)

    jobs = [job(ids) for ids in pool_id_chunks(session, project_id=project_id, chunk=chunk)] or [job([])]
    session.flush()
    return [j.id for j in jobs]


def register_model_version(
    session: Session,
    *,
    project_id: int,
    name: str,
    model_dir: Path,
    regime: Regime,
    profile: str,
    thresholds: dict,
    metrics: dict,
    label_ids: list[int],
) -> ModelVersion:
    """Insert the immutable ModelVersion and make it the project's only active one."""
    import json

    config = json.loads((model_dir / "config.json").read_text())
    config.pop("training_set", None)  # the label snapshot is kept as label_ids; image list stays in the artifact
    session.execute(update(ModelVersion).where(ModelVersion.project_id == project_id).values(is_active=False))
    mv = ModelVersion(
        project_id=project_id,
        name=name,
        regime=regime,
        profile=profile,
        config=config,
        artifact_path=str(model_dir),
        artifact_sha256=artifact_sha256(model_dir),
        thresholds=thresholds,
        metrics=metrics,
        label_ids=label_ids,
        is_active=True,
    )
    session.add(mv)
    session.flush()
    return mv


def run_predict_job(ctx: JobContext) -> dict:
    """Score every pool image with the ModelVersion named in the payload (or the active one)."""
    from ml import load_model

    with ctx.reads() as s:
        payload = PredictPayload.model_validate(ctx.payload)
        mv_id = payload.model_version_id
        mv = (
            s.get(ModelVersion, mv_id)
            if mv_id
            else s.scalars(
                select(ModelVersion).where(ModelVersion.project_id == ctx.project_id, ModelVersion.is_active)
            ).first()
        )
        if mv is None:
            raise TrainingError("no model version to predict with: retrain first")
        if payload.image_ids is not None:
            pool = list(payload.image_ids)
            uris = {
                image_id: uri
                for part in in_chunks(pool)
                for image_id, uri in s.execute(select(Image.id, Image.uri).where(Image.id.in_(part)))
            }
        else:  # the whole pool: one query, no list of ids bound into it
            uris = dict(
                s.execute(
                    select(Image.id, Image.uri)
                    .where(Image.project_id == ctx.project_id, Image.split == Split.POOL)
                    .order_by(Image.id)
                ).all()
            )
            pool = list(uris)
        mv_id, artifact = mv.id, Path(mv.artifact_path)
    if artifact_sha256(artifact) != mv.artifact_sha256:
        raise TrainingError(f"model version {mv_id}: artifact {artifact} changed on disk since registration")
    predictor = load_model(artifact, device=ctx.settings.device).predictor
    done = failed = 0
    batch = 8
    for start in range(0, len(pool), batch):
        ids = pool[start : start + batch]
        images, ok_ids = [], []
        for i in ids:
            try:
                images.append(read_image(Path(uris[i])))
                ok_ids.append(i)
            except Exception:  # noqa: BLE001 - a vanished file is counted, not fatal
                failed += 1
        preds = predictor.predict(images, refine=False) if images else []
        rows = []
        for i, p in zip(ok_ids, preds, strict=True):
            stored = write_map(ctx.settings.data_dir, mv_id, i, p.pred_map)
            rows.append(
                Prediction(
                    model_version_id=mv_id,
                    image_id=i,
                    score=p.score,
                    decision=p.decision,
                    uncertainty=dict(p.uncertainty),
                    embedding=encode_embedding(p.embedding),
                    anomaly_map_path=str(stored.path),
                    anomaly_map_sha256=stored.sha256,
                )
            )
        with ctx.sessions.begin() as s:
            s.execute(delete(Prediction).where(Prediction.model_version_id == mv_id, Prediction.image_id.in_(ok_ids)))
            s.add_all(rows)
        done += len(rows)
        ctx.progress(min(start + batch, len(pool)) / max(len(pool), 1), f"scored {done}/{len(pool)} pool images")
        ctx.check_cancel()
    return {"model_version_id": mv_id, "scored": done, "unreadable": failed}
