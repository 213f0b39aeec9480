"""Active-learning rounds: bootstrap, start (select + push), close (sync + retrain), list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from backend.api.deps import MAX_ID, MAX_SEED, IdPath, SessionDep, SettingsDep
from backend.api.routes.jobs import job_out
from backend.domain.enums import AskPolicy
from backend.services import rounds
from backend.services.projects import get_project

router = APIRouter(tags=["rounds"])


class StartRound(BaseModel):
    budget: float | None = Field(
        default=None, ge=0, description="Cost units to spend (default: the project's round_budget)."
    )
    strategy: str | None = Field(
        default=None, description=f"One of: {', '.join(rounds.STRATEGY_NAMES)} (default: the project's)."
    )
    ask: AskPolicy = Field(
        default=AskPolicy.AUTO,
        description="Which labels to ask for: auto (verdicts and masks), verdict, mask, or staged (verdicts until "
        "the evaluation image AP stops rising by a point per round, then auto).",
    )
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="Seed of the strategy (default: the round index)."
    )
    push: bool = Field(default=True, description="Send the batch to Label Studio.")


class CloseRound(BaseModel):
    skip_sync: bool = Field(default=False, description="Retrain on the stored labels without syncing Label Studio.")
    force: bool = Field(
        default=False,
        description="Retrain even when none of the round's images was answered "
        "(without it, such a close answers 409 and changes nothing).",
    )


@router.get("/projects/{project_id}/rounds")
def list_rounds(project_id: IdPath, session: SessionDep) -> list[dict[str, Any]]:
    """Every round of the project with its status and its point on the curves."""
    get_project(session, project_id=project_id)
    return [rounds.round_json(r) for r in rounds.rounds_of(session, project_id=project_id)]


@router.get("/projects/{project_id}/rounds/{index}")
def get_round(project_id: IdPath, index: Annotated[int, Path(ge=0, le=MAX_ID)], session: SessionDep) -> dict[str, Any]:
    return rounds.round_json(rounds.get_round(session, project_id=project_id, index=index))


@router.post("/projects/{project_id}/rounds/bootstrap", status_code=202)
def bootstrap(
    project_id: IdPath, session: SessionDep, settings: SettingsDep, seed: Annotated[int, Query(ge=0, le=MAX_SEED)] = 0
) -> dict[str, Any]:
    """Round 0: train UNSUPERVISED on the unlabelled pool presumed normal, then score it (a job)."""
    rnd, job = rounds.bootstrap(session, settings, project=get_project(session, project_id=project_id), seed=seed)
    return {"round": rounds.round_json(rnd), "job": job_out(job).model_dump(mode="json")}


@router.post("/projects/{project_id}/rounds", status_code=201)
def start_round(project_id: IdPath, body: StartRound, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """Round k: select a batch with the acquisition strategy and push it to Label Studio pre-annotated."""
    rnd = rounds.start_round(
        session,
        settings,
        project=get_project(session, project_id=project_id),
        budget=body.budget,
        strategy=body.strategy,
        ask=body.ask,
        seed=body.seed,
        push=body.push,
    )
    return rounds.round_json(rnd)


@router.post("/projects/{project_id}/rounds/close", status_code=202)
def close_round(
    project_id: IdPath, session: SessionDep, settings: SettingsDep, body: CloseRound | None = None
) -> dict[str, Any]:
    """Sync the open round's answers and retrain on them (a job); the round is recorded when it registers.
    A round without answers is not closed (409) unless ``force``."""
    rnd, job = rounds.close_round(
        session,
        settings,
        project=get_project(session, project_id=project_id),
        skip_sync=bool(body and body.skip_sync),
        force=bool(body and body.force),
    )
    return {"round": rounds.round_json(rnd), "job": job_out(job).model_dump(mode="json")}
