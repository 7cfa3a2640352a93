#!/usr/bin/env python
"""Iteration time vs ``train.threads`` on a machine where another process is busy.

    python benchmarks/threads_contention.py [--busy N] [--rounds R] [--out FILE] [hydra overrides...]

Trains a short run of the embedded default (VMAS simple_spread, E2GN2, PPO, the shipped
batch shape: ``train.num_envs`` envs x 25 steps per iteration, ``algo.epochs`` x
``algo.num_minibatches``; ``train.total_env_steps=60000``, no evaluations) through
``launch.py`` once per setting, each in a fresh process (OpenMP reads its environment once), first alone and
then next to ``--busy`` processes that spin a core each (default 1: "another process is
busy").  The settings:

- ``default``: ``train.threads=0`` as shipped: every usable core, with
  ``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT=1000`` (idle threads spin ~10 us,
  then sleep), which eqmarl sets before torch loads, and one thread fewer per core
  another process keeps busy (re-decided after every iteration);
- ``threads=1``: one intra-op thread;
- ``threads=2+spinning``: two threads with OpenMP's own default wait policy (threads spin
  at barriers before sleeping: ``OMP_WAIT_POLICY`` given empty, so eqmarl leaves it), the
  setting that collapses under contention;
- ``threads=2+passive``: two threads with ``OMP_WAIT_POLICY=PASSIVE`` given by the user
  (so eqmarl adds no spin count: idle threads sleep at once, the default until 2026-12-07).

``--settings`` picks some (default: all).  The child processes get no
``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``OMP_WAIT_POLICY``/``GOMP_SPINCOUNT``, like a
fresh shell.
The figure per run is the median wall time of an iteration (``metrics.csv`` ``wall_s``
differences, the first iteration excluded: it holds warm-up).  The machine may be
running other work, so the settings are interleaved and compared within one run (repeat
with ``--rounds``: medians over rounds).  Prints one JSON object on stdout (and writes
``--out``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHORT_DEFAULT = [
    "train.total_env_steps=60000",
    "train.eval_every=0",
    "train.eval_episodes=8",
    "train.checkpoint_every=0",
    "logger.wandb_mode=disabled",
    "logger.progress=false",
]

# name -> (train.threads, extra environment)
SETTINGS: dict[str, tuple[int, dict[str, str]]] = {
    "default": (0, {}),
    "threads=1": (1, {}),
    "threads=2+spinning": (2, {"OMP_WAIT_POLICY": ""}),
    "threads=2+passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
}

# OpenMP settings a child process starts without (each setting gives its own)
STRIPPED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

SPIN = "while True:\n    pass\n"


def iteration_seconds(metrics_csv: Path) -> list[float]:
    walls = [float(r["wall_s"]) for r in csv.DictReader(metrics_csv.open())]
    return [b - a for a, b in itertools.pairwise(walls)]


def run_once(threads: int, extra_env: dict[str, str], overrides: list[str], workdir: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in STRIPPED}
    env.update(extra_env)
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    cmd = [
        sys.executable,
        str(ROOT / "launch.py"),
        *SHORT_DEFAULT,
        *overrides,
        f"train.threads={threads}",
        f"hydra.run.dir={run_dir}",
    ]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
    its = iteration_seconds(run_dir / "metrics.csv")
    cfg = json.loads((run_dir / "config.json").read_text())
    shape = (
        f"{cfg['train']['num_envs'] * cfg['algo']['rollout_steps']} frames per iteration: "
        f"{cfg['train']['num_envs']} envs x {cfg['algo']['rollout_steps']} steps, "
        f"{cfg['algo']['epochs']} epochs x {cfg['algo']['num_minibatches']} minibatches"
    )
    return {"iteration_s": statistics.median(its), "process_s": time.perf_counter() - t0, "shape": shape}


def main() -> str:
    from eqmarl.core.machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", type=int, default=1, help="competing processes that each spin one core")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every measurement (medians over rounds)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list of: {', '.join(SETTINGS)}")
    args, overrides = ap.parse_known_args()
    chosen = [name.strip() for name in args.settings.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SETTINGS]
    if unknown or not chosen:
        ap.error(f"--settings {args.settings!r}; allowed: a comma list of {', '.join(SETTINGS)}")

    import torch

    load_before = os.getloadavg()
    cores = len(os.sched_getaffinity(0))
    raw: dict[str, dict[str, list[float]]] = {name: {"alone": [], "contended": []} for name in chosen}
    shape = ""
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for contended in (False, True):
                spinners = []
                if contended:
                    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
                try:
                    for name in chosen:
                        threads, extra_env = SETTINGS[name]
                        r = run_once(threads, extra_env, overrides, Path(tmp))
                        raw[name]["contended" if contended else "alone"].append(r["iteration_s"])
                        shape = r["shape"]
                        where = "contended" if contended else "alone"
                        print(f"{name:20s} {where:9s} {r['iteration_s']:.3f} s/it", file=sys.stderr)
                finally:
                    for s in spinners:
                        s.kill()
                        s.wait()
    results = {}
    for name, by in raw.items():
        alone, cont = statistics.median(by["alone"]), statistics.median(by["contended"])
        results[name] = {
            "iteration_s_alone": round(alone, 3),
            "iteration_s_contended": round(cont, 3),
            "slowdown_under_contention": round(cont / alone, 2),
        }
    best_contended = min(r["iteration_s_contended"] for r in results.values())
    for r in results.values():
        r["contended_vs_best"] = round(r["iteration_s_contended"] / best_contended, 2)
    out = {
        "benchmark": "threads_contention",
        "what": f"median wall seconds per training iteration ({shape}; E2GN2, VMAS simple_spread), "
        "alone and next to busy processes",
        "overrides": [*SHORT_DEFAULT, *overrides],
        "busy_processes": args.busy,
        "rounds": args.rounds,
        "cpu_cores_usable": cores,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cpu_model": cpu_model(),
        "torch_default_threads": torch.get_num_threads() if "OMP_NUM_THREADS" not in os.environ else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }
    text = json.dumps(out, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    from eqmarl.core.log import json_main

    json_main(main)
