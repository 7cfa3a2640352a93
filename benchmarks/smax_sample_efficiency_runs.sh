#!/usr/bin/env bash
# Start or resume experiment=smacv2_sample_efficiency's runs (issue 20 §3: E2GN2, GNN and
# MLP x seeds 0-2 on surrounded_and_reflect terran 5v5) as a queue of WORKERS niced
# one-thread processes (default 2: one per core of this project's CPU machines):
#   bash benchmarks/smax_sample_efficiency_runs.sh [RUNS_DIR] [TOTAL_ENV_STEPS] [WORKERS] [models] [seeds]
# A run with a checkpoint resumes (resume=, to TOTAL_ENV_STEPS: the preset's 2M unless
# given), so stopping the queue and starting it again loses at most one checkpoint
# period (20k env steps) per run. Afterwards, the curves of every run:
#   eqmarl plot-curves RUNS_DIR --metric eval_win_rate --out curves.png
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-docs/results/smax_sample_efficiency}
total=${2:-2000000}
workers=${3:-2}
mkdir -p "$runs"
jobs=()
for s in ${5:-0 1 2}; do for m in ${4:-e2gn2 gnn mlp}; do jobs+=("$m $s"); done; done

run_one() {  # MODEL SEED: one run to the end (or resumed to it), output appended to its log
  local m=$1 s=$2 d="$runs/${1}_s${2}"
  local args=(experiment=smacv2_sample_efficiency model="$m" seed="$s" logger.wandb_mode=disabled
    train.threads=1 "train.total_env_steps=$total" hydra.run.dir="$d")
  if [ -f "$d/checkpoints/latest" ]; then
    args=("resume=$d" "train.total_env_steps=$total" logger.wandb_mode=disabled)
  fi
  echo "$(date -u +%FT%TZ) start $d" >> "$runs/queue.log"
  OMP_NUM_THREADS=1 nice -n 10 python launch.py "${args[@]}" >> "$d.log" 2>&1 \
    && echo "$(date -u +%FT%TZ) done $d" >> "$runs/queue.log" \
    || echo "$(date -u +%FT%TZ) stopped $d (rc $?)" >> "$runs/queue.log"
}
export -f run_one
export runs total
printf '%s\n' "${jobs[@]}" | nohup xargs -P "$workers" -L 1 bash -c 'run_one $0 $1' >> "$runs/queue.log" 2>&1 &
echo "queue of ${#jobs[@]} runs, $workers at a time, in $runs (pid $!)"
