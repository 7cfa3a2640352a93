#!/usr/bin/env bash
# Start or resume the team-size runs (experiment=smacv2_team_sizes: surrounded-left terran,
# team sizes drawn per episode from 4..8 per side), niced, in the background, WORKERS at a
# time (default 6: every run at once; benchmarks/preset_runs.sh):
#   bash benchmarks/smax_team_sizes_runs.sh [RUNS_DIR] [models] [seeds] [WORKERS]
# RUNS_DIR defaults to docs/results/smax_teams, which holds each run's latest checkpoint,
# so a fresh checkout resumes exactly where the committed runs stopped. The 3-seed
# E2GN2-vs-GNN table afterwards (fixed sizes 4..10 per side):
#   python benchmarks/smax_generalization.py docs/results/smax_teams/teams_{e2gn2,gnn}_s{0,1,2} \
#     --cells 4v4 5v5 6v6 7v7 8v8 9v9 10v10 --episodes 500 --out docs/results/smax_team_sizes.json
exec bash "$(dirname "$0")/preset_runs.sh" smacv2_team_sizes "${1:-docs/results/smax_teams}" teams_ \
  "${4:-6}" "${2:-e2gn2 gnn}" "${3:-0 1 2}"
