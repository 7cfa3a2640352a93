#!/usr/bin/env python
"""One PPO update in fp32 against the same update under CPU bf16 autocast (AMX/AVX-512-BF16).

    python benchmarks/update_precision.py [--repeats 3] [hydra overrides...]

Builds the trainer from ``launch.py``'s overrides, collects one rollout, then times
``Trainer.update`` on copies of the same trainer state ``--repeats`` times each: plain fp32,
and inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` (the matrix products in bf16;
coordinates, parameters and the optimizer stay fp32).  Prints one JSON object on stdout:
seconds per update for each, the speed ratio, the CPU's bf16 flags, and the load averages.
A lever of issue 18, measured before it is offered as a setting.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args, overrides = ap.parse_known_args()

    import torch
    from train_throughput import warm_trainer

    trainer, _ = warm_trainer(overrides, "eqmarl-precision-")
    rollout = trainer.rollout()
    state = copy.deepcopy(trainer.state_dict())
    load_before = [round(v, 2) for v in os.getloadavg()]

    def timed(bf16: bool) -> list[float]:
        out = []
        for _ in range(args.repeats):
            trainer.load_state_dict(copy.deepcopy(state))
            t = time.perf_counter()
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    trainer.update(rollout)
            else:
                trainer.update(rollout)
            out.append(time.perf_counter() - t)
        return out

    timed(False)  # warm both paths once
    fp32 = timed(False)
    bf16 = timed(True)
    flags = ""
    try:
        flags = " ".join(
            f for f in Path("/proc/cpuinfo").read_text().split() if f in ("avx512_bf16", "amx_bf16", "amx_tile")
        )
    except OSError:
        pass
    return {
        "benchmark": "update_precision",
        "overrides": overrides,
        "fp32_s": fp32,
        "bf16_autocast_s": bf16,
        "speedup_bf16": min(fp32) / min(bf16),
        "threads": torch.get_num_threads(),
        "cpu_bf16_flags": sorted(set(flags.split())),
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
    }


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
