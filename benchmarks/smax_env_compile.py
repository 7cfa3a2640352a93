#!/usr/bin/env python
"""SMAX N-vs-N env alone: compile times, step time and peak memory, this checkout or another.

    python benchmarks/smax_env_compile.py [--units 300,1000] [--envs 2] [--steps 3]
        [--src path/to/other/checkout/src] [--out docs/results/smax_env_compile.json]

Every point builds ``SmaxSMACv2(envs, n_units=N, n_enemies=N, start_positions=surrounded)``
in a fresh process with an empty JAX compilation cache (so compiles are timed, not cache
reads), then steps it with every ally moving.  Per point: ``build_reset_s`` (construction:
compiling and running the reset), ``first_step_s`` (compiling and running the step),
``step_s`` (mean of ``--steps`` further steps), ``agent_steps_per_s`` (envs x N / step_s),
``peak_rss_mb`` (the process's peak resident set), ``finite`` (the observation),
``load_avg`` before and after (``uptime``'s 1/5/15-minute loads: the machine is shared) and
``src`` (which checkout's ``eqmarl`` was measured: ``--src`` compares another, e.g. the
commit before SMAX's functions were batched).

Prints one JSON object on stdout (also written to ``--out``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def point(n: int, envs: int, steps: int) -> dict:
    """One point, in this process (``eqmarl`` from ``sys.path``)."""
    import resource

    import torch

    from eqmarl.envs.smax import SmaxSMACv2

    t0 = time.perf_counter()
    env = SmaxSMACv2(envs, n_units=n, n_enemies=n, start_positions="surrounded")
    t1 = time.perf_counter()
    action = torch.zeros(envs, n, 4)
    action[..., 0] = 1.0  # move
    action[..., 1] = 1.0
    env.step(action)
    t2 = time.perf_counter()
    for _ in range(steps):
        res = env.step(action)
    t3 = time.perf_counter()
    step_s = (t3 - t2) / steps
    return {
        "units_per_side": n,
        "envs": envs,
        "build_reset_s": round(t1 - t0, 1),
        "first_step_s": round(t2 - t1, 1),
        "step_s": round(step_s, 3),
        "agent_steps_per_s": round(envs * n / step_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "finite": bool(torch.isfinite(res.obs.graph.h).all() and torch.isfinite(res.obs.graph.x).all()),
    }


def main() -> dict:
    try:
        from eqmarl.core.machine import cpu_model
    except ImportError:  # --src names a checkout older than eqmarl.core.machine
        cpu_model = platform.machine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", default="300,1000", help="units per side")
    ap.add_argument("--envs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--src", default=str(ROOT / "src"), help="the src/ directory whose eqmarl is measured")
    ap.add_argument("--timeout-s", type=float, default=1800)
    ap.add_argument("--out", default=None)
    ap.add_argument("--point", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.point is not None:
        return point(args.point, args.envs, args.steps)
    src = str(Path(args.src).resolve())
    results = []
    for n in [int(v) for v in args.units.split(",")]:
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": tempfile.mkdtemp(prefix="jaxcache-")}
        cmd = [sys.executable, __file__, "--point", str(n), "--envs", str(args.envs), "--steps", str(args.steps)]
        load_before = [round(v, 2) for v in os.getloadavg()]
        t = time.perf_counter()
        try:
            p = subprocess.run(
                [*cmd, "--src", src], capture_output=True, text=True, env=env, timeout=args.timeout_s, check=False
            )
            ok = p.returncode == 0
            res = json.loads(p.stdout) if ok else {"units_per_side": n, "status": "error", "error": p.stderr[-300:]}
        except subprocess.TimeoutExpired:
            res = {"units_per_side": n, "status": "timeout"}
        res["wall_s"] = round(time.perf_counter() - t, 1)
        res["load_avg"] = {"before": load_before, "after": [round(v, 2) for v in os.getloadavg()]}
        res["src"] = src
        print(json.dumps(res), file=sys.stderr, flush=True)
        results.append(res)
    out = {
        "benchmark": "smax_env_compile",
        "scenario": "SMAX N-vs-N, surrounded, every ally moving",
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "points": results,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    # the measured checkout's eqmarl first (before anything imports eqmarl)
    sys.path.insert(0, sys.argv[sys.argv.index("--src") + 1] if "--src" in sys.argv else str(ROOT / "src"))
    from eqmarl.core.log import json_main

    json_main(main)
