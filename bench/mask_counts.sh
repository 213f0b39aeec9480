#!/usr/bin/env bash
# Detection and localisation against the number of training masks, on fixed splits: every run
# trains on the same images and labels, only the number of defective training images that keep
# their mask changes (0 = WEAK ... all). Three seeds (the seed picks the masked images and seeds
# training). magnetic-tile at 128x128, bsdata at 128x320 (bench/shrink_dataset.py copies).
#
#   bench/mask_counts.sh [RUNS_DIR] [TAG] [extra run options, e.g. perlin_threshold=0.4]
#
# Writes RUNS_DIR/masks_<dataset>_<TAG>.jsonl (finished runs are skipped, so it resumes);
# python bench/mask_counts.py RUNS_DIR/masks_*.jsonl prints the tables of docs/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/m24}
TAG=${2:-before}
EXTRA=${3:+,$3}
ROOT=${DATASETS:-$(cd .. && pwd)/shared/datasets}
[ -f "$ROOT/magnetic-tile/labels.csv" ] || { echo "skipped: $ROOT/magnetic-tile/labels.csv not found (set DATASETS=...)"; exit 0; }
mkdir -p "$RUNS"
PY=${PYTHON:-.venv/bin/python}
DL=${DEFECTLOOP:-.venv/bin/defectloop}
[ -f "$RUNS/mt_full.csv" ] || $DL split "$ROOT/magnetic-tile" --out "$RUNS/mt_full.csv" --seed 0 --val 0.15 --test 0.3
[ -f "$RUNS/bs_full.csv" ] || $DL split "$ROOT/bsdata" --out "$RUNS/bs_full.csv" --seed 0 --val 0.15 --test 0.3 \
  --reassign --group '^(\d+_\d{8})'
[ -d runs/small/magnetic-tile ] || $PY bench/shrink_dataset.py "$RUNS/mt_full.csv" --out runs/small/magnetic-tile --size 128 128
[ -d runs/small/bsdata ] || $PY bench/shrink_dataset.py "$RUNS/bs_full.csv" --out runs/small/bsdata --size 128 320
R=(--run "n0:masks=0$EXTRA" --run "n5:masks=5$EXTRA" --run "n10:masks=10$EXTRA" --run "n20:masks=20$EXTRA"
   --run "n50:masks=50$EXTRA" --run "all:regime=auto$EXTRA")
for seeds in "0" "1 2"; do
  # shellcheck disable=SC2086
  $PY bench/train_matrix.py runs/small/magnetic-tile/labels.csv --image-size 128 128 --device cpu \
    --out "$RUNS/masks_magnetic-tile_$TAG.jsonl" --seeds $seeds "${R[@]}"
  # shellcheck disable=SC2086
  $PY bench/train_matrix.py runs/small/bsdata/labels.csv --image-size 128 320 --device cpu \
    --out "$RUNS/masks_bsdata_$TAG.jsonl" --seeds $seeds "${R[@]}"
done
