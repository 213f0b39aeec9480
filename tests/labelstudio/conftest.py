"""A real Label Studio server and a real defectloop service that it calls back.

The server starts once per test session from a cached, migrated template home (built on
first use, like its virtual environment, under ~/.cache/defectloop), so it is up in a few
seconds. The service runs in a thread with uvicorn on a free port, on PostgreSQL when one
answers (SQLite otherwise), with no job worker: queued jobs stay queued for inspection.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from ls_support import CACHE, PG_URL, SECRET, SIZES, TOKEN, LabelStudioServer, Service
from sqlalchemy import text

from labelstudio import server


def _missing(message: str) -> None:
    if os.environ.get("DEFECTLOOP_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    venv = server.default_environment_dir(CACHE)
    try:
        server.ensure_environment(venv)
        template = server.prepare_template(server.default_template_dir(CACHE), venv=venv)
    except server.ServerError as e:
        _missing(f"Label Studio {server.VERSION} could not be installed or started: {e}")
    home = tmp_path_factory.mktemp("ls-home")
    root = tmp_path_factory.mktemp("ls-images")
    (root / "line1").mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(root / "line1" / f"part_{i}.png"), img)
    cv2.imwrite(str(root / "outside_subfolder.png"), (rng.random((50, 70, 3)) * 255).astype(np.uint8))
    t0 = time.monotonic()
    info = server.start(home, document_root=root, venv=venv, template=template)
    print(f"Label Studio up in {time.monotonic() - t0:.1f} s at {info.url}")
    try:
        yield LabelStudioServer(info=info, creds=server.load_credentials(home), root=root, home=home, venv=venv)
    finally:
        server.stop(home)


def _database_url(tmp: Path) -> tuple[str, str | None]:
    from backend.db.engine import make_engine

    try:
        admin = make_engine(PG_URL, connect_args={"connect_timeout": 3})
        schema = f"ls_{uuid.uuid4().hex[:10]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        sep = "&" if "?" in PG_URL else "?"
        return f"{PG_URL}{sep}options=-csearch_path%3D{schema}", schema
    except Exception:  # noqa: BLE001 - no PostgreSQL here: the embedded default
        return f"sqlite:///{tmp / 'service.db'}", None


@pytest.fixture
def service(ls_server: LabelStudioServer, tmp_path: Path) -> Iterator[Service]:
    from backend.db.engine import make_engine
    from backend.db.migrate import upgrade
    from backend.settings import Settings
    from labelstudio.server import free_port

    url, schema = _database_url(tmp_path)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        api_token=TOKEN,
        import_roots=[ls_server.root],
        labelstudio_url=ls_server.info.url,
        labelstudio_token=ls_server.creds.token,
        labelstudio_document_root=ls_server.root,
        public_url=f"http://127.0.0.1:{free_port()}",
        webhook_secret=SECRET,
    )
    engine = make_engine(url)
    upgrade(engine)
    svc = Service(settings, engine)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
        engine.dispose()
        if schema:
            from backend.db.engine import make_engine as mk

            admin = mk(PG_URL)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
