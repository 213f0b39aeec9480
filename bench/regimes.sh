#!/usr/bin/env bash
# Train and evaluate every supervision regime on a shared dataset with seeded splits.
#
#   bench/regimes.sh magnetic-tile [RUNS_DIR] [extra train options...]
#   bench/regimes.sh bsdata        [RUNS_DIR] [extra train options...]
#
# Writes RUNS_DIR/<dataset>/<run>/{model/,metrics.json,train.log}; bench/summarize.py
# turns them into the tables of docs/RESULTS.md. Datasets are read from ../shared/datasets
# (or $DATASETS); the script stops with a message when they are absent.
set -euo pipefail
DATASET=${1:?usage: bench/regimes.sh magnetic-tile|bsdata [RUNS_DIR] [train options]}
RUNS=${2:-runs}
shift $(( $# >= 2 ? 2 : 1 ))
EXTRA=("$@")
ROOT=${DATASETS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/datasets}
DATA="$ROOT/$DATASET"
[ -f "$DATA/labels.csv" ] || { echo "skipped: $DATA/labels.csv not found (set DATASETS=...)"; exit 0; }
OUT="$RUNS/$DATASET"
mkdir -p "$OUT"

case "$DATASET" in
  magnetic-tile) SIZE=(256 256); SPLIT=(--seed 0 --val 0.15 --test 0.3) ;;
  # repeated photographs of the same drives: keep one drive-day in one split
  bsdata) SIZE=(192 480); SPLIT=(--seed 0 --val 0.15 --test 0.3 --reassign --group '^(\d+_\d{8})') ;;
  *) SIZE=(256 256); SPLIT=(--seed 0) ;;
esac

split() {  # split NAME [thinning options]
  local name=$1; shift
  [ -f "$OUT/$name.csv" ] || defectloop split "$DATA" --out "$OUT/$name.csv" "${SPLIT[@]}" "$@" >/dev/null
}

run() {  # run NAME CSV [train options]
  local name=$1 csv=$2; shift 2
  if [ -f "$OUT/$name/metrics.json" ]; then echo "done already: $OUT/$name"; return; fi
  mkdir -p "$OUT/$name"
  local cmd=(defectloop train "$csv" --out "$OUT/$name/model" --image-size "${SIZE[@]}" --quiet "$@" "${EXTRA[@]}")
  echo "${cmd[*]}" | tee "$OUT/$name/command.txt"
  local t0=$(date +%s)
  "${cmd[@]}" > "$OUT/$name/train.log" 2>&1
  echo $(( $(date +%s) - t0 )) > "$OUT/$name/wall_seconds.txt"
  defectloop evaluate "$OUT/$name/model" "$csv" --split test --json "$OUT/$name/metrics.json" --quiet >> "$OUT/$name/train.log"
  echo "evaluated: $OUT/$name ($(cat "$OUT/$name/wall_seconds.txt")s)"
}

split full
split unsup --train-defects 0
split weak --train-masks 0
for n in ${MASK_COUNTS:-5 20 50}; do split "mixed$n" --train-masks "$n"; done

for r in ${RUNS_ONLY:-unsupervised weak mixed full}; do
  case $r in
    unsupervised) run unsupervised "$OUT/unsup.csv" ;;
    weak) run weak "$OUT/weak.csv" ;;
    mixed) for n in ${MASK_COUNTS:-5 20 50}; do run "mixed$n" "$OUT/mixed$n.csv"; done ;;
    full) run full "$OUT/full.csv" --regime full ;;
  esac
done
