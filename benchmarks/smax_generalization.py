"""The E2GN2 paper's generalization tables on SMAX, from trained surrounded-left runs.

    PYTHONPATH=src python benchmarks/smax_generalization.py RUN_DIR... --episodes 500 --out table.json
    PYTHONPATH=src python benchmarks/smax_generalization.py RUN_DIR... --merge earlier.json --out table.json

Every run (``experiment=smacv2_generalization``: surrounded-left 5v5, or
``experiment=smacv2_team_sizes``: surrounded-left, team sizes drawn per episode) is
evaluated with its newest checkpoint, the same weights, on the sides left (its training
distribution), right and all at 5v5, and (graph models) at fixed team sizes of 4 to 10
units per side (surrounded-left; ``env.min_units=null``: no drawn sizes, no padding).
Default cells: left right all 4v4 6v6 7v7 8v8 (issue 10's table; left is 5v5); ``--cells``
picks others (5v5 and 9v9, 10v10 too).  Prints (one document on stdout; per-cell progress
on stderr) and writes JSON: per model and cell the win rate of each seed, the mean and
standard error over seeds and the mean's ratio to 5v5 (the 5v5 cell, else left), next to
the paper's numbers for the run's race (OpenReview rebuttal, 10 seeds, real StarCraft II);
per run the checkpoint's env steps; the machine and its load average before and after.
Runs of another race than terran form their own rows (``e2gn2_protoss``).  ``--merge``
adds the evaluated runs of earlier outputs of this script (the same episodes per cell and
evaluation seed) to the table, so seeds evaluated at different times form one table; a run
named again is evaluated again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SIDES = {"left": [], "right": ["env.surround_sides=right"], "all": ["env.surround_sides=all"]}
SIZES = {f"{n}v{n}": [f"env.n_units={n}", f"env.n_enemies={n}"] for n in range(4, 11)}
DEFAULT_CELLS = ("left", "right", "all", "4v4", "6v6", "7v7", "8v8")
EVAL_SEED = 12345  # --seed's default; outputs written before eval_seed was recorded used it
# E2GN2 / GNN / MLP win rates per race (OpenReview tables 1 and 2; table 2's 5-agent training
# cell, e.g. terran .69 / .48, differs from table 1's left, .57 / .43: the team-size cells
# here are read against left)
PAPER = {
    "terran": {
        "e2gn2": {"left": 0.57, "right": 0.55, "all": 0.63, "4v4": 0.65, "6v6": 0.63, "7v7": 0.62, "8v8": 0.54},
        "gnn": {"left": 0.43, "right": 0.07, "all": 0.27, "4v4": 0.45, "6v6": 0.45, "7v7": 0.40, "8v8": 0.39},
        "mlp": {"left": 0.33, "right": 0.12, "all": 0.24},
    },
    "protoss": {
        "e2gn2": {"left": 0.59, "right": 0.56, "all": 0.57, "4v4": 0.61, "6v6": 0.59, "7v7": 0.47, "8v8": 0.37},
        "gnn": {"left": 0.44, "right": 0.08, "all": 0.23, "4v4": 0.24, "6v6": 0.35, "7v7": 0.28, "8v8": 0.20},
        "mlp": {"left": 0.42, "right": 0.17, "all": 0.27},
    },
    "zerg": {
        "e2gn2": {"left": 0.34, "right": 0.30, "all": 0.31, "4v4": 0.32, "6v6": 0.31, "7v7": 0.23, "8v8": 0.18},
        "gnn": {"left": 0.37, "right": 0.06, "all": 0.18, "4v4": 0.29, "6v6": 0.31, "7v7": 0.29, "8v8": 0.27},
        "mlp": {"left": 0.24, "right": 0.04, "all": 0.12},
    },
}


def merged_rows(files: list[str], episodes: int, seed: int, skip: set[str]) -> list[dict]:
    """The evaluated runs of earlier outputs (``--merge``), less those evaluated again now."""
    rows = []
    for f in files:
        earlier = json.loads(Path(f).read_text())
        if "runs" not in earlier or "episodes_per_cell" not in earlier:
            raise SystemExit(f"--merge {f}: not an output of smax_generalization.py (no 'runs' / 'episodes_per_cell')")
        their_seed = earlier.get("eval_seed", EVAL_SEED)
        if earlier["episodes_per_cell"] != episodes or their_seed != seed:
            raise SystemExit(
                f"--merge {f}: evaluated with --episodes {earlier['episodes_per_cell']} "
                f"--seed {their_seed}; this table uses --episodes {episodes} --seed {seed}"
            )
        # outputs from before races were recorded are terran
        rows.extend({"race": "terran", **row, "merged_from": f} for row in earlier["runs"] if row["run"] not in skip)
    return rows


def table_of(per_run: list[dict]) -> dict[str, dict]:
    """Per group (model, drawn sizes, race) and cell: the seeds' win rates, their mean and
    standard error, the paper's number and the mean's ratio to 5v5 (else left).  Cells
    missing from some run of a group are left out; two runs of one group and seed are an
    error."""
    seen: dict[tuple[str, int], str] = {}
    for r in per_run:
        other = seen.setdefault((r["group"], r["seed"]), r["run"])
        if other != r["run"]:
            raise SystemExit(f"two runs of {r['group']} seed {r['seed']}: {other} and {r['run']}; name one")
    table: dict[str, dict] = {}
    for model in sorted({r["group"] for r in per_run}):
        rows = [r for r in per_run if r["group"] == model]
        table[model] = {}
        race = rows[0]["race"]
        paper_cells = PAPER.get(race, {}).get(rows[0]["model"], {})
        for cell in [c for c in rows[0]["cells"] if all(c in r["cells"] for r in rows)]:
            vals = [r["cells"][cell]["win_rate"] for r in rows]
            n = len(vals)
            mean = sum(vals) / n
            se = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1) / n) if n > 1 else None  # one seed: none
            paper = paper_cells.get(cell)
            table[model][cell] = {"mean": mean, "se": se, "seeds": vals, "paper": paper, "paper_race": race}
        base = table[model].get("5v5", table[model].get("left"))
        for cell in table[model].values():
            cell["ratio_to_5v5"] = cell["mean"] / base["mean"] if base and base["mean"] > 0 else None
    return table


def main() -> str:
    import torch

    from eqmarl.core.machine import machine_info
    from eqmarl.eval.evaluate import evaluate_run
    from eqmarl.train.checkpoint import resolve_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=EVAL_SEED)
    ap.add_argument("--out", default=None)
    ap.add_argument("--merge", nargs="*", default=[], help="earlier outputs of this script whose runs join the table")
    every = " ".join([*SIDES, *SIZES])
    ap.add_argument("--cells", nargs="*", default=None, help=f"any of: {every} (default: {' '.join(DEFAULT_CELLS)})")
    args = ap.parse_args()
    if not args.runs and not args.merge:
        ap.error("name run directories to evaluate, or earlier outputs with --merge")
    merged = merged_rows(args.merge, args.episodes, args.seed, skip={str(r) for r in args.runs})
    load_before = os.getloadavg()
    per_run = []
    for run in args.runs:
        cfg = json.loads((Path(run) / "config.json").read_text())
        model = cfg["model"]["name"]
        # runs trained on drawn team sizes form their own rows: e2gn2_sizes4-8
        lo = cfg["env"].get("min_units")
        race = cfg["env"].get("race", "terran")
        group = model if lo is None else f"{model}_sizes{lo}-{cfg['env']['n_units']}"
        if race != "terran":
            group = f"{group}_{race}"
        cells = dict(SIDES) | ({} if model == "mlp" else SIZES)
        cells = {k: v for k, v in cells.items() if k in (args.cells or DEFAULT_CELLS)}
        if lo is not None:  # trained on drawn team sizes: evaluate at fixed ones
            fixed = ["env.min_units=null"]
            at_5v5 = ["env.n_units=5", "env.n_enemies=5"]
            cells = {k: fixed + (v if k in SIZES else [*at_5v5, *v]) for k, v in cells.items()}
        # one checkpoint for every cell (a copy: a run that goes on replaces its old checkpoints)
        src = resolve_checkpoint(run)
        ckpt = Path(tempfile.mkdtemp()) / Path(run).name / "checkpoints" / src.name
        ckpt.parent.mkdir(parents=True)
        shutil.copy(src, ckpt)
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        row = {
            "run": str(run),
            "model": model,
            "group": group,
            "seed": cfg["seed"],
            "race": race,
            "checkpoint": str(src),
            "env_steps": int(saved["env_steps"]),
            "iteration": int(saved["iteration"]),
            "train_env": {k: cfg["env"].get(k) for k in ("n_units", "n_enemies", "min_units", "surround_sides")},
            "cells": {},
        }
        del saved
        for cell, overrides in cells.items():
            r = evaluate_run(str(ckpt), overrides, args.episodes, seed=args.seed)
            row["cells"][cell] = {k: r[k] for k in ("win_rate", "win_rate_se", "return_mean", "episodes")}
            print(json.dumps({"run": run, "cell": cell, **row["cells"][cell]}), file=sys.stderr)
        per_run.append(row)
    per_run = merged + per_run
    table = table_of(per_run)
    out = {
        "episodes_per_cell": args.episodes,
        "eval_seed": args.seed,
        "table": table,
        "runs": per_run,
        "merged_from": args.merge,
        "machine": {"host": platform.node(), **machine_info()},
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
    }
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
