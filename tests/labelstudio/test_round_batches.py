"""A new round in a real Label Studio: the earlier batches' unanswered tasks leave, so the
annotator is served the new batch alone, in rank order, with unique ranks."""

from __future__ import annotations

from ls_support import LabelStudioServer, Service
from sqlalchemy import select
from test_integration import current, make_project, register_model, res_project, wait_for

from labelstudio.conversions import choice_result


def _tasks(ls: LabelStudioServer, ls_project: int) -> dict[int, dict]:
    """Every task of the project: id -> {data}."""
    return {t.id: {"data": t.data} for t in ls.sdk().tasks.list(project=ls_project, fields="all")}


def test_a_new_round_replaces_the_unanswered_tasks_of_the_last(ls_server: LabelStudioServer, service: Service) -> None:
    from backend.db.tables import LsTask

    pid, ids = make_project(service, ls_server)
    register_model(service, pid, defective={ids["part_3.png"], ids["part_5.png"]})
    r1 = service.http.post(f"/projects/{pid}/rounds", json={"budget": 4, "strategy": "top_score", "ask": "verdict"})
    r1 = r1.raise_for_status().json()
    ls_project = res_project(service, pid)
    first = _tasks(ls_server, ls_project)
    assert len(first) == 4
    answered_task = min(first)  # rank 1
    answered_image = first[answered_task]["data"]["defectloop_image_id"]
    ls_server.sdk().annotations.create(id=answered_task, result=[choice_result(True)], lead_time=3.0)
    wait_for(lambda: current(service, pid, answered_image))  # the webhook stored it
    job = service.http.post(f"/projects/{pid}/rounds/close", json={}).raise_for_status().json()["job"]
    service.http.post(f"/jobs/{job['id']}/cancel").raise_for_status()  # no worker here: the round ends failed

    r2 = service.http.post(f"/projects/{pid}/rounds", json={"budget": 5, "strategy": "top_score", "ask": "verdict"})
    r2 = r2.raise_for_status().json()
    asked = [i for i, _ in r2["asks"]]
    assert len(asked) == 5 and answered_image not in asked
    assert "3 unanswered tasks of earlier rounds removed" in r2["message"], r2["message"]
    tasks = _tasks(ls_server, ls_project)
    # the answered task stays; the other three of round 1 are gone from Label Studio (its SQLite
    # may give their ids to new tasks), leaving the answered one and round 2's five ...
    assert len(tasks) == 1 + 5 and tasks[answered_task]["data"] == first[answered_task]["data"]
    served = sorted((tid, t["data"]) for tid, t in tasks.items() if tid != answered_task)
    # ... so what is served (in id order) is round 2's batch, in its rank order, each rank once
    assert [d["defectloop_image_id"] for _, d in served] == asked
    assert [d["rank"] for _, d in served] == list(range(1, 6))
    with service.sessions()() as s:
        recorded = {t.ls_task_id: t.image_id for t in s.scalars(select(LsTask).where(LsTask.project_id == pid))}
    assert recorded == {tid: t["data"]["defectloop_image_id"] for tid, t in tasks.items()}
