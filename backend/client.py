"""What the project CLI commands talk to: the service over HTTP, or the local data directory.

Both clients return the API's JSON shapes, so the commands do not care which one they use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from backend.settings import Settings


class WorkbenchClient(Protocol):
    def create_project(self, body: dict[str, Any]) -> dict: ...
    def find_project(self, ref: str) -> dict: ...
    def import_path(self, project_id: int, path: Path, labels: str = "all") -> dict: ...
    def retrain(self, project_id: int) -> dict: ...
    def job(self, job_id: int) -> dict: ...
    def run_job_here(self, job_id: int) -> None: ...
    def status(self, project_id: int) -> dict: ...
    def labelstudio(self, project_id: int, action: str, body: dict | None = None) -> dict: ...
    def rounds(self, project_id: int) -> list[dict]: ...
    def round_action(self, project_id: int, action: str, body: dict | None = None) -> dict: ...


class ClientError(Exception):
    """A request failed; the message is the service's own explanation. ``job_id``: the job in
    the way, when the service named one (a 409 while a retrain runs)."""

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class HttpClient:
    """Talks to a running service (DEFECTLOOP_SERVER_URL, with DEFECTLOOP_API_TOKEN)."""

    def __init__(self, base_url: str = "", token: str | None = None, http: object | None = None) -> None:
        """``http``: an httpx-compatible client to use instead of one built from ``base_url``."""
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = http or httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=600)

    def _call(self, method: str, url: str, **kw: Any) -> Any:
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

    def create_project(self, body: dict[str, Any]) -> dict:
        return self._call("POST", "/projects", json=body)

    def find_project(self, ref: str) -> dict:
        if ref.isdigit():
            return self._call("GET", f"/projects/{ref}")
        for p in self._call("GET", "/projects"):
            if p["name"] == ref:
                return p
        raise ClientError(f"project {ref!r} not found")

    def import_path(self, project_id: int, path: Path, labels: str = "all") -> dict:
        """``labels``: all, test (only the test split keeps its labels) or none (see the import route)."""
        return self._call(
            "POST", f"/projects/{project_id}/images/import", json={"path": str(path.resolve()), "labels": labels}
        )

    def retrain(self, project_id: int) -> dict:
        return self._call("POST", f"/projects/{project_id}/retrain")

    def job(self, job_id: int) -> dict:
        return self._call("GET", f"/jobs/{job_id}")

    def run_job_here(self, job_id: int) -> None:  # the service's workers run it
        return None

    def labelstudio(self, project_id: int, action: str, body: dict | None = None) -> dict:
        """``action``: setup, push (body: image_ids, asks, include_labelled), sync (a job), connect, links (body:
        rotate)."""
        return self._call("POST", f"/projects/{project_id}/labelstudio/{action}", json=body)

    def rounds(self, project_id: int) -> list[dict]:
        return self._call("GET", f"/projects/{project_id}/rounds")

    def round_action(self, project_id: int, action: str, body: dict | None = None) -> dict:
        """``action``: bootstrap, start (body: budget, strategy, ask, seed, push) or close (body: skip_sync)."""
        url = f"/projects/{project_id}/rounds" + ("" if action == "start" else f"/{action}")
        return self._call("POST", url, json=body)

    def status(self, project_id: int) -> dict:
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
        super().__init__(http=TestClient(create_app(self.settings, engine=self.engine), base_url="http://127.0.0.1"))

    def import_path(self, project_id: int, path: Path, labels: str = "all") -> dict:
        if not self.settings.import_roots:  # local use: the folder itself is the import root
            self.http.app.state.settings = self.settings.model_copy(update={"import_roots": [path.resolve()]})
        return super().import_path(project_id, path, labels)

    def run_job_here(self, job_id: int) -> None:
        """Run the job in this process, then the jobs it queued (pool scoring) for its project."""
        from backend.db.engine import session_factory
        from backend.handlers import job_handlers
        from backend.jobs.runner import run_here

        run_here(job_id, session_factory(self.engine), self.settings, job_handlers())


def make_client(settings: Settings) -> WorkbenchClient:
    if settings.server_url:
        return HttpClient(settings.server_url, settings.api_token)
    return LocalClient(settings)
