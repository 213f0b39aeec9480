"""The pure-ML commands: train, evaluate, predict, assist, demo-data, split.

They work on files only (no service, no database); each tunes the process for torch first
(:func:`backend.runtime.tune_process`). Their errors take the command line's one path
(``backend.cli.errors``): one ``error:`` line, exit status 2, the traceback with ``--verbose``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from backend.cli.errors import echo_error
from backend.cli.progress import ProgressReporter
from backend.settings import Settings
from ml import CalibrationChoice, ProfileName

Verbose = Annotated[bool, typer.Option("--verbose", help="Show a traceback on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]


def _tune() -> None:
    """Tune this process for torch (memory reuse, threads) before the command's work."""
    from backend.runtime import tune_process

    tune_process()


def train(
    data_dir: Annotated[Path, typer.Argument(help="Dataset folder (labels.csv or MVTec layout) or a labels CSV.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    regime: Annotated[str, typer.Option(help="auto, unsupervised, weak, mixed or full.")] = "auto",
    backbone: Annotated[str | None, typer.Option(help="Backbone name (see docs/ml.md).")] = None,
    backbone_weights: Annotated[
        str | None, typer.Option(help="Weights file for the backbone ('random' only for tests).")
    ] = None,
    image_size: Annotated[tuple[int, int], typer.Option(help="Input height and width.")] = (256, 256),
    profile: Annotated[
        ProfileName, typer.Option(help="fast (default) or paper (300 epochs, as published).")
    ] = ProfileName.FAST,
    epochs: Annotated[
        int | None, typer.Option(help="Train exactly this many epochs (overrides the profile, lifts its step cap).")
    ] = None,
    threshold: Annotated[str, typer.Option(help="Threshold rule: f1, fpr:X or fnr:X.")] = "f1",
    perlin_threshold: Annotated[
        float | None, typer.Option(help="Synthetic-defect threshold (default: the regime's; higher = smaller).")
    ] = None,
    distance_weighting: Annotated[
        bool | None,
        typer.Option(
            "--distance-weighting/--no-distance-weighting",
            help="Distance-transform weights on mask pixels (default: the regime's).",
        ),
    ] = None,
    calibration: Annotated[
        CalibrationChoice,
        typer.Option(
            help="Without a val split: auto (cross-fit while fewer than 50 labelled defects train, "
            "else a 20% holdout), holdout or crossfit."
        ),
    ] = CalibrationChoice.AUTO,
    click_head_steps: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Steps of the one-click head taught from the training masks when there are at least 20 "
            "(default: the click_head_steps setting, 800: about 12 minutes on 2 CPU cores); 0: none.",
        ),
    ] = None,
    click_head_min_masks: Annotated[
        int,
        typer.Option(min=2, help="Training masks the click head needs (fewer: none; 5 taught a head worse than none)."),
    ] = 20,
    device: Device = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Train SuperSimpleNet on split=train; calibrate thresholds on split=val (without one: on
    cross-fitted predictions or a holdout of the training labels, see --calibration). With at
    least 20 training masks, also teach the one-click head `assist` and Label Studio's smart
    tools use (see --click-head-steps)."""
    _tune()
    from ml import (
        DEFAULT_BACKBONE,
        TrainConfig,
        describe,
        get_backbone_spec,
        load_dataset,
        parse_regime,
        train_and_save,
    )

    chosen = parse_regime(regime)
    cfg = TrainConfig(
        backbone=backbone or DEFAULT_BACKBONE,
        backbone_weights=backbone_weights or "pretrained",
        image_size=(image_size[0], image_size[1]),
        profile=profile,
        epochs=epochs,
        regime=chosen,
        seed=seed,
        device=device,
        perlin_threshold=perlin_threshold,
        distance_weighting=distance_weighting,
        calibration=calibration.value,
        click_head_steps=Settings().click_head_steps if click_head_steps is None else click_head_steps,
        click_head_min_masks=click_head_min_masks,
    )
    cfg.profile_spec()
    get_backbone_spec(cfg.backbone)  # fail on a typo before reading any data
    dataset = load_dataset(data_dir)
    if not quiet:
        typer.echo(describe(dataset))
    with ProgressReporter(enabled=not quiet) as rep:
        summary = train_and_save(dataset, out, cfg, threshold_mode=threshold, progress=rep)
    t = summary.thresholds
    typer.echo(
        f"regime {summary.trained.regime.value}, {summary.n_train} training images "
        f"({summary.trained.n_train}), features {summary.trained.feature_seconds:.0f}s, "
        f"heads {summary.trained.train_seconds:.0f}s"
    )
    typer.echo(
        f"thresholds ({summary.calibration_source.value}, {summary.n_calibration} images): "
        f"image {t.image:.4f} ({t.image_method}), pixel {t.pixel:.4f} ({t.pixel_method})"
    )
    for note in t.notes:
        typer.echo(f"note: {note}")
    if summary.click_head is not None:
        h = summary.click_head.info
        typer.echo(f"click head: taught by {h.n_masks} masks in {h.steps} steps ({h.seconds:.0f}s)")
    typer.echo(f"model written to {summary.model_dir}")


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="A model directory written by `train`.")],
    data_dir: Annotated[Path, typer.Argument(help="Dataset folder or labels CSV.")],
    split: Annotated[str, typer.Option(help="Which split to evaluate.")] = "test",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    backbone_weights: Annotated[
        str | None, typer.Option(help="Backbone weights file, if not the recorded one.")
    ] = None,
    device: Device = "auto",
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Image AUROC / AP / F1 and pixel AUROC / AUPRO / AP on one split."""
    _tune()
    from ml import DataError, load_dataset, load_model
    from ml import evaluate_model as run_eval

    loaded = load_model(model_dir, device=device, backbone_weights=backbone_weights)
    samples = list(load_dataset(data_dir).select(split).samples)
    if not samples:
        raise DataError(f"{data_dir}: no rows with split={split}")
    with ProgressReporter(enabled=not quiet) as rep:
        metrics = run_eval(loaded.predictor, samples, progress=lambda d, t: rep("evaluate", d, t, {}))
    _print_metrics(metrics)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(metrics, indent=2))


def _print_metrics(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="evaluation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def predict(
    model_dir: Annotated[Path, typer.Argument(help="A model directory written by `train`.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")],
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 8,
    backbone_weights: Annotated[
        str | None, typer.Option(help="Backbone weights file, if not the recorded one.")
    ] = None,
    device: Device = "auto",
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Scores and decisions (predictions.csv), heatmap overlays and pseudo-mask PNGs."""
    _tune()
    from backend.cli.predict_files import predict_files

    n = predict_files(model_dir, paths, out, batch_size, device, backbone_weights, quiet)
    typer.echo(f"{n} images scored; results in {out}")


def assist(
    model_dir: Annotated[Path, typer.Argument(help="A model directory written by `train`.")],
    clicks: Annotated[
        Path, typer.Argument(help="CSV with file,x,y (optional x2,y2: a box), pixels of the original image.")
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Output folder: one mask PNG per image, named by its file stem, and latency.json."),
    ],
    verbose: Verbose = False,
) -> None:
    """One-click masks: the defect at each click (or in each box), and each click's latency.

    A point is segmented by MODEL_DIR's click head (taught by its training masks) when it has
    one, else from the image around it; a box by GrabCut. Label Studio's smart point and box
    tools get the same masks. latency.json records the model and the segmenter.

    A bad row (click outside the image, missing or unreadable file) is reported on one line
    naming the row; the other rows are still done, and the exit status is 1.
    """
    _tune()
    from backend.cli.assist_files import assist_files

    report = assist_files(model_dir, clicks, out, say_error=echo_error)
    p50 = "-" if report["p50_ms"] is None else f"{report['p50_ms']:.0f}"
    p95 = "-" if report["p95_ms"] is None else f"{report['p95_ms']:.0f}"
    typer.echo(
        f"{report['clicks']} clicks done, {len(report['errors'])} failed; p50 {p50} ms, p95 {p95} ms; results in {out}"
    )
    if report["errors"]:
        raise typer.Exit(1)


def demo_data(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write images/, masks/, labels.csv into.")],
    seed: Annotated[int, typer.Option(help="Generator seed (same seed, same bytes).")] = 0,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 256,
    mask_fraction: Annotated[float, typer.Option(help="Share of defective train images with a mask.")] = 1.0,
    verbose: Verbose = False,
) -> None:
    """Generate the demo dataset: textured surfaces with scratches, spots and cracks."""
    _tune()
    from ml import DemoSpec, generate

    if not 0.0 <= mask_fraction <= 1.0:
        raise ValueError(f"--mask-fraction must be within [0, 1], got {mask_fraction}")
    path = generate(out_dir, DemoSpec(size=size, seed=seed, mask_fraction=mask_fraction))
    typer.echo(f"demo dataset written: {path}")


def split(
    data_dir: Annotated[Path, typer.Argument(help="Dataset folder or labels CSV.")],
    out: Annotated[Path, typer.Option("--out", help="labels CSV to write (paths relative to it).")],
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    val: Annotated[float, typer.Option(help="Validation fraction of unassigned rows.")] = 0.15,
    test: Annotated[float, typer.Option(help="Test fraction of unassigned rows.")] = 0.3,
    group: Annotated[
        str | None, typer.Option(help="Regex over file names; its first group keeps near-duplicates together.")
    ] = None,
    reassign: Annotated[bool, typer.Option(help="Also reassign rows already in train/val/test.")] = False,
    train_defects: Annotated[int | None, typer.Option(help="Keep this many defective train images.")] = None,
    train_masks: Annotated[int | None, typer.Option(help="Keep masks on this many defective train images.")] = None,
    verbose: Verbose = False,
) -> None:
    """Write a seeded split (and optionally thinned training labels) as a new labels CSV."""
    _tune()
    from ml import SplitPlan, assign_splits, describe, load_dataset, write_labels_csv

    if val < 0 or test < 0 or val + test >= 1:
        raise ValueError("--val and --test must be >= 0 and sum to less than 1")
    plan = SplitPlan(seed, val, test, not reassign, group, train_defects, train_masks)
    ds = assign_splits(load_dataset(data_dir, check_pixels=False), plan)
    write_labels_csv(ds, out)
    typer.echo(describe(ds))
    typer.echo(f"written: {out}")
