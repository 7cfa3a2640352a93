#!/usr/bin/env python
"""Learning benchmark: run ``launch.py`` (embedded default unless overridden) and summarize.

    python benchmarks/default_learning.py [--threshold -100] [launch.py overrides...]

Prints one JSON object on stdout (the run's own output goes to stderr): the final deterministic evaluation return,
env steps and wall seconds of the run, and the first evaluation at or above the
threshold (env steps and wall seconds to reach it); the machine (CPU model, cores) and its
load average before and after the run.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def summarize(run_dir: Path, threshold: float) -> dict:
    from eqmarl.eval.plots import read_metrics

    m = read_metrics(run_dir / "metrics.csv")
    evals = [(s, w, r) for s, w, r in zip(m["env_steps"], m["wall_s"], m["eval_return"]) if not math.isnan(r)]
    first = next(((s, w, r) for s, w, r in evals if r >= threshold), None)
    last = evals[-1]
    return {
        "final_eval_return": last[2],
        "env_steps": int(last[0]),
        "wall_s": last[1],
        "threshold": threshold,
        "reached": first is not None,
        "env_steps_to_threshold": None if first is None else int(first[0]),
        "wall_s_to_threshold": None if first is None else first[1],
        "frames_per_s": last[0] / last[1],
        "best_eval_return": max(r for _, _, r in evals),
        "run_dir": str(run_dir),
    }


def main() -> dict:
    from eqmarl.core.machine import machine_info

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threshold", type=float, default=-100.0)
    args, overrides = ap.parse_known_args()
    run_dir = Path(tempfile.mkdtemp(prefix="eqmarl-learn-")) / "run"
    load_before = os.getloadavg()
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), f"hydra.run.dir={run_dir}", "logger.progress=false", *overrides],
        check=True,
    )
    out = summarize(run_dir, args.threshold)
    out["process_s"] = time.perf_counter() - t
    out["overrides"] = overrides
    out["machine"] = machine_info()
    out["load_before"] = list(load_before)
    out["load_after"] = list(os.getloadavg())
    return out


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
