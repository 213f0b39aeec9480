"""Train and evaluate a matrix of configurations on one split CSV, one JSON line per run.

Each run: optionally thin the training labels (seeded, like ``defectloop split
--train-defects/--train-masks``), train on split=train, calibrate on split=val, evaluate
on split=test, append metrics and times to ``--out``. Runs already in ``--out`` are
skipped, so an interrupted matrix resumes; with ``--deadline-min`` no run starts after
the deadline, so a time-limited machine returns what it finished.

    python bench/train_matrix.py runs/small/magnetic-tile/labels.csv --image-size 256 256 \\
        --out runs/matrix/magnetic-tile.jsonl --seeds 0 1 2 \\
        --run full-fast:regime=full,profile=fast --run full-paper:regime=full,profile=paper \\
        --run few10:defects=10,masks=1,noise_sigma=0.5,standardize_features=1

A run spec is ``NAME:key=value,...``. Keys: ``defects`` and ``masks`` (label thinning),
``noval=1`` (drop the val split, so thresholds come from the training labels: a holdout or
cross-fitting, ``calibration=...``) and
any ``ml.train.TrainConfig`` field (``regime``, ``profile``, ``epochs``, ``noise_sigma``,
``standardize_features``, ``image_score``, ``perlin_threshold``, ``backbone``, ...).

``--profile NAME:base=fast,upscale=2,seg_hidden=1024`` defines an experimental training
profile for this run only (any ``ml.train.Profile`` field over a published base), so that
one change between ``fast`` and ``paper`` can be measured at a time:

    python bench/train_matrix.py small/magnetic-tile/labels.csv --out ablation.jsonl \\
        --profile fast-up2:base=fast,upscale=2 --run up2:regime=full,profile=fast-up2,epochs=6
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.data import SplitPlan, assign_splits, load_dataset
from ml.evaluate import evaluate
from ml.pipeline import train_and_save
from ml.predict import Predictor
from ml.train import PROFILES, Profile, TrainConfig

THINNING = ("defects", "masks")
#: ``noval=1`` drops the val split, as in a loop round: thresholds then come from the training labels
DATASET_KEYS = (*THINNING, "noval")
_FIELDS = {f.name: f for f in fields(TrainConfig)}
_PROFILE_FIELDS = {f.name: f for f in fields(Profile)}


def parse_profile(spec: str) -> tuple[str, Profile]:
    """``NAME:base=fast,key=value,...`` -> a Profile: the base profile with the given fields replaced."""
    name, _, body = spec.partition(":")
    items = dict(item.partition("=")[::2] for item in filter(None, body.split(",")))
    base = items.pop("base", "fast")
    if base not in PROFILES:
        raise SystemExit(f"profile {name!r}: unknown base {base!r} ({', '.join(PROFILES)})")
    unknown = set(items) - set(_PROFILE_FIELDS)
    if unknown:
        raise SystemExit(
            f"profile {name!r}: unknown keys {sorted(unknown)} (Profile fields: {sorted(_PROFILE_FIELDS)})"
        )

    def typed(key: str, text: str) -> int | float | None:
        if text.lower() == "none":
            return None
        return float(text) if "float" in str(_PROFILE_FIELDS[key].type) else int(text)

    values = {k: typed(k, v) for k, v in items.items()}
    return name, replace(PROFILES[base], **values)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_value(key: str, text: str) -> object:
    """A run-spec value typed like the TrainConfig field it sets."""
    if key in DATASET_KEYS or key in ("epochs", "seed"):
        return int(text)
    kind = str(_FIELDS[key].type)
    if kind == "int":
        return int(text)
    if "bool" in kind:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise SystemExit(f"{key}={text!r}: expected a boolean (1/0, true/false, yes/no, on/off)")
    if "float" in kind:
        return float(text)
    return text


def parse_run(spec: str) -> tuple[str, dict[str, object]]:
    name, _, body = spec.partition(":")
    opts: dict[str, object] = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in DATASET_KEYS and key not in _FIELDS:
            raise SystemExit(f"run {name!r}: unknown key {key!r} (TrainConfig fields, defects, masks, noval)")
        opts[key] = parse_value(key, value)
    return name, opts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "data",
        type=Path,
        help="dataset folder or labels CSV with train/val/test splits",
    )
    ap.add_argument(
        "--out",
        type=Path,
        required=True,
        help="JSON lines file (appended; finished runs skipped)",
    )
    ap.add_argument("--image-size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    ap.add_argument("--run", action="append", required=True, help="NAME:key=value,... (repeatable)")
    ap.add_argument(
        "--profile",
        action="append",
        default=[],
        help="NAME:base=fast|paper,FIELD=VALUE,... an experimental profile (repeatable)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--deadline-min",
        type=float,
        default=None,
        help="start no run after this many minutes",
    )
    args = ap.parse_args()
    t_start = time.monotonic()
    PROFILES.update(parse_profile(s) for s in args.profile)
    runs = [parse_run(s) for s in args.run]
    done = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["name"], r["seed"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    full = load_dataset(args.data)
    for seed in args.seeds:
        for name, opts in runs:
            if (name, seed) in done:
                continue
            if args.deadline_min is not None and time.monotonic() - t_start > args.deadline_min * 60:
                print(f"deadline reached: {name} seed {seed} not started", flush=True)
                continue
            thin = {k: opts[k] for k in THINNING if k in opts}
            cfg_opts = {k: v for k, v in opts.items() if k not in DATASET_KEYS}
            ds = full
            if thin:
                plan = SplitPlan(
                    seed=seed,
                    train_defects=thin.get("defects"),
                    train_masks=thin.get("masks"),
                )
                ds = assign_splits(full, plan)
            if opts.get("noval"):
                ds = replace(ds, samples=tuple(s for s in ds.samples if s.split != "val"))
            cfg = TrainConfig(
                image_size=tuple(args.image_size),
                seed=seed,
                device=args.device,
                **cfg_opts,
            )
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                summary = train_and_save(ds, Path(tmp) / "model", cfg)
            t1 = time.perf_counter()
            tr = summary.trained
            pred = Predictor(
                tr.extractor,
                tr.model,
                cfg.image_size,
                summary.thresholds,
                image_score=tr.settings.image_score,
            )
            metrics = evaluate(pred, list(ds.select("test").samples))
            row = {
                "name": name,
                "seed": seed,
                "options": opts,
                "regime": tr.regime.value,
                "settings": {
                    k: getattr(tr.settings, k)
                    for k in (
                        "noise_sigma",
                        "standardize",
                        "image_score",
                        "perlin_threshold",
                        "stop_grad",
                        "seg_weight",
                    )
                },
                "n_train": tr.n_train,
                "calibration": summary.calibration_source.value,
                "profile": asdict(cfg.profile_spec()),
                "epochs": len(tr.losses),
                "loss_first_last": [tr.losses[0], tr.losses[-1]],
                "feature_s": round(tr.feature_seconds, 1),
                "heads_s": round(tr.train_seconds, 1),
                "train_total_s": round(t1 - t0, 1),
                "eval_s": round(time.perf_counter() - t1, 1),
                "device": str(pred.device),
                "metrics": metrics,
            }
            with args.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            m = metrics
            print(
                f"{name} seed {seed}: {tr.regime.value} img AUROC {m['image_auroc']:.3f} AP {m['image_ap']:.3f} "
                f"px AUPRO {m['pixel_aupro'] if m['pixel_aupro'] is None else round(m['pixel_aupro'], 3)} "
                f"heads {tr.train_seconds:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
