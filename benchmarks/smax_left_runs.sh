#!/usr/bin/env bash
# Start or resume the surrounded-left SMAX learning runs (issue 10's learning and
# generalization experiments), niced, in the background, WORKERS at a time (default 9:
# every run at once; benchmarks/preset_runs.sh):
#   bash benchmarks/smax_left_runs.sh [RUNS_DIR] [models] [seeds] [WORKERS]
# RUNS_DIR defaults to docs/results/smax_left, which holds each run's latest checkpoint,
# so a fresh checkout resumes exactly where the committed runs stopped.
exec bash "$(dirname "$0")/preset_runs.sh" smacv2_generalization "${1:-docs/results/smax_left}" left_ \
  "${4:-9}" "${2:-e2gn2 gnn mlp}" "${3:-0 1 2}"
