#!/usr/bin/env bash
# Start or resume an experiment= preset's runs (models x seeds) as a queue of WORKERS niced
# one-thread processes, in the background:
#   bash benchmarks/preset_runs.sh PRESET RUNS_DIR PREFIX WORKERS "MODELS" "SEEDS" [TOTAL_ENV_STEPS] ["OVERRIDES"]
# Run MODEL/SEED lives in RUNS_DIR/PREFIX<model>_s<seed> (its output in the same path plus
# .log; starts, ends and stops in RUNS_DIR/queue.log). A run with a checkpoint resumes
# (resume=), so stopping the queue and starting it again loses at most one checkpoint
# period per run. TOTAL_ENV_STEPS, when given (non-empty), replaces the preset's budget (also
# on resume); OVERRIDES (space-separated, e.g. "env.race=zerg") are added to a fresh run's
# command (a resumed run keeps its saved config). With FOREGROUND=1 the queue runs in the
# foreground and the script returns when it ends.
# Used by smax_left_runs.sh, smax_sample_efficiency_runs.sh, smax_team_sizes_runs.sh and
# smax_races_runs.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=$1 runs=$2 prefix=$3 workers=$4 models=$5 seeds=$6 total=${7:-} overrides=${8:-}
mkdir -p "$runs"
jobs=()
for s in $seeds; do for m in $models; do jobs+=("$m $s"); done; done

run_one() {  # MODEL SEED: one run to the end (or resumed to it)
  local m=$1 s=$2 d="$runs/${prefix}${1}_s${2}"
  local budget=()
  if [ -n "$total" ]; then budget=("train.total_env_steps=$total"); fi
  local args=(experiment="$preset" model="$m" seed="$s" train.threads=1 hydra.run.dir="$d")
  # shellcheck disable=SC2206  # OVERRIDES is a space-separated list by design
  args+=($overrides)
  if [ -f "$d/checkpoints/latest" ]; then args=("resume=$d"); fi
  echo "$(date -u +%FT%TZ) start $d" >> "$runs/queue.log"
  local rc=0
  OMP_NUM_THREADS=1 nice -n 10 python launch.py "${args[@]}" "${budget[@]}" logger.wandb_mode=disabled >> "$d.log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then echo "$(date -u +%FT%TZ) done $d"; else echo "$(date -u +%FT%TZ) stopped $d (rc $rc)"; fi >> "$runs/queue.log"
}
export -f run_one
export preset runs prefix total overrides
if [ "${FOREGROUND:-0}" = 1 ]; then
  printf '%s\n' "${jobs[@]}" | xargs -P "$workers" -L 1 bash -c 'run_one $0 $1' >> "$runs/queue.log" 2>&1
  exit 0
fi
printf '%s\n' "${jobs[@]}" | nohup xargs -P "$workers" -L 1 bash -c 'run_one $0 $1' >> "$runs/queue.log" 2>&1 &
echo "queue of ${#jobs[@]} runs of experiment=$preset, $workers at a time, in $runs (pid $!)"
