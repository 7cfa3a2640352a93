#!/usr/bin/env python
"""Where one training iteration's time goes: ``torch.profiler`` over a rollout and an update.

    python benchmarks/profile_iteration.py [--top 25] [hydra overrides...]

Builds the trainer from the same overrides as ``launch.py``, runs one warm-up
iteration, then profiles one rollout and one update (the real phases,
``Trainer.rollout`` and ``Trainer.update``).  Prints one JSON object on stdout: the
wall seconds of each phase and, per phase, the ``--top`` operators by self CPU time
(with their call counts), plus the share of the phase spent outside any torch operator
(Python, the env's own work, JAX on SMAX).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def top_ops(prof, top: int, wall_s: float) -> dict:
    """The ``top`` operators by self CPU time and the unaccounted share of ``wall_s``."""
    events = prof.key_averages()
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    total_self_s = sum(e.self_cpu_time_total for e in events) / 1e6
    return {
        "wall_s": wall_s,
        "torch_ops_self_s": total_self_s,
        "outside_torch_ops_share": max(0.0, 1 - total_self_s / wall_s),
        "ops": [
            {
                "op": e.key,
                "calls": e.count,
                "self_s": e.self_cpu_time_total / 1e6,
                "share": e.self_cpu_time_total / 1e6 / wall_s,
            }
            for e in rows[:top]
        ],
    }


def main() -> dict:
    from eqmarl.core.machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=25, help="operators listed per phase")
    args, overrides = ap.parse_known_args()

    import torch
    from torch.profiler import ProfilerActivity, profile
    from train_throughput import warm_trainer

    trainer, logger = warm_trainer(overrides, "eqmarl-profile-")
    cfg = trainer.cfg

    phases = {}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        rollout = trainer.rollout()
        wall = time.perf_counter() - t
    phases["rollout"] = top_ops(prof, args.top, wall)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        trainer.update(rollout)
        wall = time.perf_counter() - t
    phases["update"] = top_ops(prof, args.top, wall)
    logger.close()
    trainer.env.close()
    return {
        "phases": phases,
        "model": cfg.model.name,
        "env": cfg.env.name,
        "batch_frames": trainer.batch_frames,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load": os.getloadavg()[0],
        "overrides": overrides,
    }


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
