"""Support for the Label Studio integration tests: the server handle and the test service.

The server starts once per test session from a cached, migrated template home (built on
first use, like its virtual environment, under ~/.cache/defectloop), so it is up in a few
seconds. The service runs in a thread with uvicorn on a free port, on PostgreSQL when one
answers (SQLite otherwise), with no job worker: queued jobs stay queued for inspection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx
from platformdirs import user_cache_dir

from labelstudio import server

CACHE = Path(user_cache_dir("defectloop"))
PG_URL = os.environ.get("DEFECTLOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "test-api-token"
SECRET = "test-callback-secret-0123456789"
SIZES = [(96, 128), (80, 112), (64, 64), (100, 90), (72, 120), (88, 88)]  # (height, width)


@dataclass(frozen=True)
class LabelStudioServer:
    info: server.ServerInfo
    creds: server.Credentials
    root: Path  # the document root; images live in root/line1
    home: Path
    venv: Path

    def sdk(self):
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.info.url, api_key=self.creds.token)


class Service:
    """The defectloop API served over real HTTP (Label Studio must reach it)."""

    def __init__(self, settings, engine) -> None:
        self.settings, self.engine = settings, engine
        self.port = int(settings.public_url.rsplit(":", 1)[1])
        self.url = settings.public_url
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
        self._server = None

    def start(self) -> None:
        from backend.api.app import create_app
        from backend.api.threaded import ThreadedServer

        self._server = ThreadedServer(create_app(self.settings, engine=self.engine), self.port).start()

    def stop(self) -> None:
        """Take the service off the network (webhooks sent now are lost)."""
        self._server.stop()

    def sessions(self):
        from backend.db.engine import session_factory

        return session_factory(self.engine)


def activate_model(service: Service, project_id: int, name: str, model_dir: Path, summary) -> None:
    """Register a model trained by ``ml.pipeline.train_and_save`` as the project's active version."""
    from backend.services.retrain import register_model_version

    with service.sessions().begin() as s:
        register_model_version(
            s,
            project_id=project_id,
            name=name,
            model_dir=model_dir,
            regime=summary.trained.regime.value,
            profile="fast",
            thresholds=summary.thresholds.to_json(),
            metrics={},
            label_ids=[],
        )
