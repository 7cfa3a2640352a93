#!/usr/bin/env bash
# Start or resume the team-size runs (experiment=smacv2_team_sizes: surrounded-left terran,
# team sizes drawn per episode from 4..8 per side), niced, in the background, one process
# per run:
#   bash benchmarks/smax_team_sizes_runs.sh [RUNS_DIR] [models] [seeds]
# RUNS_DIR defaults to docs/results/smax_teams, which holds each run's latest checkpoint,
# so a fresh checkout resumes exactly where the committed runs stopped. The 3-seed
# E2GN2-vs-GNN table afterwards (fixed sizes 4..10 per side):
#   python benchmarks/smax_generalization.py docs/results/smax_teams/teams_{e2gn2,gnn}_s{0,1,2} \
#     --cells 4v4 5v5 6v6 7v7 8v8 9v9 10v10 --episodes 500 --out docs/results/smax_team_sizes.json
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-docs/results/smax_teams}
mkdir -p "$runs"
for m in ${2:-e2gn2 gnn}; do for s in ${3:-0 1 2}; do
  d=$runs/teams_${m}_s${s}
  extra=()
  if [ -f "$d/checkpoints/latest" ]; then extra=("resume=$d"); fi
  OMP_NUM_THREADS=1 nohup nice -n 10 python launch.py experiment=smacv2_team_sizes model="$m" seed="$s" \
    logger.wandb_mode=disabled hydra.run.dir="$d" "${extra[@]}" >> "$runs/teams_${m}_s${s}.log" 2>&1 &
  echo "started $d (pid $!)"
done; done
