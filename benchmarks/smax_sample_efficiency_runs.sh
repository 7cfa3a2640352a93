#!/usr/bin/env bash
# Start or resume experiment=smacv2_sample_efficiency's runs (issue 20 §3: E2GN2, GNN and
# MLP x seeds 0-2 on surrounded_and_reflect terran 5v5) as a queue of WORKERS niced
# one-thread processes (default 2: one per core of this project's CPU machines):
#   bash benchmarks/smax_sample_efficiency_runs.sh [RUNS_DIR] [TOTAL_ENV_STEPS] [WORKERS] [models] [seeds]
# RUNS_DIR defaults to docs/results/smax_sample_efficiency, which holds each run's newest
# checkpoint, so a fresh checkout continues the committed runs (to TOTAL_ENV_STEPS: the
# preset's 2M unless given). Afterwards, the curves of every run:
#   eqmarl plot-curves RUNS_DIR --metric eval_win_rate --threshold 0.8 --out curves.png
exec bash "$(dirname "$0")/preset_runs.sh" smacv2_sample_efficiency "${1:-docs/results/smax_sample_efficiency}" "" \
  "${3:-2}" "${4:-e2gn2 gnn mlp}" "${5:-0 1 2}" "${2:-2000000}"
