"""A project's label-efficiency curves (JSON, PNG) and the page an engineer opens.

The page itself holds no data and needs no token: its script reads the API token from the
URL fragment (``#token=...``, never sent to the server) and fetches the curves, rounds and
jobs with it, as any API client would.
"""

from __future__ import annotations

import io
from importlib import resources
from typing import Any, Literal

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from backend.api.deps import IdPath, SessionDep
from backend.curves import Run, chart_title, curves_json, plot
from backend.db.tables import RoundStatus
from backend.services import rounds
from backend.services.projects import get_project

router = APIRouter(tags=["curves"])
public = APIRouter(tags=["curves"])


def project_run(session: Session, project_id: int) -> Run:
    """The project's finished rounds as one run on the curves."""
    project = get_project(session, project_id=project_id)
    done = [
        r.metrics
        for r in rounds.rounds_of(session, project_id=project_id)
        if r.status is RoundStatus.DONE and r.metrics
    ]
    return Run(name=project.name, strategy=project.name, seed=None, points=done)


@router.get("/projects/{project_id}/curves.json")
def curves_data(project_id: IdPath, session: SessionDep) -> dict[str, Any]:
    """Every finished round's labels, cost, annotation time, regime, metrics and audit."""
    return curves_json([project_run(session, project_id)])


@router.get(
    "/projects/{project_id}/curves.png", response_class=Response, responses={200: {"content": {"image/png": {}}}}
)
def curves_png(
    project_id: IdPath, session: SessionDep, x: Literal["labels", "cost", "annotation_seconds"] = "cost"
) -> Response:
    """The metrics and the proposal audit against labels, cost or annotation time."""
    run = project_run(session, project_id)
    buf = io.BytesIO()
    plot([run], x, buf, title=chart_title(run))
    return Response(buf.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})


@public.get("/projects/{project_id}/curves", response_class=HTMLResponse)
def curves_page(project_id: IdPath) -> HTMLResponse:
    """The curves, rounds and jobs page (its data comes from the API, with the token in the URL fragment)."""
    page = resources.files("backend.api").joinpath("static/curves.html").read_text()
    return HTMLResponse(page.replace("{{PROJECT_ID}}", str(int(project_id))))
