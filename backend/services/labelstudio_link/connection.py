"""Reaching Label Studio: the server this service starts or is pointed at, the callback secret,
signed links to images and overlays, and the project's setup there."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.tables import (
    Image,
    Prediction,
    Project,
)
from backend.errors import ServiceError
from backend.services.labelstudio_link.proposals import verdict_overlay
from backend.services.link_signing import resign, secret_file, signed_link
from backend.services.model_versions import active_model_version
from backend.settings import Settings
from labelstudio.client import Studio
from labelstudio.server import (
    ServerInfo,
    default_template_dir,
    load_credentials,
    prepare_template,
    recorded,
)
from labelstudio.server import start as start_server
from labelstudio.server import status as server_status


class LabelStudioUnavailable(ServiceError):
    """Label Studio is not configured or cannot be reached."""

    status_code = 503


# ---- connection and secrets ---------------------------------------------------------------
def home(settings: Settings) -> Path:
    """Where `defectloop labelstudio start` keeps the local server's data and records."""
    return settings.data_dir / "labelstudio"


def start_local(
    settings: Settings,
    server_home: Path,
    *,
    document_root: Path,
    port: int | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> ServerInfo:
    """Start (or find running) a local Label Studio for ``server_home``, copying the migrated
    template kept beside its environment (built once), so a new home starts in seconds."""
    venv = settings.labelstudio_env
    template = prepare_template(default_template_dir(venv.parent), venv=venv, say=say)
    return start_server(server_home, document_root=document_root, venv=venv, port=port, template=template, say=say)


def studio(settings: Settings) -> Studio:
    """A client for the configured Label Studio, or the locally started one."""
    if settings.labelstudio_url:
        if not settings.labelstudio_token:
            raise LabelStudioUnavailable("DEFECTLOOP_LABELSTUDIO_URL is set but DEFECTLOOP_LABELSTUDIO_TOKEN is not")
        return Studio(settings.labelstudio_url, settings.labelstudio_token)
    info, creds = server_status(home(settings)), load_credentials(home(settings))
    if info is None or creds is None:
        raise LabelStudioUnavailable(
            "no Label Studio is running: start one with `defectloop labelstudio start` "
            "or set DEFECTLOOP_LABELSTUDIO_URL and DEFECTLOOP_LABELSTUDIO_TOKEN"
        )
    return Studio(info.url, creds.token)


def document_root(settings: Settings) -> Path | None:
    """The folder Label Studio serves local files from (None: every image is a signed link)."""
    if settings.labelstudio_document_root:
        return settings.labelstudio_document_root.resolve()
    if settings.labelstudio_url:
        return None
    info = recorded(home(settings))
    return Path(info.document_root) if info is not None else None


def webhook_secret(settings: Settings) -> str:
    """The secret in every URL Label Studio calls back on (generated once when not configured)."""
    if settings.webhook_secret:
        return settings.webhook_secret
    return secret_file(home(settings) / "webhook_secret")


def secret_matches(settings: Settings, given: str) -> bool:
    return hmac.compare_digest(given.encode(), webhook_secret(settings).encode())


def callback_base(settings: Settings) -> str:
    """The URL prefix of the webhook and ML backend endpoints, secret included."""
    return f"{settings.public_url.rstrip('/')}/labelstudio/{webhook_secret(settings)}"


def overlay_link(settings: Settings, image: Image) -> str:
    """The signed link of an image's model's-view picture (:func:`verdict_overlay`; expires, see
    ``link_signing``)."""
    return signed_link(settings, image.project_id, "overlays", image.id)


def overlay_jpeg(session: Session, image: Image) -> bytes | None:
    """The model's-view picture of ``image`` from the active model version (None: no map)."""
    mv = active_model_version(session, image.project_id)
    pred = (
        None
        if mv is None
        else session.scalars(
            select(Prediction).where(Prediction.model_version_id == mv.id, Prediction.image_id == image.id)
        ).first()
    )
    return None if pred is None or mv is None else verdict_overlay(pred, mv, image)


def image_link(settings: Settings, image: Image, root: Path | None) -> tuple[str, Path | None]:
    """How Label Studio shows ``image``: a local-files URL (plus the storage folder that
    grants it) when the file is in a subfolder of the document root, else a signed link
    (expires, see ``link_signing``)."""
    path = Path(image.uri).resolve()
    if root is not None and path.is_relative_to(root) and len(path.relative_to(root).parts) > 1:
        rel = path.relative_to(root)
        return f"/data/local-files/?d={rel.as_posix()}", root / rel.parts[0]
    return signed_link(settings, image.project_id, "images", image.id), None


def refresh_links(
    session: Session,
    settings: Settings,
    project: Project,
    *,
    image_ids: set[int] | None = None,
    st: Studio | None = None,
) -> int:
    """Re-sign the signed links in the project's Label Studio tasks (every task, or those of
    ``image_ids``) with a new expiry and the project's current key; the number of tasks updated."""
    if project.ls_project_id is None:
        return 0
    st = st or studio(settings)
    tasks = st.task_data(project.ls_project_id)
    wanted = {i for d in tasks.values() if isinstance(i := d.get("defectloop_image_id"), int)}
    if image_ids is not None:
        wanted &= image_ids
    mine = wanted & set(session.scalars(select(Image.id).where(Image.project_id == project.id)))
    updated = 0
    for task_id, data in tasks.items():
        if data.get("defectloop_image_id") not in mine:
            continue
        new = {
            k: resign(v, settings, project.id, mine.__contains__)
            if k in ("image", "overlay") and isinstance(v, str)
            else v
            for k, v in data.items()
        }
        if new != data:
            st.update_task_data(task_id, new)
            updated += 1
    return updated


# ---- project setup ------------------------------------------------------------------------
def setup_project(session: Session, settings: Settings, project: Project, st: Studio | None = None) -> int:
    """Create or update the project's Label Studio project and its webhook; its id."""
    st = st or studio(settings)
    ls_id = st.ensure_project(project.ls_project_id, title=f"defectloop: {project.name}")
    if ls_id != project.ls_project_id:
        project.ls_project_id = ls_id
        session.flush()
    st.ensure_webhook(ls_id, f"{callback_base(settings)}/webhook")
    return ls_id
