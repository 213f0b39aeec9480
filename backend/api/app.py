"""The application factory and the one place errors become HTTP responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from backend.api.deps import require_token
from backend.api.docs import install_docs
from backend.api.guards import LoopbackOnly, redact_access_logs
from backend.api.routes import (
    curves,
    images,
    jobs,
    labels,
    labelstudio,
    models,
    projects,
    rounds,
    system,
)
from backend.db.engine import make_engine, read_session_factory, session_factory
from backend.errors import ServiceError
from backend.jobs.dispatch import dispatch_on_commit
from backend.services.labels import LabelError
from backend.settings import Settings
from labelstudio.client import StudioError
from ml import DefectloopError, set_max_pixels


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """Build the API. No work happens at import time; the engine is created here."""
    settings = settings or Settings()
    engine = engine or make_engine(settings.resolved_database_url())
    set_max_pixels(settings.max_image_pixels)
    app = FastAPI(
        title="defectloop",
        summary="Active-learning workbench for surface-defect detection",
        version="0.1.0",
        docs_url=None,  # served from installed files instead (install_docs): factories are often offline
        redoc_url=None,
        max_body_size=settings.max_body_bytes,  # over it: 413 before the body is read
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = dispatch_on_commit(session_factory(engine), settings)  # jobs reach RQ after their commit
    app.state.read_sessions = read_session_factory(engine)

    auth = [Depends(require_token)]
    app.include_router(system.public)
    app.include_router(system.router, dependencies=auth)
    app.include_router(projects.router, dependencies=auth)
    uploads = settings.max_upload_bytes  # image files, and labels with their masks
    app.include_router(images.router, dependencies=auth, max_body_size=uploads)
    app.include_router(labels.router, dependencies=auth, max_body_size=uploads)
    app.include_router(jobs.router, dependencies=auth)
    app.include_router(models.router, dependencies=auth)
    app.include_router(labelstudio.router, dependencies=auth)
    app.include_router(rounds.router, dependencies=auth)
    app.include_router(curves.router, dependencies=auth)
    app.include_router(curves.public)  # the page holds no data: its script calls the API with the token
    app.include_router(labelstudio.callbacks)  # Label Studio authenticates with the callback secret
    install_docs(app)
    _install_error_handlers(app)
    if settings.api_token is None:  # serve --dev: the browser's origin checks are all there is
        app.add_middleware(LoopbackOnly)
    redact_access_logs()
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        content: dict[str, Any] = {"detail": str(exc)}
        job_id = getattr(exc, "job_id", None)
        if job_id is not None:
            content["job_id"] = job_id
        return JSONResponse(status_code=exc.status_code, content=content)

    @app.exception_handler(StudioError)
    async def studio_error(
        _: Request, exc: StudioError
    ) -> JSONResponse:  # Label Studio down or refusing: not our fault
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    @app.exception_handler(LabelError)
    async def label_error(_: Request, exc: LabelError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(DefectloopError)
    async def ml_error(_: Request, exc: DefectloopError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(ValueError)
    async def value_error(_: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = []
        for e in errors:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "form"))
            parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
        return JSONResponse(status_code=422, content={"detail": "; ".join(parts), "errors": jsonable(errors)})


def jsonable(errors: Sequence[Any]) -> list[Any]:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors, custom_encoder={Exception: str, bytes: lambda b: b.decode(errors="replace")})
