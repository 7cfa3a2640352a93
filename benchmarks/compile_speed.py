#!/usr/bin/env python
"""``train.compile``: training frames/s eager vs compiled, and the compile time apart.

    python benchmarks/compile_speed.py [--modes none,default] [--iterations 3] [hydra overrides...]

Runs ``benchmarks/train_throughput.py`` once per mode, each in a fresh process (so
every compiled mode pays its own compilation, in the warm-up iterations, which the
timed loop excludes), with the same overrides.  Prints one JSON object on stdout: per
mode the loop's frames/s, rollout and update seconds and ``compile_s``; each mode's
speed relative to the first; and the 1-minute load average before and after (the
figures need a quiet machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

KEYS = ("env_steps_per_s", "rollout_s", "update_s", "loop_s", "compile_s", "threads", "frames")


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="none,default", help="comma-separated train.compile modes")
    ap.add_argument("--iterations", type=int, default=3, help="timed iterations per mode")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations first (compilation happens here)")
    args, overrides = ap.parse_known_args()
    load_before = os.getloadavg()[0]
    results: dict[str, dict] = {}
    for mode in [m for m in args.modes.split(",") if m]:
        cmd = [
            sys.executable,
            str(ROOT / "benchmarks" / "train_throughput.py"),
            f"--iterations={args.iterations}",
            f"--warmup={args.warmup}",
            f"train.compile={mode}",
            *overrides,
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if p.returncode:
            sys.exit(f"train.compile={mode} failed:\n{p.stderr[-3000:]}")
        out = json.loads(p.stdout)
        results[mode] = {k: out[k] for k in KEYS}
        print(f"{mode}: {out['env_steps_per_s']:.0f} frames/s, compile {out['compile_s']:.1f} s", file=sys.stderr)
    first = next(iter(results.values()))
    return {
        "benchmark": "compile_speed",
        "modes": results,
        "vs_first": {m: r["env_steps_per_s"] / first["env_steps_per_s"] for m, r in results.items()},
        "overrides": overrides,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "cores": os.cpu_count(),
    }


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
