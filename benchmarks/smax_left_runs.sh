#!/usr/bin/env bash
# Start or resume the surrounded-left SMAX learning runs (issue 10's learning and
# generalization experiments), niced, in the background, one process per run:
#   bash benchmarks/smax_left_runs.sh [RUNS_DIR] [models] [seeds]
# RUNS_DIR defaults to docs/results/smax_left, which holds each run's latest checkpoint,
# so a fresh checkout resumes exactly where the committed runs stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-docs/results/smax_left}
for m in ${2:-e2gn2 gnn mlp}; do for s in ${3:-0 1 2}; do
  d=$runs/left_${m}_s${s}
  extra=()
  if [ -f "$d/checkpoints/latest" ]; then extra=("resume=$d"); fi
  OMP_NUM_THREADS=1 nohup nice -n 10 python launch.py experiment=smacv2_generalization model="$m" seed="$s" \
    logger.wandb_mode=disabled hydra.run.dir="$d" "${extra[@]}" >> "$runs/left_${m}_s${s}.log" 2>&1 &
  echo "started $d (pid $!)"
done; done
