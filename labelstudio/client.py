"""The Label Studio calls defectloop makes, in bulk and idempotently.

``Studio`` wraps the SDK's client with the few operations the workbench needs: set up a
project (labeling config, instructions, local-files storage, webhook), import a batch of
tasks with their predictions in one request, export every annotation, and connect the ML
backend. Callers pass plain values; SDK objects never leave this module.
"""

from __future__ import annotations

import html
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelstudio.config import INSTRUCTIONS, label_config
from labelstudio.events import ANNOTATION_ACTIONS, Export, export_records


class StudioError(RuntimeError):
    """Label Studio refused or could not be reached; the message says which call and why."""


@dataclass(frozen=True)
class TaskOut:
    """One task to create: the image link, its place in the ranking and the model's proposal.

    ``prediction``: a validated result list (see ``conversions.prediction_result``) or None.
    ``overlay_url``: a picture of the model's view (its heatmap and region) shown beside the
    task, for a verdict task whose proposal is a defect: seen, never submittable as a mask.
    """

    image_id: int
    image_url: str
    rank: int
    ask: str = "verdict"
    score: float | None = None
    prediction: list[dict[str, Any]] | None = None
    model_version: str | None = None
    overlay_url: str | None = None


def overlay_html(url: str | None) -> str:
    """The task's ``overlay`` field, shown by the config's HyperText: a caption and the picture
    at ``url`` (a link: Label Studio's HTML sanitiser drops inline data URLs), or nothing."""
    if not url:
        return ""
    return (
        '<p style="margin:4px 0">The model\'s view (heatmap; white outline: where it sees a defect):</p>'
        f'<img src="{html.escape(url, quote=True)}" alt="the model\'s anomaly map" '
        f'style="max-width:100%;max-height:45vh"/>'
    )


@dataclass(frozen=True)
class OpenTask:
    """A task without an answer: its id and the data Label Studio shows with the image."""

    task_id: int
    data: dict[str, Any]


ASK_TEXT = {
    "verdict": "Verdict only: choose OK or Defect (no painting needed).",
    "mask": "Verdict and mask: choose OK or Defect and, for a defect, paint every defective pixel.",
}


def _explain(e: Exception) -> str:
    body = getattr(e, "body", None)
    code = getattr(e, "status_code", None)
    return f"{code}: {body}" if code else f"{type(e).__name__}: {e}"


class Studio:
    """A connection to one Label Studio server (``url``, legacy API ``token``)."""

    def __init__(self, url: str, token: str, timeout_s: float = 120.0) -> None:
        from label_studio_sdk import LabelStudio

        self.url = url.rstrip("/")
        self.sdk = LabelStudio(base_url=self.url, api_key=token, timeout=timeout_s)

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - SDK, HTTP and network errors alike
            raise StudioError(f"Label Studio at {self.url}: {what} failed ({_explain(e)})") from None

    # ---- project setup -------------------------------------------------------------------
    def ensure_project(self, ls_project_id: int | None, title: str) -> int:
        """The project's id, creating it (or re-creating a deleted one) with defectloop's
        labeling config and instructions, and bringing an existing one up to date."""
        from label_studio_sdk.core.api_error import ApiError

        fields = {"label_config": label_config(), "expert_instruction": INSTRUCTIONS, "show_instruction": True}
        if ls_project_id is not None:
            try:
                self.sdk.projects.get(id=ls_project_id)
                self._call("updating the project", self.sdk.projects.update, id=ls_project_id, title=title, **fields)
                return ls_project_id
            except ApiError as e:
                if e.status_code != 404:
                    raise StudioError(
                        f"Label Studio at {self.url}: reading project {ls_project_id} failed ({_explain(e)})"
                    ) from None
            except Exception as e:  # noqa: BLE001
                raise StudioError(
                    f"Label Studio at {self.url}: reading project {ls_project_id} failed ({_explain(e)})"
                ) from None
        p = self._call("creating the project", self.sdk.projects.create, title=title, **fields)
        return int(p.id)

    def ensure_local_storages(self, ls_project_id: int, folders: Collection[Path]) -> list[Path]:
        """Let the project's tasks read files under each of ``folders`` (no tasks are imported
        from them): one listing of the project's storages, then one storage made per folder that
        has none; the folders made, sorted."""
        if not folders:
            return []
        existing = self._call("listing storages", self.sdk.import_storage.local.list, project=ls_project_id)
        have = {Path(s.path) for s in existing if s.path}
        made = sorted(set(folders) - have)
        for folder in made:
            self._call(
                f"adding local-files storage {folder}",
                self.sdk.import_storage.local.create,
                project=ls_project_id,
                path=str(folder),
                regex_filter="^$",
                use_blob_urls=True,
                title=f"defectloop images: {folder.name}",
            )
        return made

    def ensure_webhook(self, ls_project_id: int, url: str) -> None:
        """One webhook per project to ``url`` for every annotation event (extra copies removed)."""
        hooks = [
            h
            for h in self._call("listing webhooks", self.sdk.webhooks.list, project=str(ls_project_id))
            if h.url == url
        ]
        if hooks:
            for extra in hooks[1:]:
                self._call("removing a duplicate webhook", self.sdk.webhooks.delete, id=extra.id)
            return
        self._call(
            "creating the webhook",
            self.sdk.webhooks.create,
            url=url,
            project=ls_project_id,
            send_payload=True,
            send_for_all_actions=False,
            actions=list(ANNOTATION_ACTIONS),
        )

    # ---- tasks out -----------------------------------------------------------------------
    def import_tasks(self, ls_project_id: int, tasks: list[TaskOut]) -> list[int]:
        """Create ``tasks`` in the given order, predictions included, in one request; their ids."""
        if not tasks:
            return []
        payload = []
        for t in tasks:
            item: dict[str, Any] = {
                "data": {
                    "image": t.image_url,
                    "rank": t.rank,
                    "ask": t.ask,
                    "instruction": ASK_TEXT[t.ask],
                    "overlay": overlay_html(t.overlay_url),
                    "defectloop_image_id": t.image_id,
                    **({"score": round(t.score, 6)} if t.score is not None else {}),
                }
            }
            if t.prediction is not None:
                item["predictions"] = [{"result": t.prediction, "score": t.score, "model_version": t.model_version}]
            payload.append(item)
        r = self._call(
            f"importing {len(tasks)} tasks",
            self.sdk.projects.import_tasks,
            id=ls_project_id,
            request=payload,
            return_task_ids=True,
        )
        ids = [int(i) for i in (r.task_ids or [])]
        if len(ids) != len(tasks):
            raise StudioError(f"Label Studio at {self.url}: imported {len(tasks)} tasks but got {len(ids)} ids back")
        return ids

    def task_data(self, ls_project_id: int) -> dict[int, dict[str, Any]]:
        """The data of every task of the project, by task id (one export request)."""
        tasks = self._call("exporting tasks", self.sdk.projects.exports.as_json, ls_project_id)
        return {int(t["id"]): dict(t.get("data") or {}) for t in (tasks if isinstance(tasks, list) else [])}

    def update_task_data(self, task_id: int, data: dict[str, Any]) -> None:
        """Replace a task's data (e.g. with links signed anew); its answers and predictions stay."""
        self._call(f"updating task {task_id}", self.sdk.tasks.update, id=str(task_id), data=data)

    # ---- answers in ----------------------------------------------------------------------
    def export_annotations(self, ls_project_id: int) -> Export:
        """Every annotation and task of the project (one export request)."""
        tasks = self._call("exporting annotations", self.sdk.projects.exports.as_json, ls_project_id)
        return export_records(tasks, ls_project_id)

    def open_tasks(self, ls_project_id: int) -> list[OpenTask]:
        """The project's tasks nobody has answered yet, in id (serving) order."""
        tasks = self._call("exporting tasks", self.sdk.projects.exports.as_json, ls_project_id)
        out = []
        for t in tasks if isinstance(tasks, list) else []:
            if not any(not a.get("was_cancelled") for a in t.get("annotations") or []):
                out.append(OpenTask(task_id=int(t["id"]), data=dict(t.get("data") or {})))
        return sorted(out, key=lambda t: t.task_id)

    def delete_tasks(self, ls_project_id: int, task_ids: list[int]) -> None:
        """Remove ``task_ids`` (with their predictions) from the project, in one request."""
        if task_ids:
            self._call(
                f"deleting {len(task_ids)} tasks",
                self.sdk.actions.create,
                id="delete_tasks",
                project=ls_project_id,
                selected_items={"all": False, "included": task_ids},
            )

    def annotate(self, task_id: int, result: list[dict[str, Any]], lead_time: float | None = None) -> int:
        """Submit an annotation to a task as the API token's user would (Label Studio then
        sends its ANNOTATION_CREATED webhook); its id. ``result`` must be validated already."""
        a = self._call(
            f"annotating task {task_id}", self.sdk.annotations.create, id=task_id, result=result, lead_time=lead_time
        )
        return int(a.id)

    # ---- ML backend ----------------------------------------------------------------------
    def connect_ml_backend(self, ls_project_id: int, url: str, title: str) -> int:
        """Register (once) defectloop's ML backend at ``url`` for the project, interactive (it
        answers the smart tools' clicks and boxes with masks); its id."""
        for b in self._call("listing ML backends", self.sdk.ml.list, project=ls_project_id):
            if b.url.rstrip("/") == url.rstrip("/"):
                if not getattr(b, "is_interactive", False):
                    self._call("making the ML backend interactive", self.sdk.ml.update, id=b.id, is_interactive=True)
                return int(b.id)
        b = self._call(
            "connecting the ML backend",
            self.sdk.ml.create,
            project=ls_project_id,
            url=url,
            title=title,
            is_interactive=True,
        )
        return int(b.id)

    def retrieve_predictions(self, ls_project_id: int, task_ids: list[int]) -> None:
        """Label Studio's own "Retrieve predictions" action on ``task_ids`` (it calls /predict)."""
        self._call(
            "retrieving predictions",
            self.sdk.actions.create,
            id="retrieve_tasks_predictions",
            project=ls_project_id,
            selected_items={"all": False, "included": task_ids},
        )
