"""Request dependencies: database session, settings, bearer-token auth, id parameters."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from backend.settings import Settings

_bearer = HTTPBearer(auto_error=False)

#: the largest id a row can have on every supported database (a signed 64-bit integer)
MAX_ID = 2**63 - 1

#: a row id in a path: anything outside 1..MAX_ID is answered 422 before the database sees it
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]

#: the largest random seed a request may set (what every random generator accepts)
MAX_SEED = 2**32 - 1


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, committed when the route returns (before the response goes
    out), rolled back on error. GET and HEAD requests only read: on SQLite their session never
    waits for a writer's lock."""
    factory = request.app.state.read_sessions if request.method in ("GET", "HEAD") else request.app.state.sessions
    with factory.begin() as session:
        yield session


def get_write_session(request: Request) -> Iterator[Session]:
    """A session that may write, whatever the method (e.g. a GET that marks dead jobs failed)."""
    with request.app.state.sessions.begin() as session:
        yield session


def get_read_session(request: Request) -> Iterator[Session]:
    """A session for a route that only reads, whatever its method (e.g. Label Studio's ML
    backend calls, which POST): on SQLite it never waits for, nor blocks, a writer."""
    with request.app.state.read_sessions.begin() as session:
        yield session


@dataclass(frozen=True)
class SessionFactories:
    """Sessions that may write, and sessions that only read (on SQLite: never wait for a writer)."""

    writes: sessionmaker[Session]
    reads: sessionmaker[Session]


def get_session_factories(request: Request) -> SessionFactories:
    """The app's session factories, for a route that commits as it goes (a chunked import)."""
    return SessionFactories(writes=request.app.state.sessions, reads=request.app.state.read_sessions)


def require_token(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    expected: str | None = request.app.state.settings.api_token
    if expected is None:  # local development mode (bound to 127.0.0.1 only)
        return
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), expected.encode()):
        raise HTTPException(
            status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


# scope="function": commit when the route returns, before the response is sent, so a client
# that acts on a response (e.g. imports into the project it just created) sees the write
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
WriteSessionDep = Annotated[Session, Depends(get_write_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionFactoriesDep = Annotated[SessionFactories, Depends(get_session_factories)]
