"""A retrain's pseudo-normal pool at a line's volume: described by a query in the job instead of
listed, resolved to exactly the images the listed pool named (frozen when requested), and read
in bounded chunks, so a pool past every driver's limit on bound parameters still trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from backend.db import batches
from backend.db.engine import session_factory
from backend.db.tables import Image, Job, Label, LabelSource, ModelVersion, Prediction, Project, Split
from backend.domain.jobs import PoolRule, PredictPayload, PseudoNormalPool, TrainPayload
from backend.services.labels import LabelIn, add_label, current_labels
from backend.services.pool_candidates import (
    count_pseudo_normals,
    pseudo_normals_query,
    resolve_pseudo_normals,
    unlabelled_pool_query,
)
from backend.services.projects import create_project
from backend.services.retrain import enqueue_pool_scoring, pool_id_chunks
from backend.services.rounds import bootstrap
from backend.services.snapshot import freeze_label_ids, take_snapshot
from backend.settings import Settings
from ml import PSEUDO_COLUMN

N_SMALL = 30


def _listed_unlabelled(s: Session, project_id: int) -> list[int]:
    """The unlabelled pool as the listed payload computed it: every pool image without a
    current label, in id order."""
    labelled = {lb.image_id for lb in current_labels(s, project_id=project_id)}
    pool = s.scalars(select(Image.id).where(Image.project_id == project_id, Image.split == Split.POOL))
    return sorted(i for i in pool if i not in labelled)


def _listed_lowest(s: Session, project_id: int, mv_id: int, fraction: float) -> list[int]:
    """The pseudo-normals as the listed payload computed them: the lowest-scored share of the
    unlabelled pool (ties by id)."""
    pool = set(_listed_unlabelled(s, project_id))
    scored = sorted(
        (score, image_id)
        for score, image_id in s.execute(
            select(Prediction.score, Prediction.image_id).where(Prediction.model_version_id == mv_id)
        )
        if image_id in pool
    )
    return sorted(i for _, i in scored[: int(fraction * len(pool))])


def _small_project(s: Session, rng: np.random.Generator) -> tuple[Project, ModelVersion, list[Image]]:
    """A pool of N_SMALL images (scores with ties), test images, an active model version, and
    labels: a normal, a defect, a retracted one and a relabelled one."""
    project = create_project(s, name="scale")
    images = [
        Image(project_id=project.id, uri=f"/p/{i}.png", sha256=f"{i:064x}", width=8, height=8, split=Split.POOL)
        for i in range(N_SMALL)
    ] + [
        Image(project_id=project.id, uri=f"/t/{i}.png", sha256=f"{i + 500:064x}", width=8, height=8, split=Split.TEST)
        for i in range(4)
    ]
    s.add_all(images)
    s.flush()
    mv = ModelVersion(
        project_id=project.id,
        name="v1",
        regime="unsupervised",
        profile="fast",
        config={},
        artifact_path="-",
        artifact_sha256="0" * 64,
        thresholds={"image": 0.5},
        is_active=True,
    )
    s.add(mv)
    s.flush()
    scores = np.round(rng.random(N_SMALL), 1)  # ties: the id decides among equal scores
    s.add_all(
        Prediction(model_version_id=mv.id, image_id=img.id, score=float(sc), decision=bool(sc > 0.5))
        for img, sc in zip(images[:N_SMALL], scores, strict=True)
    )
    add_label(s, image=images[2], label=LabelIn(is_defective=False))
    add_label(s, image=images[5], label=LabelIn(is_defective=True))
    add_label(s, image=images[8], label=LabelIn(is_defective=True))
    add_label(s, image=images[8], label=LabelIn(is_defective=None, retracted=True))  # unlabelled again
    add_label(s, image=images[9], label=LabelIn(is_defective=None, retracted=True))
    add_label(s, image=images[9], label=LabelIn(is_defective=False))  # labelled again
    for img in images[N_SMALL:]:
        add_label(s, image=img, label=LabelIn(is_defective=False, source=LabelSource.IMPORT))
    s.flush()
    return project, mv, images


def _later_changes(s: Session, project: Project, images: list[Image]) -> None:
    """What happens while the job waits: new pool images, a new answer, a retraction."""
    s.add_all(
        Image(project_id=project.id, uri=f"/n/{i}.png", sha256=f"{i + 900:064x}", width=8, height=8, split=Split.POOL)
        for i in range(3)
    )
    add_label(s, image=images[0], label=LabelIn(is_defective=True))
    add_label(s, image=images[2], label=LabelIn(is_defective=None, retracted=True))
    s.flush()


def test_a_described_pool_resolves_to_the_listed_pool_as_it_was_requested(migrated: Engine, tmp_path: Path) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project, mv, images = _small_project(s, np.random.default_rng(0))
        pid, mv_id = project.id, mv.id
        listed_all = _listed_unlabelled(s, pid)
        listed_low = _listed_lowest(s, pid, mv_id, 0.5)
        everything = unlabelled_pool_query(s, project_id=pid)
        lowest = pseudo_normals_query(s, project=project)
        assert lowest is not None and lowest.rule is PoolRule.LOWEST_SCORED and lowest.model_version_id == mv_id
        assert resolve_pseudo_normals(s, project_id=pid, pool=everything) == listed_all
        assert resolve_pseudo_normals(s, project_id=pid, pool=lowest) == listed_low
        assert count_pseudo_normals(s, project_id=pid, pool=everything) == len(listed_all) == N_SMALL - 3
        assert count_pseudo_normals(s, project_id=pid, pool=lowest) == len(listed_low) == (N_SMALL - 3) // 2
        frozen = freeze_label_ids(s, project_id=pid)
        before = take_snapshot(s, project_id=pid, folder=tmp_path / "a", label_ids=frozen, pseudo_normal_ids=listed_low)
        _later_changes(s, project, images)
        assert _listed_unlabelled(s, pid) != listed_all  # the pool moved on...
    with sessions() as s:  # ...but the description still names the pool as it was requested
        assert resolve_pseudo_normals(s, project_id=pid, pool=everything) == listed_all
        assert resolve_pseudo_normals(s, project_id=pid, pool=lowest) == listed_low
        after = take_snapshot(
            s,
            project_id=pid,
            folder=tmp_path / "b",
            label_ids=frozen,
            pseudo_normal_ids=resolve_pseudo_normals(s, project_id=pid, pool=lowest),
        )
        assert [smp.row for smp in after.train] == [smp.row for smp in before.train]
        assert [smp.extra for smp in after.train] == [smp.extra for smp in before.train]
        assert [smp.row for smp in after.test] == [smp.row for smp in before.test]


def _bulk_pool(s: Session, project_id: int, n: int, *, split: Split = Split.POOL, offset: int = 0) -> None:
    rows = [
        {
            "project_id": project_id,
            "uri": f"/big/{offset + i}.png",
            "sha256": f"{offset + i:064x}",
            "width": 8,
            "height": 8,
            "split": split,
        }
        for i in range(n)
    ]
    s.execute(insert(Image), rows)


#: More pool images than PostgreSQL's protocol allows bound parameters in one statement (65,535).
N_LARGE = 70_000


def test_a_pool_beyond_the_parameter_limit_bootstraps_and_snapshots(migrated: Engine, tmp_path: Path) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project = create_project(s, name="big")
        pid = project.id
        _bulk_pool(s, pid, N_LARGE)
        _bulk_pool(s, pid, batches.IN_CHUNK + 5, split=Split.TEST, offset=N_LARGE)  # labels past one IN chunk too
        test_ids = list(s.scalars(select(Image.id).where(Image.project_id == pid, Image.split == Split.TEST)))
        s.execute(
            insert(Label), [{"image_id": i, "is_defective": False, "source": LabelSource.IMPORT} for i in test_ids]
        )
        first = s.scalars(select(Image).where(Image.project_id == pid, Image.split == Split.POOL).limit(2)).all()
        add_label(s, image=first[1], label=LabelIn(is_defective=True))
    with sessions.begin() as s:
        rnd, job = bootstrap(s, Settings(api_token="scale"), project=s.get_one(Project, pid))
        job_id, round_pool = job.id, rnd.params.pseudo_normal
    assert round_pool == N_LARGE - 1
    with sessions() as s:
        stored = s.get_one(Job, job_id).payload
        assert len(json.dumps({k: v for k, v in stored.items() if k != "label_ids"})) < 400  # a few numbers
        payload = TrainPayload.model_validate(stored)
        assert payload.pseudo_normal_ids is None and payload.pseudo_normal is not None
        ids = resolve_pseudo_normals(s, project_id=pid, pool=payload.pseudo_normal)
        assert ids == _listed_unlabelled(s, pid) and len(ids) == N_LARGE - 1
        snap = take_snapshot(
            s, project_id=pid, folder=tmp_path / "big", label_ids=payload.label_ids, pseudo_normal_ids=ids
        )
    assert len(snap.test) == batches.IN_CHUNK + 5 and [smp.row for smp in snap.test] == sorted(test_ids)
    assert [smp.row for smp in snap.train] == [first[1].id, *ids]  # the labelled defect, then the pool
    assert all(dict(smp.extra).get(PSEUDO_COLUMN) == "normal" for smp in snap.train[1:])


def test_in_chunks_covers_every_id_in_order() -> None:
    ids = list(range(25))
    assert [list(c) for c in batches.in_chunks(ids, 10)] == [ids[:10], ids[10:20], ids[20:]]
    assert list(batches.in_chunks([], 10)) == []


def test_a_lowest_scored_pool_names_its_model_version_and_share() -> None:
    with pytest.raises(ValueError, match="fraction"):
        PseudoNormalPool(rule=PoolRule.LOWEST_SCORED, max_image_id=1, max_label_id=0, fraction=1.5)


def _old_chunks(s: Session, project_id: int, chunk: int) -> list[list[int]]:
    """Pool scoring's chunks as they were made from one list of every pool id."""
    pool = list(s.scalars(select(Image.id).where(Image.project_id == project_id, Image.split == Split.POOL)))
    pool.sort()
    return [pool[i : i + chunk] for i in range(0, len(pool), chunk)] or [[]]


@pytest.mark.parametrize("chunk", [1, 4, 5, 7, 500])
def test_pool_scoring_pages_the_pool_into_the_chunks_one_list_gave(migrated: Engine, chunk: int) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project, other = create_project(s, name="paged"), create_project(s, name="other")
        for k in range(4):  # pool ids interleaved with test images and another project's pool
            _bulk_pool(s, project.id, 5, offset=100 * k)
            _bulk_pool(s, project.id, 2, split=Split.TEST, offset=100 * k + 50)
            _bulk_pool(s, other.id, 3, offset=100 * k + 60)
        mv = _model_version(s, project.id)
        expected = _old_chunks(s, project.id, chunk)
        job_ids = enqueue_pool_scoring(s, project_id=project.id, model_version_id=mv.id, chunk=chunk)
    with sessions() as s:
        payloads = [PredictPayload.model_validate(s.get_one(Job, j).payload) for j in job_ids]
    assert [list(p.image_ids) for p in payloads] == expected
    assert sum(map(len, expected)) == 20 and {p.model_version_id for p in payloads} == {mv.id}


def test_an_empty_pool_still_gets_its_one_scoring_job(migrated: Engine) -> None:
    with session_factory(migrated).begin() as s:
        project = create_project(s, name="empty")
        _bulk_pool(s, project.id, 3, split=Split.TEST)
        mv = _model_version(s, project.id)
        (job_id,) = enqueue_pool_scoring(s, project_id=project.id, model_version_id=mv.id, chunk=2)
        assert PredictPayload.model_validate(s.get_one(Job, job_id).payload).image_ids == ()
        with pytest.raises(ValueError, match="chunk"):
            next(pool_id_chunks(s, project_id=project.id, chunk=0))


def _model_version(s: Session, project_id: int) -> ModelVersion:
    mv = ModelVersion(
        project_id=project_id,
        name="v1",
        regime="unsupervised",
        profile="fast",
        config={},
        artifact_path="-",
        artifact_sha256="0" * 64,
        thresholds={"image": 0.5},
        is_active=True,
    )
    s.add(mv)
    s.flush()
    return mv
