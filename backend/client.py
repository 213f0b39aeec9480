"""What the project CLI commands and scripts talk to: the service over HTTP, or the local
data directory.

Both clients return the API's JSON shapes, so the commands do not care which one they use.
:class:`HttpClient` is all a script needs to drive a running service (``defectloop
simulate`` drives its own that way); :class:`LocalClient` serves the same routes in process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from backend.settings import Settings

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI

Json = dict[str, Any]


class WorkbenchClient(Protocol):
    """The service's operations the CLI uses, in the API's JSON shapes."""

    def create_project(self, body: Json) -> Json: ...
    def find_project(self, ref: str) -> Json: ...
    def import_path(self, project_id: int, path: Path, labels: str = "all") -> Json: ...
    def import_job(self, project_id: int, path: Path, labels: str = "all") -> Json: ...
    def retrain(self, project_id: int) -> Json: ...
    def job(self, job_id: int) -> Json: ...
    def health(self) -> Json: ...
    def run_job_here(self, job_id: int) -> None: ...
    def status(self, project_id: int) -> Json: ...
    def labelstudio(self, project_id: int, action: str, body: Json | None = None) -> Json: ...
    def rounds(self, project_id: int) -> list[Json]: ...
    def round_action(
        self, project_id: int, action: str, body: Json | None = None, params: Json | None = None
    ) -> Json: ...


class ClientError(Exception):
    """A request failed; the message is the service's own explanation. ``job_id``: the job in
    the way, when the service named one (a 409 while a retrain runs)."""

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class HttpClient:
    """Talks to a running service (DEFECTLOOP_SERVER_URL, with DEFECTLOOP_API_TOKEN)."""

    def __init__(self, base_url: str = "", token: str | None = None, http: httpx.Client | None = None) -> None:
        """``http``: an httpx client (or a test client) to use instead of one built from ``base_url``."""
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = http or httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=600)

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        """The answer's JSON; a transport failure or an error status is a :class:`ClientError`
        with the service's own explanation (and the job in the way, when it names one)."""
        import httpx

        try:
            r = self.http.request(method, url, **kw)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach the service at {self.http.base_url}: {e}") from None
        if r.status_code >= 400:
            try:
                body = r.json()
                detail, job_id = body.get("detail", r.text), body.get("job_id")
            except (ValueError, AttributeError):
                detail, job_id = r.text, None
            raise ClientError(f"{r.status_code}: {detail}", job_id if isinstance(job_id, int) else None)
        return r.json()

    def health(self) -> Json:
        """``/health`` (no token needed): the service's and its job workers' state."""
        return self._call("GET", "/health")

    def create_project(self, body: Json) -> Json:
        return self._call("POST", "/projects", json=body)

    def find_project(self, ref: str) -> Json:
        """A project by id (digits) or by name; ClientError when there is none."""
        if ref.isdigit():
            return self._call("GET", f"/projects/{ref}")
        for p in self._call("GET", "/projects"):
            if p["name"] == ref:
                return p
        raise ClientError(f"project {ref!r} not found")

    def import_path(self, project_id: int, path: Path, labels: str = "all") -> Json:
        """``labels``: all, test (only the test split keeps its labels) or none (see the import route)."""
        return self._call(
            "POST", f"/projects/{project_id}/images/import", json={"path": str(path.resolve()), "labels": labels}
        )

    def import_job(self, project_id: int, path: Path, labels: str = "all") -> Json:
        """Queue the import of ``path`` as a job (see the import-jobs route); the job."""
        return self._call(
            "POST", f"/projects/{project_id}/images/import-jobs", json={"path": str(path.resolve()), "labels": labels}
        )

    def images(self, project_id: int, split: str | None = None) -> list[Json]:
        """Every image of the project (of one split: pool, train, val or test), by id."""
        out: list[Json] = []
        while True:
            params: Json = {"limit": 1000, **({"split": split} if split else {})}
            if out:
                params["after_id"] = out[-1]["id"]
            page = self._call("GET", f"/projects/{project_id}/images", params=params)
            out += page
            if len(page) < 1000:
                return out

    def labels(self, project_id: int) -> list[Json]:
        """The current label of every labelled image of the project."""
        return self._call("GET", f"/projects/{project_id}/labels")

    def retrain(self, project_id: int) -> Json:
        return self._call("POST", f"/projects/{project_id}/retrain")

    def score_pool(self, project_id: int) -> list[Json]:
        """Queue the scoring of the pool by the active model version again (its jobs)."""
        return self._call("POST", f"/projects/{project_id}/pool-scoring")

    def job(self, job_id: int) -> Json:
        return self._call("GET", f"/jobs/{job_id}")

    def jobs(self, project_id: int, limit: int = 50) -> list[Json]:
        """The project's most recent jobs, newest first."""
        return self._call("GET", "/jobs", params={"project_id": project_id, "limit": limit})

    def run_job_here(self, job_id: int) -> None:  # the service's workers run it
        return None

    def labelstudio(self, project_id: int, action: str, body: Json | None = None) -> Json:
        """``action``: setup, push (body: image_ids, asks, include_labelled), sync (a job), connect, links (body:
        rotate)."""
        return self._call("POST", f"/projects/{project_id}/labelstudio/{action}", json=body)

    def rounds(self, project_id: int) -> list[Json]:
        return self._call("GET", f"/projects/{project_id}/rounds")

    def round_action(self, project_id: int, action: str, body: Json | None = None, params: Json | None = None) -> Json:
        """``action``: bootstrap (params: seed), start (body: budget, strategy, ask, seed, push) or close (body:
        skip_sync, force)."""
        url = f"/projects/{project_id}/rounds" + ("" if action == "start" else f"/{action}")
        return self._call("POST", url, json=body, params=params)

    def status(self, project_id: int) -> Json:
        return {
            "project": self._call("GET", f"/projects/{project_id}"),
            "labels": self._call("GET", f"/projects/{project_id}/labels/counts"),
            "model_versions": self._call("GET", f"/projects/{project_id}/model-versions"),
            "jobs": self._call("GET", "/jobs", params={"project_id": project_id, "limit": 5}),
            "health": self._call("GET", "/health"),
        }


class LocalClient(HttpClient):
    """Works on the local data directory's database directly (migrated on first use).

    Jobs queued here are run by `defectloop worker` / `serve`, or in this process with
    ``run_job_here`` (``retrain --wait``).
    """

    def __init__(self, settings: Settings) -> None:
        from fastapi.testclient import TestClient

        from backend.api.app import create_app
        from backend.db.engine import make_engine
        from backend.db.migrate import upgrade

        self.settings = settings.model_copy(update={"api_token": None})
        self.engine = make_engine(settings.resolved_database_url())
        upgrade(self.engine)
        # the same routes and validation as the service, in process (no network; a loopback
        # name, as a token-less app answers to no other)
        self.app: FastAPI = create_app(self.settings, engine=self.engine)
        # starlette's TestClient is an httpx Client (of the httpx2 fork when that is installed)
        super().__init__(http=cast("httpx.Client", TestClient(self.app, base_url="http://127.0.0.1")))

    def import_path(self, project_id: int, path: Path, labels: str = "all") -> Json:
        if not self.settings.import_roots:  # local use: the folder itself is the import root
            self.app.state.settings = self.settings.model_copy(update={"import_roots": [path.resolve()]})
        return super().import_path(project_id, path, labels)

    def run_job_here(self, job_id: int) -> None:
        """Run the job in this process, then the jobs it queued (pool scoring) for its project."""
        from backend.db.engine import session_factory
        from backend.handlers import job_handlers
        from backend.jobs.runner import run_here

        run_here(job_id, session_factory(self.engine), self.settings, job_handlers())


def make_client(settings: Settings) -> WorkbenchClient:
    """The service at ``settings.server_url`` over HTTP, else the local data directory."""
    if settings.server_url:
        return HttpClient(settings.server_url, settings.api_token)
    return LocalClient(settings)
