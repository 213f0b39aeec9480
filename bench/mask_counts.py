"""Tables of detection and localisation against the number of training masks, seeds as ranges.

Reads the JSON lines ``bench/mask_counts.sh`` (``bench/train_matrix.py``) writes and prints, per
file, one markdown row per run name: image AUROC, image AP, image F1, pixel AUPRO and pixel AP as
the mean over seeds with the lowest and highest seed in brackets, and the seeds counted.

    python bench/mask_counts.py runs/m24/masks_magnetic-tile_before.jsonl runs/m24/masks_bsdata_before.jsonl

``--gather OUT`` first writes OUT from chosen runs of other files, each argument
``FILE:NAME=AS,...`` (the run NAME's rows, renamed AS), then tables OUT: how a curve is put
together from runs measured in separate matrices (e.g. the counts at a new default):

    python bench/mask_counts.py --gather after.jsonl before.jsonl:n0=n0 perlin.jsonl:n5-p4=n5,n20-p4=n20
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

METRICS = (
    ("image_auroc", "img AUROC"),
    ("image_ap", "img AP"),
    ("image_f1", "img F1"),
    ("pixel_aupro", "px AUPRO"),
    ("pixel_ap", "px AP"),
)
ORDER = ("n0", "n5", "n10", "n20", "n50", "all")


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSON-lines file, the first of each (run, seed) only (a matrix run twice
    over one file appends the same run again; with one thread the rows are identical)."""
    seen: set[tuple[str, int]] = set()
    rows = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if (r["name"], r["seed"]) not in seen:
            seen.add((r["name"], r["seed"]))
            rows.append(r)
    return rows


def cell(values: list[float]) -> str:
    """``mean [min, max]`` in percent."""
    if not values:
        return "-"
    pct = [100 * v for v in values]
    mean = sum(pct) / len(pct)
    return f"{mean:.1f} [{min(pct):.1f}, {max(pct):.1f}]" if len(pct) > 1 else f"{mean:.1f}"


def table(path: Path) -> str:
    rows: dict[str, list[dict]] = defaultdict(list)
    for r in read_rows(path):
        rows[r["name"]].append(r)
    names = sorted(rows, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    head = "| run | masks | regime | seeds | " + " | ".join(label for _, label in METRICS) + " |"
    out = [f"**{path.stem}**", "", head, "|" + "---|" * (4 + len(METRICS))]
    for name in names:
        runs = rows[name]
        masks = sorted({r["n_train"].get("mask", 0) for r in runs})
        regimes = sorted({r["regime"] for r in runs})
        vals = [cell([r["metrics"][k] for r in runs if r["metrics"].get(k) is not None]) for k, _ in METRICS]
        seeds = ",".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        out.append(
            f"| {name} | {'/'.join(map(str, masks))} | {'/'.join(regimes)} | {seeds} | " + " | ".join(vals) + " |"
        )
    return "\n".join(out)


def plot(files: list[Path], out: Path) -> None:
    """Image AP and pixel AP against the number of training masks, one line per file, the seeds'
    range as a band (the count axis is symmetric-log, so 0 and all masks fit)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for path in files:
        by_count: dict[int, list[dict]] = defaultdict(list)
        for r in read_rows(path):
            by_count[int(r["n_train"].get("mask", 0))].append(r)
        counts = sorted(by_count)
        for ax, key in zip(axes, ("image_ap", "pixel_ap"), strict=True):
            vals = [[100 * r["metrics"][key] for r in by_count[c] if r["metrics"].get(key) is not None] for c in counts]
            mean = [sum(v) / len(v) for v in vals]
            ax.plot(counts, mean, marker="o", label=path.stem)
            ax.fill_between(counts, [min(v) for v in vals], [max(v) for v in vals], alpha=0.2)
    for ax, title in zip(axes, ("image AP (detection)", "pixel AP (localisation)"), strict=True):
        ax.set_xscale("symlog", linthresh=5)
        ticks = [0, 5, 10, 20, 50, 100, 200]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("defective training images with a mask")
        ax.set_ylabel("%")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def gather(out: Path, specs: list[str]) -> None:
    """Write ``out`` with the rows of ``FILE:NAME=AS,...`` specs, each run renamed."""
    lines = []
    for spec in specs:
        src, _, body = spec.rpartition(":")
        items = body.split(",")
        if not src or not all("=" in item for item in items):
            raise SystemExit(f"--gather: {spec!r} is not FILE:NAME=AS,...")
        names = dict(item.split("=", 1) for item in items)
        rows = [r for r in read_rows(Path(src)) if r["name"] in names]
        missing = set(names) - {r["name"] for r in rows}
        if missing:
            raise SystemExit(f"--gather: {src} has no run named {', '.join(sorted(missing))}")
        lines += [json.dumps({**r, "name": names[r["name"]], "measured_as": r["name"]}) for r in rows]
    out.write_text("".join(f"{line}\n" for line in lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "files",
        type=Path,
        nargs="+",
        help="JSON lines written by bench/train_matrix.py (with --gather: FILE:NAME=AS,...)",
    )
    ap.add_argument("--plot", type=Path, default=None, help="also write a PNG: AP against mask count, seeds as bands")
    ap.add_argument(
        "--gather", type=Path, default=None, help="write this file from the FILE:NAME=AS,... arguments, then table it"
    )
    args = ap.parse_args()
    if args.gather is not None:
        gather(args.gather, [str(f) for f in args.files])
        args.files = [args.gather]
    print("\n\n".join(table(f) for f in args.files))
    if args.plot is not None:
        plot(args.files, args.plot)


if __name__ == "__main__":
    main()
