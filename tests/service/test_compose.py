"""docker-compose.yml is valid Compose, takes every secret from the environment, and keeps
its promises (healthchecks, a GPU worker). Checked with Debian's docker-compose, which
reads and validates the file without a Docker engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret-1",
    "DEFECTLOOP_API_TOKEN": "api-secret-2",
    "DEFECTLOOP_WEBHOOK_SECRET": "hook-secret-3",
    "LABEL_STUDIO_PASSWORD": "ls-secret-4",
    "LABEL_STUDIO_TOKEN": "ls-token-5",
}


def _config(env: dict[str, str], missing_service) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        missing_service("Debian's docker-compose is not installed (apt-get install docker-compose)")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and k != "IMAGES_DIR"}
    return subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_the_file_is_valid_and_complete(tmp_path: Path, missing_service) -> None:
    import yaml

    res = _config({**SECRETS, "IMAGES_DIR": str(tmp_path)}, missing_service)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    services = cfg["services"]
    assert set(services) == {"postgres", "redis", "labelstudio", "api", "worker"}
    for name, svc in services.items():
        assert "test" in svc.get("healthcheck", {}), f"{name} has no healthcheck"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["driver"] == "nvidia"
    assert services["worker"]["environment"]["DEFECTLOOP_DEVICE"] == "cuda"
    api = services["api"]["environment"]
    assert api["DEFECTLOOP_API_TOKEN"] == "api-secret-2" and "pg-secret-1" in api["DEFECTLOOP_DATABASE_URL"]
    assert services["worker"]["environment"]["DEFECTLOOP_WEBHOOK_SECRET"] == "hook-secret-3"
    assert services["labelstudio"]["environment"]["LABEL_STUDIO_USER_TOKEN"] == api["DEFECTLOOP_LABELSTUDIO_TOKEN"]
    assert json.loads(api["DEFECTLOOP_IMPORT_ROOTS"]) == ["/data/images"]
    text = (ROOT / "docker-compose.yml").read_text()
    assert not any(v in text for v in SECRETS.values())


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_a_missing_secret_is_named(name: str, tmp_path: Path, missing_service) -> None:
    env = {k: v for k, v in SECRETS.items() if k != name}
    res = _config({**env, "IMAGES_DIR": str(tmp_path)}, missing_service)
    assert res.returncode != 0 and name in res.stderr
