"""The service's settings: the only place that reads the environment.

Every setting is ``DEFECTLOOP_<NAME>``; see docs/settings.md (kept in sync by a test).
"""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from labelstudio.server import default_environment_dir


class Settings(BaseSettings):
    """Where data lives and how the service is reached."""

    model_config = SettingsConfigDict(env_prefix="DEFECTLOOP_", extra="ignore")

    data_dir: Path = Field(
        default_factory=lambda: Path(user_data_dir("defectloop")),
        description="Folder for the embedded database, model versions and anomaly maps.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy or plain postgresql:// URL; default: a SQLite file in data_dir.",
    )
    api_token: str | None = Field(default=None, description="Bearer token every API route except health requires.")
    redis_url: str | None = Field(
        default=None, description="redis:// URL: run jobs on RQ workers instead of in-process."
    )
    import_roots: list[Path] = Field(
        default_factory=list, description="Server folders images may be imported from (JSON list or one path)."
    )
    max_image_pixels: int = Field(
        default=100_000_000,
        gt=0,
        description="Images (and masks) with more pixels are refused from their header, before decoding: on upload, "
        "import, mask upload, train and predict.",
    )
    max_body_bytes: int = Field(
        default=32 << 20,
        gt=0,
        description=(
            "Largest request body (webhooks, ML backend calls, JSON); a larger one is answered 413 before it is read."
        ),
    )
    max_upload_bytes: int = Field(
        default=512 << 20,
        gt=0,
        description=(
            "Largest body of an image upload or a label with its mask (all files of the request); "
            "larger: 413 before it is read."
        ),
    )

    server_url: str | None = Field(
        default=None, description="URL of a running service for the project CLI commands (default: work locally)."
    )
    device: str = Field(default="auto", description="Where workers train and predict: auto, cpu or cuda.")
    click_head_steps: int = Field(
        default=800,
        ge=0,
        le=100_000,
        description=(
            "Training steps of the one-click head a retrain teaches from at least 20 masks (about 12 minutes "
            "on 2 CPU cores); a project's train_defaults.click_head_steps overrides it; 0: no head, clicks "
            "are segmented from the image alone."
        ),
    )
    heartbeat_timeout_s: float = Field(
        default=30.0, gt=0, description="A running job whose worker is silent this long is marked failed."
    )

    labelstudio_url: str | None = Field(
        default=None, description="Label Studio server URL (default: the one `defectloop labelstudio start` runs)."
    )
    labelstudio_token: str | None = Field(
        default=None, description="Label Studio API key (legacy token) for labelstudio_url."
    )
    labelstudio_document_root: Path | None = Field(
        default=None,
        description=(
            "Folder Label Studio serves local files from (default: the started server's; images "
            "elsewhere get signed links)."
        ),
    )
    labelstudio_env: Path = Field(
        default_factory=lambda: default_environment_dir(Path(user_cache_dir("defectloop"))),
        description="Label Studio's own virtual environment, created by `defectloop labelstudio start` when missing.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="This service's URL as Label Studio reaches it (webhooks, ML backend, signed image links).",
    )
    webhook_secret: str | None = Field(
        default=None,
        description="Secret in the URLs Label Studio calls back on (default: generated once into data_dir).",
    )
    signed_link_ttl_s: float = Field(
        default=30 * 24 * 3600.0,
        gt=0,
        description="Lifetime of the signed image and overlay links in Label Studio tasks (refreshed on push).",
    )

    def resolved_database_url(self) -> str:
        """The database URL to connect to (the embedded SQLite file by default)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'defectloop.db').resolve()}"
