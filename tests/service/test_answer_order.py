"""An image answered twice in Label Studio (a verdict, then the mask asked for later): its
current label is the most recent answer by Label Studio's timestamps, whatever order the
webhooks arrive in; deleting one answer leaves the other current (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sqlalchemy import Engine

from backend.db.engine import session_factory
from backend.db.tables import Image, LsTask, Project, Split
from backend.services.labels import LabelIn, add_label, current_label, label_history
from backend.services.labelstudio_link import handle_webhook
from labelstudio.conversions import brush_result, choice_result

LS = 77
H, W = 24, 32
MASK = np.zeros((H, W), bool)
MASK[5:12, 8:20] = True


@pytest.fixture
def image(migrated: Engine) -> tuple[int, int, int]:
    """An image with a verdict task (900) and a mask task (901); returns (image id, 900, 901)."""
    with session_factory(migrated).begin() as s:
        project = Project(name="line", ls_project_id=LS)
        s.add(project)
        s.flush()
        img = Image(project_id=project.id, uri="/nowhere.png", sha256="a" * 64, width=W, height=H, split=Split.POOL)
        s.add(img)
        s.flush()
        s.add_all(
            [
                LsTask(project_id=project.id, image_id=img.id, ls_project_id=LS, ls_task_id=900, ask="verdict"),
                LsTask(project_id=project.id, image_id=img.id, ls_project_id=LS, ls_task_id=901, ask="mask"),
            ]
        )
        return img.id, 900, 901


def _created(annotation: int, task: int, updated: str, result: list) -> dict:
    return {
        "action": "ANNOTATION_CREATED",
        "project": {"id": LS},
        "annotation": {"id": annotation, "task": task, "project": LS, "result": result, "updated_at": updated},
    }


def _deleted(annotation: int) -> dict:
    return {"action": "ANNOTATIONS_DELETED", "project": {"id": LS}, "annotations": [{"id": annotation}]}


VERDICT = _created(501, 900, "2026-12-01T09:00:00Z", [choice_result(True)])  # the older answer
MASK_ANSWER = _created(502, 901, "2026-12-01T09:30:00Z", [choice_result(True), brush_result(MASK)])


def _deliver(engine: Engine, *bodies: dict) -> None:
    for body in bodies:
        with session_factory(engine).begin() as s:
            handle_webhook(s, body)


def _current(engine: Engine, image_id: int):
    with session_factory(engine)() as s:
        return current_label(s, image_id=image_id)


@pytest.mark.parametrize("order", list(itertools.permutations([VERDICT, MASK_ANSWER])), ids=["in-order", "reordered"])
def test_the_mask_answer_stays_current_whatever_the_webhook_order(migrated: Engine, image, order) -> None:
    image_id, _, _ = image
    _deliver(migrated, *order)
    cur = _current(migrated, image_id)
    assert cur.ls_annotation_id == 502 and cur.mask_png is not None
    _deliver(migrated, *order)  # replays change nothing
    assert _current(migrated, image_id).id == cur.id


def test_deleting_the_newer_answer_leaves_the_older_current(migrated: Engine, image) -> None:
    image_id, _, _ = image
    _deliver(migrated, MASK_ANSWER, VERDICT, _deleted(502))
    cur = _current(migrated, image_id)
    assert cur is not None and cur.ls_annotation_id == 501 and cur.is_defective and cur.mask_png is None
    _deliver(migrated, _deleted(501))
    assert _current(migrated, image_id) is None
    with session_factory(migrated)() as s:  # nothing was destroyed
        assert {r.ls_annotation_id for r in label_history(s, image_id=image_id)} >= {501, 502}


def test_deleting_the_older_answer_keeps_the_newer(migrated: Engine, image) -> None:
    image_id, _, _ = image
    _deliver(migrated, VERDICT, MASK_ANSWER, _deleted(501))
    assert _current(migrated, image_id).ls_annotation_id == 502


def test_a_label_from_the_api_counts_by_when_it_was_given(migrated: Engine, image) -> None:
    image_id, _, _ = image
    with session_factory(migrated).begin() as s:  # given now: later than both Label Studio answers
        add_label(s, image=s.get(Image, image_id), label=LabelIn(is_defective=False, annotator="api"))
    _deliver(migrated, MASK_ANSWER, VERDICT)
    cur = _current(migrated, image_id)
    assert cur.annotator == "api" and cur.is_defective is False
