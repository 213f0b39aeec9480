"""Webhook bodies and exports, recorded from a real Label Studio, read into records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from labelstudio.conversions import PayloadError
from labelstudio.events import export_records, parse_event

# recorded from a real Label Studio 1.23.2 (tokens replaced), kept here so every clone runs these tests
PAYLOADS = Path(__file__).resolve().parent / "payloads"


def _payload(name: str):
    return json.loads((PAYLOADS / name).read_text())


def test_recorded_annotation_created_webhook() -> None:
    ev = parse_event(_payload("webhook_ANNOTATION_CREATED.json")["body"])
    assert ev.action == "ANNOTATION_CREATED" and ev.ls_project_id == 1 and not ev.deleted
    (rec,) = ev.records
    assert (rec.annotation_id, rec.task_id, rec.ls_project_id) == (1, 1, 1)
    assert rec.lead_time == 12.5 and rec.annotator == "labelstudio-user:1" and not rec.was_cancelled
    assert rec.updated_at == datetime(2026, 11, 22, 13, 42, 30, 579784, tzinfo=UTC)
    assert {r["type"] for r in rec.result} == {"choices", "brushlabels"}


def test_recorded_ml_backend_webhooks() -> None:
    traffic = [t for t in _payload("ml_backend_traffic.json") if t["path"] == "/webhook"]
    events = [parse_event(t["request"]) for t in traffic]
    assert {e.action for e in events} >= {"ANNOTATION_CREATED", "PROJECT_UPDATED"}
    created = next(e for e in events if e.action == "ANNOTATION_CREATED")
    assert created.records[0].task_id == 2 and created.ls_project_id == 1


def test_recorded_export_lists_every_annotation_and_task() -> None:
    tasks = _payload("export_json.json")
    export = export_records(tasks, ls_project_id=1)
    assert set(export.tasks) == {t["id"] for t in tasks}
    assert len(export.records) == sum(len(t["annotations"]) for t in tasks) > 0
    assert all(r.ls_project_id == 1 for r in export.records)


def test_deletion_and_bulk_creation_events() -> None:
    ev = parse_event({"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 4}, {"id": 9}], "project": {"id": 3}})
    assert ev.deleted == (4, 9) and ev.ls_project_id == 3
    bulk = parse_event(
        {
            "action": "ANNOTATIONS_CREATED",
            "project": {"id": 3},
            "annotation": [
                {"id": 1, "task": 5, "result": [], "updated_at": "2026-11-22T10:00:00Z"},
                {"id": 2, "task": 6, "result": [], "updated_at": "2026-11-22T10:00:01+00:00"},
            ],
        }
    )
    assert [r.annotation_id for r in bulk.records] == [1, 2]
    assert parse_event({"action": "START_TRAINING", "project": "7.1795354220"}).ls_project_id == 7


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "webhook body"),
        ({"action": "ANNOTATION_CREATED"}, "annotation"),
        (
            {
                "action": "ANNOTATION_CREATED",
                "annotation": {"id": 1, "task": 2, "project": 1, "result": "x", "updated_at": "2026-01-01T00:00:00Z"},
            },
            "result",
        ),
        (
            {
                "action": "ANNOTATION_CREATED",
                "annotation": {
                    "id": 1,
                    "task": "two",
                    "project": 1,
                    "result": [],
                    "updated_at": "2026-01-01T00:00:00Z",
                },
            },
            "task",
        ),
        (
            {
                "action": "ANNOTATION_CREATED",
                "annotation": {"id": 1, "task": 2, "project": 1, "result": [], "updated_at": "yesterday"},
            },
            "updated_at",
        ),
        (
            {
                "action": "ANNOTATION_CREATED",
                "annotation": {"id": 1, "task": 2, "project": 1, "result": [], "updated_at": "2026-01-01T00:00:00"},
            },
            "time zone",
        ),
        ({"action": "ANNOTATIONS_DELETED", "annotations": "all"}, "annotations"),
    ],
)
def test_malformed_events_name_the_field(body: object, field: str) -> None:
    with pytest.raises(PayloadError, match=field):
        parse_event(body)


def test_an_id_beyond_label_studio_s_range_is_a_payload_error() -> None:
    body = {
        "action": "ANNOTATION_CREATED",
        "project": {"id": 3},
        "annotation": {"id": 2**31, "task": 5, "project": 3, "result": [], "updated_at": "2026-12-01T10:00:00Z"},
    }
    with pytest.raises(PayloadError, match=r"annotation\.id: 2147483648 is not a Label Studio id"):
        parse_event(body)
    with pytest.raises(PayloadError, match=r"annotation\.id: 0 is not"):
        parse_event({**body, "annotation": {**body["annotation"], "id": 0}})
