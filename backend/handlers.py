"""The composition root of background work: which service runs each kind of job.

``backend.jobs`` claims, runs, beats and reports jobs but never imports the services that do
the work; every executor gets this table from here. ``python -m backend.handlers`` is the
embedded worker process `serve` starts.
"""

from __future__ import annotations

import argparse
import logging

from backend.db.tables import JobKind
from backend.jobs.rq_executor import run as rq_run
from backend.jobs.runner import Handlers
from backend.jobs.worker import worker_loop
from backend.services.import_job import run_import_job
from backend.services.labelstudio_link import run_sync_job
from backend.services.retrain import run_predict_job, run_train_job
from backend.settings import Settings


def job_handlers() -> Handlers:
    """The handler of every job kind the service queues."""
    return {
        JobKind.TRAIN: run_train_job,
        JobKind.PREDICT: run_predict_job,
        JobKind.SYNC: run_sync_job,
        JobKind.IMPORT: run_import_job,
    }


def preload() -> None:
    """Import what jobs run (this table's services and the model code they load), so an RQ
    worker's forked work horses start with it (``backend.jobs.rq_executor.work``)."""
    from ml import evaluate_model, load_model, train_and_save  # noqa: F401 - imported for the horses

    job_handlers()


def run_rq_job(job_id: int) -> str:
    """What an RQ worker runs for a job id (``backend.jobs.dispatch.RQ_ENTRY``)."""
    return rq_run(job_id, job_handlers())


def main(argv: list[str] | None = None) -> None:
    """The embedded job worker (started by `defectloop serve`)."""
    parser = argparse.ArgumentParser(description="The embedded job worker (started by `defectloop serve`).")
    parser.add_argument("--parent-pid", type=int, help="stop when this process exits")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker_loop(Settings(), job_handlers(), parent_pid=args.parent_pid)


if __name__ == "__main__":
    main()
