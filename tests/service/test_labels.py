import threading

import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from backend.db.engine import session_factory
from backend.db.tables import Image, Label, Project
from backend.services.labels import (
    LabelError,
    LabelIn,
    add_label,
    current_label,
    current_labels,
    decode_mask,
    label_history,
)


def _image(session, name: str = "p") -> Image:
    project = Project(name=name)
    session.add(project)
    session.flush()
    img = Image(project_id=project.id, uri="a.png", sha256="0" * 64, width=5, height=4)
    session.add(img)
    session.flush()
    return img


def test_three_answers_are_kept_and_the_newest_is_current(migrated: Engine) -> None:
    Session = session_factory(migrated)
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    with Session.begin() as s:
        img = _image(s)
        add_label(s, image=img, label=LabelIn(is_defective=False))
        add_label(s, image=img, label=LabelIn(is_defective=True))
        add_label(s, image=img, label=LabelIn(is_defective=True, mask=mask, annotator="ann", lead_time=12.5))
    with Session() as s:
        history = label_history(s, image_id=img.id)
        assert [h.is_defective for h in history] == [False, True, True]
        cur = current_label(s, image_id=img.id)
        assert cur.id == history[-1].id and cur.annotator == "ann" and cur.lead_time == 12.5
        assert np.array_equal(decode_mask(cur.mask_png), mask)  # lossless
        assert [c.id for c in current_labels(s, project_id=img.project_id)] == [cur.id]


def test_retraction_supersedes_but_keeps_history(migrated: Engine) -> None:
    Session = session_factory(migrated)
    with Session.begin() as s:
        img = _image(s)
        add_label(s, image=img, label=LabelIn(is_defective=True))
        add_label(s, image=img, label=LabelIn(is_defective=None, retracted=True))
    with Session() as s:
        assert current_label(s, image_id=img.id) is None
        assert len(label_history(s, image_id=img.id)) == 2


def test_bad_labels_name_the_field_and_store_nothing(migrated: Engine) -> None:
    Session = session_factory(migrated)
    with Session.begin() as s:
        img = _image(s)
    with Session() as s:
        img = s.get(Image, img.id)
        with pytest.raises(LabelError, match="mask: size 3x3 differs"):
            add_label(s, image=img, label=LabelIn(is_defective=True, mask=np.zeros((3, 3), bool)))
        with pytest.raises(LabelError, match="is_defective"):
            add_label(s, image=img, label=LabelIn(is_defective=None))
        s.rollback()
        assert s.scalar(select(func.count(Label.id))) == 0


def test_parallel_label_writes_lose_nothing(migrated: Engine) -> None:
    Session = session_factory(migrated)
    with Session.begin() as s:
        img_id = _image(s).id
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(10):
                with Session.begin() as s:
                    img = s.get(Image, img_id)
                    add_label(s, image=img, label=LabelIn(is_defective=bool(i % 2), annotator=f"w{k}"))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with Session() as s:
        assert s.scalar(select(func.count(Label.id))) == 40
        assert {h.annotator for h in label_history(s, image_id=img_id)} == {"w0", "w1", "w2", "w3"}


def test_mask_provenance_says_how_an_answer_relates_to_its_proposal() -> None:
    from backend.db.tables import MaskOrigin
    from backend.services.labels import mask_provenance

    proposal = np.zeros((20, 30), bool)
    proposal[5:15, 5:15] = True
    same = mask_provenance(proposal.copy(), proposal)
    assert (same.origin, same.proposal_iou, same.edit) == (MaskOrigin.ACCEPTED, 1.0, 0.0)
    answer = proposal.copy()
    answer[5:10] = False  # half erased
    edited = mask_provenance(answer, proposal)
    assert edited.origin is MaskOrigin.EDITED and edited.proposal_iou == pytest.approx(0.5)
    assert edited.edit == pytest.approx(1.0)  # 50 changed pixels over a 50-pixel answer
    grown = proposal.copy()
    grown[15:17, 5:15] = True
    assert mask_provenance(grown, proposal).edit == pytest.approx(20 / 120)
    for none in (None, np.zeros_like(proposal)):
        drawn = mask_provenance(answer, none)
        assert (drawn.origin, drawn.proposal_iou, drawn.edit) == (MaskOrigin.DRAWN, None, 1.0)
    with pytest.raises(LabelError, match="proposal size"):
        mask_provenance(answer, proposal[:-1])


def test_a_mask_costs_by_the_project_model() -> None:
    from backend.db.tables import Label, MaskCostModel, Project
    from backend.services.rounds import label_cost

    project = Project(cost_image_label=1.0, cost_mask_label=10.0, mask_cost_model=MaskCostModel.EDIT)
    verdict = Label(is_defective=True, mask_png=None)
    accepted = Label(is_defective=True, mask_png=b"png", mask_edit=0.0)
    edited = Label(is_defective=True, mask_png=b"png", mask_edit=0.25)
    drawn = Label(is_defective=True, mask_png=b"png", mask_edit=1.0)
    imported = Label(is_defective=True, mask_png=b"png", mask_edit=None)
    assert [label_cost(lb, project) for lb in (verdict, accepted, edited, drawn, imported)] == [
        1.0,
        1.0,
        3.25,
        10.0,
        10.0,
    ]
    project.mask_cost_model = MaskCostModel.FLAT
    assert [label_cost(lb, project) for lb in (verdict, accepted, edited, drawn, imported)] == [
        1.0,
        10.0,
        10.0,
        10.0,
        10.0,
    ]


def test_the_round_audit_counts_mask_answers_only(migrated: Engine) -> None:
    from backend.db.tables import MaskOrigin, ModelVersion, Prediction, Round
    from backend.services.labels import MaskProvenance
    from backend.services.rounds import audit

    Session = session_factory(migrated)
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    with Session.begin() as s:
        first = _image(s)
        imgs = [first] + [
            Image(project_id=first.project_id, uri=f"{i}.png", sha256=f"{i}" * 64, width=5, height=4)
            for i in range(1, 5)
        ]
        s.add_all(imgs[1:])
        s.flush()
        mv = ModelVersion(
            project_id=first.project_id,
            name="v1",
            regime="weak",
            profile="fast",
            config={},
            artifact_path="-",
            artifact_sha256="0" * 64,
            thresholds={"image": 0.5, "pixel": 0.5},
        )
        s.add(mv)
        s.flush()
        for im, decision in zip(imgs, (True, True, True, False, True), strict=True):
            s.add(Prediction(model_version_id=mv.id, image_id=im.id, score=0.9 if decision else 0.1, decision=decision))
        rnd = Round(
            project_id=first.project_id,
            index=1,
            strategy="hybrid",
            budget=30,
            params={
                "asks": [[im.id, "mask"] for im in imgs[:3]] + [[imgs[3].id, "verdict"], [imgs[4].id, "verdict"]],
                "model_version_id": mv.id,
            },
        )
        s.add(rnd)
        answers = [
            MaskProvenance(MaskOrigin.ACCEPTED, 1.0, 0.0),
            MaskProvenance(MaskOrigin.EDITED, 0.5, 0.6),
            MaskProvenance(MaskOrigin.DRAWN, None, 1.0),
        ]
        for im, prov in zip(imgs[:3], answers, strict=True):
            add_label(s, image=im, label=LabelIn(is_defective=True, mask=mask, provenance=prov))
        add_label(s, image=imgs[3], label=LabelIn(is_defective=True))  # a verdict, flipping the proposal
        add_label(s, image=imgs[4], label=LabelIn(is_defective=True))  # a verdict, agreeing
        s.flush()
        a = audit(s, round_=rnd)
    assert a["answered"] == 5 and a["verdict_flips"] == 1 and a["mask_answers"] == 3
    assert a["mask_iou_mean"] == pytest.approx(0.75) and a["masks_compared"] == 2  # verdicts count for no IoU
    assert a["masks_accepted"] == a["masks_edited"] == a["masks_drawn"] == pytest.approx(1 / 3)
