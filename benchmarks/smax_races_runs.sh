#!/usr/bin/env bash
# Start or resume the other races' generalization runs (issue 20 §4: the surrounded-left
# table of experiment=smacv2_generalization for protoss and zerg, E2GN2 and GNN), niced,
# in the background, as one queue of WORKERS one-thread processes (default 1), seed by
# seed (seed 0 of every race first), to TOTAL env steps (default 300k; the preset's 2M is
# far past where the terran runs levelled off):
#   bash benchmarks/smax_races_runs.sh [RUNS_DIR] [races] [models] [seeds] [WORKERS] [TOTAL]
# Run RACE/MODEL/SEED lives in RUNS_DIR/RACE_MODEL_sSEED (default RUNS_DIR
# docs/results/smax_races, which holds each run's latest checkpoint, so a fresh checkout
# resumes where the committed runs stopped). The table of one race afterwards:
#   python benchmarks/smax_generalization.py docs/results/smax_races/zerg_{e2gn2,gnn}_s{0,1,2} \
#     --episodes 300 --out docs/results/smax_races_zerg.json
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-docs/results/smax_races} races=${2:-protoss zerg} models=${3:-e2gn2 gnn}
seeds=${4:-0 1 2} workers=${5:-1} total=${6:-300000}
mkdir -p "$runs"
queue() {
  for s in $seeds; do
    for race in $races; do
      FOREGROUND=1 bash benchmarks/preset_runs.sh smacv2_generalization "$runs" "${race}_" "$workers" \
        "$models" "$s" "$total" "env.race=$race"
    done
  done
}
queue > /dev/null 2>&1 < /dev/null &
disown
echo "queue of races ($races) x models ($models) x seeds ($seeds), $workers at a time, in $runs (pid $!)"
