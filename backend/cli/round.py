"""`defectloop round`: one step of the active-learning loop for a project."""

from __future__ import annotations

from typing import Annotated

import typer

from backend.cli.project import client, follow, running_job
from ml import AskPolicy


def round_cmd(
    project: Annotated[str, typer.Argument(help="Project name or id.")],
    budget: Annotated[
        float | None,
        typer.Option(
            help="Cost units to spend (a verdict costs 1, a mask 10 by default; default: the project's round budget)."
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="random, uncertainty, disagreement, diversity, hybrid or top_score (default: the project's)."
        ),
    ] = None,
    ask: Annotated[
        AskPolicy,
        typer.Option(
            help=(
                "auto (verdicts and masks), verdict, mask, or staged (verdicts until image AP stops rising, then auto)."
            )
        ),
    ] = AskPolicy.AUTO,
    close: Annotated[bool, typer.Option("--close", help="Close the open round: sync its answers and retrain.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --close: retrain even when the round has no answers.")
    ] = False,
    no_push: Annotated[
        bool, typer.Option("--no-push", help="Select the batch without sending it to Label Studio.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Wait for a bootstrap or close retrain, with a progress bar (also one already running)."
        ),
    ] = False,
) -> None:
    """Run the next step of the loop.

    A project without rounds gets round 0 (the bootstrap: unsupervised training on the pool, then pool scoring). Otherwise a new round selects a batch with the strategy and pushes it to Label Studio pre-annotated; `--close` then syncs the answers, retrains and records the round (a round without answers only with `--force`). While a round retrains, `--wait` follows its job.
    """  # noqa: E501 - typer keeps a docstring's line breaks in --help: a paragraph stays one line
    from backend.client import ClientError, LocalClient

    c = client()
    pid = c.find_project(project)["id"]
    try:
        if close:
            res = c.round_action(pid, "close", {"force": force})
        elif [r["status"] for r in c.rounds(pid)] in ([], ["failed"]):  # no bootstrap yet, or it failed
            res = c.round_action(pid, "bootstrap")
        else:
            rnd = c.round_action(
                pid, "start", {"budget": budget, "strategy": strategy, "ask": ask, "push": not no_push}
            )
            kinds = [k for _, k in rnd["asks"]]
            typer.echo(
                f"round {rnd['index']} ({rnd['strategy']}): {len(kinds)} images, {kinds.count('mask')} asking "
                f"for a mask"
            )
            typer.echo(rnd["message"] or "selected (not pushed)")
            return
    except ClientError as e:
        res = {"job": running_job(c, e, wait), "round": None}  # a retrain is running: --wait waits for it
    job = res["job"]
    if res["round"] is not None:
        typer.echo(f"round {res['round']['index']}: retrain job {job['id']} queued")
    if not wait:
        return
    if isinstance(c, LocalClient):  # no worker runs jobs here: run it (a job someone else claimed is left alone)
        import threading

        threading.Thread(target=c.run_job_here, args=(job["id"],), daemon=True).start()
    follow(c, job["id"])
