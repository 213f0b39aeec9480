"""The paths a large pool runs through, on a small one: the selection's candidates read as
columns (not rows), pseudo-normals, and image pages after the last id; each must give what
the straightforward computation from the stored values gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.api.app import create_app
from backend.db.engine import session_factory
from backend.db.tables import Image, ModelVersion, Prediction, Project, Split
from backend.services.labels import LabelIn, add_label
from backend.services.pool_candidates import candidates, pseudo_normals
from backend.services.predictions import encode_embedding
from backend.services.projects import create_project
from backend.services.rounds import STRATEGY_NAMES, start_round
from backend.settings import Settings
from ml import AskPolicy, Candidates, Costs
from ml import select as acquire

N_POOL = 40
CHANNELS = 6
TOKEN = "volume"


def _scored_pool(s: Session, rng: np.random.Generator) -> tuple[Project, ModelVersion, dict[str, np.ndarray]]:
    """A project with N_POOL pool images (and a few test images), an active model version that
    scored the pool, and labels on some pool images: a normal, a defect without a mask, a
    defect with one. Returns what was stored, in pool (id) order."""
    project = create_project(s, name="volume")
    images = [
        Image(project_id=project.id, uri=f"/x/{i}.png", sha256=f"{i:064x}", width=8, height=8, split=Split.POOL)
        for i in range(N_POOL)
    ]
    images += [
        Image(project_id=project.id, uri=f"/t/{i}.png", sha256=f"{i + 1000:064x}", width=8, height=8, split=Split.TEST)
        for i in range(3)
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
        thresholds={"image": 0.5, "pixel": 0.6},
        is_active=True,
    )
    s.add(mv)
    s.flush()
    stored: dict[str, np.ndarray] = {
        "scores": rng.random(N_POOL),
        "map_max": rng.random(N_POOL),
        "map_entropy": rng.random(N_POOL),
        "embeddings": rng.normal(size=(N_POOL, CHANNELS)).astype(np.float32),
    }
    for k, img in enumerate(images[:N_POOL]):
        s.add(
            Prediction(
                model_version_id=mv.id,
                image_id=img.id,
                score=float(stored["scores"][k]),
                decision=bool(stored["scores"][k] >= 0.5),
                uncertainty={
                    "map_max": float(stored["map_max"][k]),
                    "map_region_entropy": float(stored["map_entropy"][k]),
                },
                embedding=encode_embedding(stored["embeddings"][k]),
            )
        )
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    add_label(s, image=images[3], label=LabelIn(is_defective=False))
    add_label(s, image=images[7], label=LabelIn(is_defective=True))  # a verdict: its mask may be asked
    add_label(s, image=images[11], label=LabelIn(is_defective=True, mask=mask))
    s.flush()
    stored["ids"] = np.array([img.id for img in images[:N_POOL]], np.int64)
    return project, mv, stored


def _expected(stored: dict[str, np.ndarray]) -> Candidates:
    """The candidates straight from the stored values."""
    labelled = np.zeros(N_POOL, bool)
    labelled[[3, 11]] = True
    upgradable = np.zeros(N_POOL, bool)
    upgradable[7] = True
    return Candidates(
        ids=stored["ids"],
        scores=stored["scores"],
        map_max=stored["map_max"],
        map_entropy=stored["map_entropy"],
        embeddings=stored["embeddings"],
        labelled=labelled,
        upgradable=upgradable,
        image_threshold=0.5,
        pixel_threshold=0.6,
        labelled_embeddings=stored["embeddings"][labelled | upgradable],
    )


def test_candidates_and_every_strategy_select_what_the_stored_values_give(migrated: Engine) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project, mv, stored = _scored_pool(s, np.random.default_rng(0))
        pid, mv_id = project.id, mv.id
    expected = _expected(stored)
    with sessions() as s:
        got = candidates(s, project_id=pid, mv=s.get_one(ModelVersion, mv_id))
    for name in (
        "ids",
        "scores",
        "map_max",
        "map_entropy",
        "embeddings",
        "labelled",
        "upgradable",
        "labelled_embeddings",
    ):
        assert np.allclose(getattr(got, name), getattr(expected, name)), name
    assert (got.image_threshold, got.pixel_threshold) == (0.5, 0.6)
    settings = Settings(api_token=TOKEN)
    for strategy in STRATEGY_NAMES:
        with sessions() as s:
            project = s.get_one(Project, pid)
            rnd = start_round(
                s, settings, project=project, budget=12, strategy=strategy, ask=AskPolicy.AUTO, push=False
            )
            asks = list(rnd.params.asks)
            costs, mask_share = Costs(project.cost_image_label, project.cost_mask_label), project.mask_share
            s.rollback()
        direct = acquire(
            expected,
            strategy=strategy,
            budget=12,
            costs=costs,
            mask_share=mask_share,
            ask=AskPolicy.AUTO,
            seed=0,
        )
        assert asks == [(a.image_id, a.kind) for a in direct], strategy


def test_pseudo_normals_are_the_lowest_scored_unlabelled_pool_images(migrated: Engine) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        project, _, stored = _scored_pool(s, np.random.default_rng(1))
        pid = project.id
    unlabelled = [k for k in range(N_POOL) if k not in (3, 7, 11)]
    lowest = sorted(unlabelled, key=lambda k: stored["scores"][k])[: int(0.5 * len(unlabelled))]
    with sessions() as s:
        assert pseudo_normals(s, project=s.get_one(Project, pid)) == sorted(int(stored["ids"][k]) for k in lowest)


@pytest.mark.parametrize("split", [None, "pool"])
def test_pages_after_the_last_id_list_what_offset_pages_list(
    migrated: Engine, tmp_path: Path, split: str | None
) -> None:
    sessions = session_factory(migrated)
    with sessions.begin() as s:
        pid = _scored_pool(s, np.random.default_rng(2))[0].id
        other = create_project(s, name="other")  # its images interleave with the project's ids
        s.add_all(
            Image(project_id=other.id, uri=f"/o/{i}.png", sha256=f"{i:064x}", width=8, height=8) for i in range(5)
        )
        later = [
            Image(project_id=pid, uri=f"/y/{i}.png", sha256=f"{i + 2000:064x}", width=8, height=8) for i in range(4)
        ]
        s.add_all(later)  # ids above the other project's
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data", api_token=TOKEN), engine=migrated))
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    only = {"split": split} if split else {}
    everything = client.get(f"/projects/{pid}/images", params={"limit": 1000, **only}).json()
    assert len(everything) == (N_POOL + 4 + (3 if split is None else 0))
    by_offset: list[dict] = []
    by_id: list[dict] = []
    last = 0
    while page := client.get(f"/projects/{pid}/images", params={"limit": 7, "offset": len(by_offset), **only}).json():
        by_offset += page
    while page := client.get(f"/projects/{pid}/images", params={"limit": 7, "after_id": last, **only}).json():
        by_id += page
        last = page[-1]["id"]
    assert by_id == by_offset == everything
    assert client.get(f"/projects/{pid}/images", params={"after_id": -1}).status_code == 422
