"""Label Studio's annotation events and exports, read into plain records.

Webhook bodies (``ANNOTATION_CREATED``, ``ANNOTATION_UPDATED``, ``ANNOTATIONS_CREATED``,
``ANNOTATIONS_DELETED``, ``START_TRAINING``) and exported tasks both become
``AnnotationRecord`` / ``Deletion`` values, so the webhook and the reconcile sync share one
ingestion path. Everything malformed raises ``PayloadError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from labelstudio.conversions import PayloadError

ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED")
TRAINING_ACTION = "START_TRAINING"


@dataclass(frozen=True)
class AnnotationRecord:
    """One annotation as Label Studio holds it now."""

    annotation_id: int
    task_id: int
    ls_project_id: int
    updated_at: datetime
    result: list[dict[str, Any]]
    lead_time: float | None
    annotator: str | None
    was_cancelled: bool


@dataclass(frozen=True)
class Event:
    """A webhook delivery: ``records`` to store, ``deleted`` annotation ids to retract."""

    action: str
    ls_project_id: int | None
    records: tuple[AnnotationRecord, ...] = ()
    deleted: tuple[int, ...] = ()


#: Label Studio's ids are 32-bit database keys; a larger number is not one of its ids.
MAX_LS_ID = 2**31 - 1


def _int(d: dict, key: str, where: str) -> int:
    v = d.get(key)
    if isinstance(v, dict):  # expanded relations ({"id": ...})
        v = v.get("id")
    if isinstance(v, bool) or not isinstance(v, int | str) or not str(v).isdigit():
        raise PayloadError(f"{where}.{key}: expected an integer id, got {v!r}")
    if not 1 <= int(v) <= MAX_LS_ID:
        raise PayloadError(f"{where}.{key}: {v} is not a Label Studio id (1 to {MAX_LS_ID})")
    return int(v)


def _time(v: Any, where: str) -> datetime:
    if not isinstance(v, str):
        raise PayloadError(f"{where}: expected an ISO timestamp, got {v!r}")
    try:
        t = datetime.fromisoformat(v)  # Python 3.11+ reads a trailing Z
    except ValueError:
        raise PayloadError(f"{where}: not an ISO timestamp: {v!r}") from None
    if t.tzinfo is None:
        raise PayloadError(f"{where}: timestamp without a time zone: {v!r}")
    return t


def _annotator(a: dict) -> str | None:
    who = a.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or who.get("id"))
    if who is None:
        return None
    return f"labelstudio-user:{who}"


def annotation_record(a: Any, *, ls_project_id: int | None = None, task_id: int | None = None) -> AnnotationRecord:
    """An annotation object (webhook or export shape) as a record."""
    if not isinstance(a, dict):
        raise PayloadError("annotation: expected an object")
    result = a.get("result")
    if not isinstance(result, list):
        raise PayloadError("annotation.result: expected a list")
    lead = a.get("lead_time")
    return AnnotationRecord(
        annotation_id=_int(a, "id", "annotation"),
        task_id=task_id if task_id is not None else _int(a, "task", "annotation"),
        ls_project_id=ls_project_id if ls_project_id is not None else _int(a, "project", "annotation"),
        updated_at=_time(a.get("updated_at") or a.get("created_at"), "annotation.updated_at"),
        result=result,
        lead_time=float(lead) if isinstance(lead, int | float) else None,
        annotator=_annotator(a),
        was_cancelled=bool(a.get("was_cancelled", False)),
    )


def ls_project_ref(value: Any) -> int | None:
    """A project id from ``{"id": N}``, ``N`` or the ML backend's ``"<id>.<timestamp>"``; None if absent."""
    if isinstance(value, dict) and "id" in value:
        return _int(value, "id", "project")
    head = str(value).split(".")[0] if value is not None else ""
    return int(head) if head.isdigit() and 1 <= int(head) <= MAX_LS_ID else None


def parse_event(body: Any) -> Event:
    """A webhook body as an Event; PayloadError on anything that cannot be trusted."""
    if not isinstance(body, dict) or not isinstance(body.get("action"), str):
        raise PayloadError("webhook body: expected an object with an 'action'")
    action = body["action"]
    ls_project = ls_project_ref(body.get("project"))
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        rec = annotation_record(body.get("annotation"), ls_project_id=ls_project)
        return Event(action, rec.ls_project_id, records=(rec,))
    if action == "ANNOTATIONS_CREATED":
        items = body.get("annotation")
        items = items if isinstance(items, list) else [items]
        recs = tuple(annotation_record(a, ls_project_id=ls_project) for a in items)
        return Event(
            action, ls_project if ls_project is not None else (recs[0].ls_project_id if recs else None), records=recs
        )
    if action == "ANNOTATIONS_DELETED":
        items = body.get("annotations")
        if not isinstance(items, list):
            raise PayloadError("annotations: expected a list of {id}")
        return Event(
            action,
            ls_project,
            deleted=tuple(
                _int(a, "id", "annotations[]") if isinstance(a, dict) else _int({"id": a}, "id", "annotations[]")
                for a in items
            ),
        )
    return Event(action, ls_project)


@dataclass(frozen=True)
class Export:
    """A project's export: every annotation, each task's id with the defectloop image id
    it carries in its data (None for tasks defectloop did not create), and what each task
    asks for (its data's ``ask``: "verdict", the default, or "mask")."""

    records: list[AnnotationRecord]
    tasks: dict[int, int | None]
    asks: dict[int, str] = field(default_factory=dict)


def export_records(tasks: Any, ls_project_id: int) -> Export:
    """Read an exported task list (Label Studio's JSON export)."""
    if not isinstance(tasks, list):
        raise PayloadError("export: expected a list of tasks")
    records: list[AnnotationRecord] = []
    found: dict[int, int | None] = {}
    asks: dict[int, str] = {}
    for t in tasks:
        if not isinstance(t, dict):
            raise PayloadError("export: task is not an object")
        tid = _int(t, "id", "task")
        image = (t.get("data") or {}).get("defectloop_image_id")
        found[tid] = int(image) if isinstance(image, int) and not isinstance(image, bool) else None
        asks[tid] = "mask" if (t.get("data") or {}).get("ask") == "mask" else "verdict"
        for a in t.get("annotations") or []:
            records.append(annotation_record(a, ls_project_id=ls_project_id, task_id=tid))
    return Export(records, found, asks)
