"""Property-based requests from the OpenAPI schema against the real service: no server errors.

The service runs as ``serve`` runs it (uvicorn over HTTP, a migrated SQLite database, a bearer
token), seeded with a project of imported images so that generated ids can hit real rows.
Every operation gets schema-valid (positive) and schema-violating (negative) requests; any
5xx answer fails the test with the requests that caused it.

    .venv/bin/python -m pytest tests/service/test_schemathesis.py -q -s
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from backend.api.app import create_app
from backend.api.threaded import ThreadedServer
from backend.db.engine import make_engine
from backend.db.migrate import upgrade
from backend.settings import Settings
from labelstudio.server import free_port

TOKEN = "schemathesis-token"
#: examples per operation and generation mode: ~1,500 requests, about a minute on 2 slow cores
EXAMPLES = 20


@pytest.mark.slow
def test_no_server_errors_on_generated_requests(tmp_path: Path, tiny_demo: Path) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = make_engine(url)
    upgrade(engine)
    # Label Studio is configured but down: its routes must say so, not fail
    st = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        api_token=TOKEN,
        import_roots=[tiny_demo.parent],
        labelstudio_url=f"http://127.0.0.1:{free_port()}",
        labelstudio_token="unused",
    )
    server = ThreadedServer(create_app(st, engine=engine), free_port()).start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        http = httpx.Client(base_url=server.url, headers=auth, timeout=60)
        pid = http.post("/projects", json={"name": "line-1"}).raise_for_status().json()["id"]
        http.post(f"/projects/{pid}/images/import", json={"path": str(tiny_demo)}).raise_for_status()

        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        calls: Counter[str] = Counter()
        errors: list[str] = []
        t0 = time.monotonic()
        for result in schema.get_all_operations():
            op = result.ok()
            for mode in GenerationMode:

                @given(case=op.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def call(case) -> None:
                    r = case.call(headers=auth, timeout=60)
                    calls[f"{r.status_code // 100}xx"] += 1
                    if r.status_code == 503 and "Label Studio" in r.text:
                        calls["503 Label Studio down"] += 1
                    elif r.status_code >= 500:
                        errors.append(f"{r.status_code} {case.method} {r.request.url}: {r.text[:200]}")

                try:
                    call()
                except Unsatisfiable:  # nothing to violate (an operation without parameters)
                    pass
        elapsed = time.monotonic() - t0
        n = sum(calls.values())
        print(f"\nschemathesis: {n} requests in {elapsed:.0f} s, {len(errors)} server errors; by class {dict(calls)}")
        assert n > 500
        assert not errors, "\n".join(errors[:30])
    finally:
        server.stop()
        engine.dispose()
