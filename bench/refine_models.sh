#!/usr/bin/env bash
# Train one model per supervision regime on a seeded split, for bench/refine_masks.py.
#   bench/refine_models.sh DATASET OUT_DIR H W [split options]
# writes OUT_DIR/{full,unsupervised,weak,mixed5,mixed20}.csv and OUT_DIR/models/<regime>/.
# The regimes share the split (val and test identical); only the training labels differ.
# Models already trained are kept, so an interrupted run resumes.
set -euo pipefail
data=$1 out=$2 h=$3 w=$4
shift 4
mkdir -p "$out/models"
[ -f "$out/full.csv" ] || defectloop split "$data" --out "$out/full.csv" --seed 0 --val 0.15 --test 0.3 "$@"
[ -f "$out/unsupervised.csv" ] || defectloop split "$out/full.csv" --out "$out/unsupervised.csv" --train-defects 0
[ -f "$out/weak.csv" ] || defectloop split "$out/full.csv" --out "$out/weak.csv" --train-masks 0
[ -f "$out/mixed5.csv" ] || defectloop split "$out/full.csv" --out "$out/mixed5.csv" --train-masks 5
[ -f "$out/mixed20.csv" ] || defectloop split "$out/full.csv" --out "$out/mixed20.csv" --train-masks 20
for r in unsupervised weak mixed5 mixed20 full; do
  [ -f "$out/models/$r/config.json" ] && continue
  defectloop train "$out/$r.csv" --out "$out/models/$r" --image-size "$h" "$w" --quiet
done
