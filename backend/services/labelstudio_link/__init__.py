"""defectloop <-> Label Studio, by direction: connection (server, secret, links, setup), push
(batches out), ingest (answers in), ml_backend (Label Studio calling us); proposals are shared.

Ingestion's guarantees (exactly once, order-safe, append-only) are told in ingest.py.
"""

from __future__ import annotations

from backend.services.labelstudio_link.connection import (  # noqa: F401 - the package's public API
    LabelStudioUnavailable,
    callback_base,
    document_root,
    home,
    image_link,
    overlay_jpeg,
    overlay_link,
    refresh_links,
    secret_matches,
    setup_project,
    start_local,
    studio,
    webhook_secret,
)
from backend.services.labelstudio_link.ingest import (  # noqa: F401 - the package's public API
    Outcome,
    apply_export,
    handle_webhook,
    ingest_deletion,
    ingest_record,
    project_for_ls,
    run_sync_job,
    settle_current,
    sync_before_retrain,
    sync_project,
    task_proposal,
)
from backend.services.labelstudio_link.ml_backend import (  # noqa: F401 - the package's public API
    TaskRef,
    assist_result,
    live_proposals,
    predict_for_tasks,
    task_refs,
)
from backend.services.labelstudio_link.proposals import (  # noqa: F401 - the package's public API
    Proposal,
    cached_click_head,
    cached_predictor,
    mask_method,
    stored_map,
    stored_proposal,
    verdict_overlay,
)
from backend.services.labelstudio_link.push import (  # noqa: F401 - the package's public API
    PushReport,
    connect_ml_backend,
    human_labelled,
    push_batch,
    retire_open_tasks,
)
from backend.services.model_versions import (  # noqa: F401 - the package's public API
    active_model_version,
)
