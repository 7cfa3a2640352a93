"""The E2GN2 paper's generalization tables on SMAX, from trained surrounded-left runs.

    PYTHONPATH=src python benchmarks/smax_generalization.py RUN_DIR... --episodes 500 --out table.json

Every run (``experiment=smacv2_generalization``: surrounded-left 5v5) is evaluated with
its newest checkpoint, the same weights, on the sides left (its training distribution),
right and all, and (graph models) on 4, 6, 7 and 8 units per side (surrounded-left).
Prints (one document on stdout; per-cell progress on stderr) and writes JSON: per model
and cell the win rate of each seed and the mean and standard error over seeds, next to
the paper's terran numbers (OpenReview rebuttal, 10 seeds, real StarCraft II).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SIDES = {"left": [], "right": ["env.surround_sides=right"], "all": ["env.surround_sides=all"]}
SIZES = {f"{n}v{n}": [f"env.n_units={n}", f"env.n_enemies={n}"] for n in (4, 6, 7, 8)}
# E2GN2 / GNN / MLP win rates, terran (OpenReview tables 1 and 2; table 2's 5-agent training
# cell reads .69 / .48, table 1's left .57 / .43: the team-size cells here are read against left)
PAPER_TERRAN = {
    "e2gn2": {"left": 0.57, "right": 0.55, "all": 0.63, "4v4": 0.65, "6v6": 0.63, "7v7": 0.62, "8v8": 0.54},
    "gnn": {"left": 0.43, "right": 0.07, "all": 0.27, "4v4": 0.45, "6v6": 0.45, "7v7": 0.40, "8v8": 0.39},
    "mlp": {"left": 0.33, "right": 0.12, "all": 0.24},
}


def main() -> str:
    from eqmarl.eval.evaluate import evaluate_run
    from eqmarl.train.checkpoint import resolve_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cells", nargs="*", default=None, help="subset of: left right all 4v4 6v6 7v7 8v8")
    args = ap.parse_args()
    per_run = []
    for run in args.runs:
        cfg = json.loads((Path(run) / "config.json").read_text())
        model = cfg["model"]["name"]
        cells = dict(SIDES) | ({} if model == "mlp" else SIZES)
        if args.cells:
            cells = {k: v for k, v in cells.items() if k in args.cells}
        # one checkpoint for every cell (a copy: a run that goes on replaces its old checkpoints)
        src = resolve_checkpoint(run)
        ckpt = Path(tempfile.mkdtemp()) / Path(run).name / "checkpoints" / src.name
        ckpt.parent.mkdir(parents=True)
        shutil.copy(src, ckpt)
        row = {"run": str(run), "model": model, "seed": cfg["seed"], "checkpoint": str(src), "cells": {}}
        for cell, overrides in cells.items():
            r = evaluate_run(str(ckpt), overrides, args.episodes, seed=args.seed)
            row["cells"][cell] = {k: r[k] for k in ("win_rate", "win_rate_se", "return_mean", "episodes")}
            print(json.dumps({"run": run, "cell": cell, **row["cells"][cell]}), file=sys.stderr)
        per_run.append(row)
    table: dict[str, dict] = {}
    for model in sorted({r["model"] for r in per_run}):
        rows = [r for r in per_run if r["model"] == model]
        table[model] = {}
        for cell in rows[0]["cells"]:
            vals = [r["cells"][cell]["win_rate"] for r in rows]
            n = len(vals)
            mean = sum(vals) / n
            se = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1) / n) if n > 1 else float("nan")
            paper = PAPER_TERRAN.get(model, {}).get(cell)
            table[model][cell] = {"mean": mean, "se": se, "seeds": vals, "paper_terran": paper}
    out = {"episodes_per_cell": args.episodes, "table": table, "runs": per_run}
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
