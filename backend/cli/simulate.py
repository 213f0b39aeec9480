"""`defectloop simulate`: plan a line's labelling on a fully labelled dataset."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from ml import AskPolicy


def _pair(text: str, what: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{what}: expected two numbers like 4,40, got {text!r}") from None
    return a, b


def _size(text: str) -> tuple[int, int]:
    """``128`` (square) or ``128x320`` (height x width) as a training resolution."""
    try:
        parts = [int(x) for x in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 16:
        raise typer.BadParameter(
            f"--image-size: expected a size like 256 or 128x320 (height x width, >= 16), got {text!r}"
        )
    return parts[0], parts[1]


def simulate_cmd(
    data_dir: Annotated[
        Path, typer.Argument(help="A fully labelled dataset: labels.csv (with masks) or the MVTec layout.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            help=(
                "Where the runs, curves (PNG, JSON) and summary go; runs there with the same settings are "
                "reused, resumed or extended to --rounds."
            )
        ),
    ] = Path("simulation"),
    strategies: Annotated[
        str, typer.Option(help="Comma-separated: random, uncertainty, disagreement, diversity, hybrid, top_score.")
    ] = "random,uncertainty,hybrid,top_score",
    rounds: Annotated[int, typer.Option(min=1, help="Rounds after the bootstrap.")] = 4,
    budget: Annotated[
        float, typer.Option(min=1, help="Cost units per round (a verdict costs --costs[0], a mask --costs[1]).")
    ] = 30.0,
    seeds: Annotated[
        int, typer.Option(min=1, help="Runs per strategy (seeds F..F+N-1, F = --first-seed): the bands on the curves.")
    ] = 3,
    first_seed: Annotated[
        int,
        typer.Option(
            min=0,
            help="The first seed: run seeds one at a time (--seeds 1 --first-seed 2) and combine the studies later.",
        ),
    ] = 0,
    ask: Annotated[
        AskPolicy,
        typer.Option(
            help=(
                "auto (the strategy decides verdict or mask), verdict, mask, or staged (verdicts until image AP "
                "stops rising by a point per round, then auto)."
            )
        ),
    ] = AskPolicy.AUTO,
    mask_share: Annotated[
        float, typer.Option(min=0, max=1, help="At most this share of a round's budget goes to masks.")
    ] = 0.5,
    costs: Annotated[str, typer.Option(help="Cost units of a verdict and of a mask.")] = "1,10",
    mask_cost: Annotated[
        str,
        typer.Option(
            help=(
                "Mask cost model: edit (a verdict's cost plus the share of the mask changed from the proposal, "
                "of the difference: a mask drawn from nothing costs the full mask cost) or flat (always the "
                "mask cost)."
            )
        ),
    ] = "edit",
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Probability that the simulated annotator gives the wrong verdict.")
    ] = 0.0,
    lead_time: Annotated[
        str, typer.Option(help="Seconds the annotator spends on a verdict and on a mask (jittered).")
    ] = "4,40",
    image_size: Annotated[
        str, typer.Option(help="Training resolution: 256 (square) or HEIGHTxWIDTH such as 128x320 for long images.")
    ] = "256",
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs per round (default: the fast profile's step-capped schedule).")
    ] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone (default: the project default).")] = None,
    test_fraction: Annotated[
        float,
        typer.Option(min=0.05, max=0.9, help="Test share when the dataset has no test split (seeded, stratified)."),
    ] = 0.3,
    pseudo_normal: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=0.99,
            help=(
                "Share of the still unlabelled pool (lowest scores) joining each round's training as "
                "pseudo-normal (default: the project default, 0.5; 0: off)."
            ),
        ),
    ] = None,
    min_defects: Annotated[
        int | None,
        typer.Option(
            min=0,
            help=(
                "Rounds train unsupervised until the labels hold this many defective images (default: the "
                "project default, 20; 0: off)."
            ),
        ),
    ] = None,
    no_reference: Annotated[
        bool, typer.Option("--no-reference", help="Skip the full-supervision reference (no summary targets).")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Run the whole loop unattended against a real Label Studio, answered by a simulated annotator.

    Each strategy and seed is its own project: the test split is the fixed evaluation set, every other image starts unlabelled in the pool. Per round the service selects and pushes a batch, the simulated annotator answers each task in Label Studio from the ground truth (as asked: verdict or mask), webhooks and the sync bring the answers in, and the model retrains. Writes curves_vs_{labels,cost,annotation_seconds}.png, curves.json and summary.md: the cost each strategy needed to reach 95% and 99% of full supervision's image AP, relative to random.
    """  # noqa: E501 - typer keeps a docstring's line breaks in --help: a paragraph stays one line
    from simulator import AnnotatorModel, SimConfig, simulate

    c_img, c_mask = _pair(costs, "--costs")
    t_verdict, t_mask = _pair(lead_time, "--lead-time")
    if mask_cost not in ("edit", "flat"):
        raise typer.BadParameter(f"--mask-cost: edit or flat, got {mask_cost!r}")
    cfg = SimConfig(
        data=data_dir,
        out=out,
        strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
        rounds=rounds,
        budget=budget,
        seeds=tuple(range(first_seed, first_seed + seeds)),
        ask=ask,
        mask_share=mask_share,
        cost_image=c_img,
        cost_mask=c_mask,
        mask_cost=mask_cost,
        annotator=AnnotatorModel(error_rate=error_rate, verdict_seconds=t_verdict, mask_seconds=t_mask),
        image_size=_size(image_size),
        backbone=backbone,
        epochs=epochs,
        test_fraction=test_fraction,
        pseudo_normal_fraction=pseudo_normal,
        min_defects_supervised=min_defects,
        reference=not no_reference,
        device=device,
    )

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt  # a terminated study stops the Label Studio it started, like Ctrl-C

    signal.signal(signal.SIGTERM, interrupted)
    curves = simulate(cfg, say=lambda m: typer.echo(m, err=True))
    typer.echo((out / "summary.md").read_text())
    typer.echo(f"curves: {out}/curves_vs_cost.png (and _labels, _annotation_seconds), numbers: {out}/curves.json")
    if not curves["summary"]:
        typer.echo("no reference was trained: the summary has no targets", err=True)
