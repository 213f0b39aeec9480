"""A round's point on the label-efficiency curves: what its labels cost, how the model it
trained scores on the fixed test split, and the audit of its answers against the proposals."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.tables import Label, MaskCostModel, MaskOrigin, ModelVersion, Prediction, Project, Round
from backend.services.labels import current_labels


def label_cost(label: Label, project: Project) -> float:
    """What one label cost in the project's units: a verdict ``cost_image_label``; a mask
    ``cost_mask_label`` under the flat model, and under the edit model a verdict's cost plus the
    share of the mask the annotator changed (``Label.mask_edit``; unknown, e.g. imported: all of
    it) of the difference."""
    if not (label.is_defective and label.mask_png is not None):
        return project.cost_image_label
    if project.mask_cost_model is MaskCostModel.FLAT or label.mask_edit is None:
        return project.cost_mask_label
    extra = max(project.cost_mask_label - project.cost_image_label, 0.0)
    return project.cost_image_label + extra * min(max(label.mask_edit, 0.0), 1.0)


def curve_point(session: Session, *, project: Project, mv: ModelVersion, round_: Round) -> dict[str, Any]:
    """The round's point on the label-efficiency curves: labels by kind, cost units (and the
    mask cost model used), annotation time, regime, test metrics, and the proposal audit of its
    answers."""
    labels = list(session.scalars(select(Label).where(Label.id.in_(mv.label_ids))))
    normal = sum(1 for lb in labels if not lb.is_defective)
    masks = sum(1 for lb in labels if lb.is_defective and lb.mask_png is not None)
    image_level = sum(1 for lb in labels if lb.is_defective and lb.mask_png is None)
    cost = float(sum(label_cost(lb, project) for lb in labels))
    return {
        "round": round_.index,
        "strategy": round_.strategy,
        "model_version": mv.name,
        "regime": mv.regime,
        "ask": round_.params.policy(),  # what this round asked for (None: round 0)
        "labels": {"normal": normal, "image": image_level, "mask": masks, "total": len(labels)},
        "cost": cost,
        "cost_model": MaskCostModel(project.mask_cost_model).value,
        "annotation_seconds": float(sum(lb.lead_time or 0.0 for lb in labels)),
        "pseudo_normal": round_.params.pseudo_normal or 0,
        "metrics": {k: v for k, v in (mv.metrics or {}).items() if isinstance(v, int | float | str)},
        "audit": audit(session, round_=round_),
    }


def audit(session: Session, *, round_: Round) -> dict[str, Any]:
    """How much annotators changed the proposals of this round's batch: verdict flips over the
    answered images, and over the mask answers (masks answered on tasks that asked for one) the
    mean IoU of answer and proposal where a proposal was shown, and the shares accepted
    unchanged, edited and drawn without a proposal."""
    asks = [i for i, _ in round_.params.asks]
    mv = session.get(ModelVersion, round_.params.model_version_id or -1)
    if not asks or mv is None:
        return {"answered": 0}
    current = {lb.image_id: lb for lb in current_labels(session, project_id=round_.project_id, image_ids=asks)}
    preds = {
        p.image_id: p
        for p in session.scalars(
            select(Prediction).where(Prediction.model_version_id == mv.id, Prediction.image_id.in_(list(current)))
        )
    }
    flips = sum(int(bool(lb.is_defective) != bool(preds[i].decision)) for i, lb in current.items() if i in preds)
    n = sum(1 for i in current if i in preds)
    mask_answers = [lb for lb in current.values() if lb.mask_origin is not None]
    origins = {o.value: sum(1 for lb in mask_answers if lb.mask_origin is o) for o in MaskOrigin}
    ious = [lb.proposal_iou for lb in mask_answers if lb.proposal_iou is not None]
    m = len(mask_answers)
    return {
        "asked": len(asks),
        "answered": n,
        "verdict_flips": flips,
        "flip_rate": flips / n if n else None,
        "mask_answers": m,
        "mask_iou_mean": float(np.mean(ious)) if ious else None,
        "masks_compared": len(ious),
        **{f"masks_{o}": (k / m if m else None) for o, k in origins.items()},
    }
