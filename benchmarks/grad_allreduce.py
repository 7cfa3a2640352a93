#!/usr/bin/env python
"""Gradient averaging over ranks: eqmarl's flat all-reduce vs torch's DistributedDataParallel.

    python benchmarks/grad_allreduce.py [--ranks 2] [--steps 20] [hydra overrides...]

Spawns ``--ranks`` CPU processes (gloo on loopback, one thread each), builds the policy
of the given config (default: the embedded default, E2GN2 on simple_spread) and times
PPO-style update steps on one minibatch of the default's size: forward (``evaluate``),
backward, gradient averaging, clipping, Adam.  Three ways:

* ``none``: no averaging (the single-process cost);
* ``flat``: :class:`eqmarl.train.strategy.DdpStrategy` (all gradients in one buffer,
  one all-reduce);
* ``ddp``: ``torch.nn.parallel.DistributedDataParallel`` around a module whose
  ``forward`` is ``evaluate`` (bucketed all-reduce overlapped with backward).

Also checks that ``flat`` and ``ddp`` end with the same parameters.  Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _worker(rank: int, world: int, overrides: list[str], steps: int, init_file: str, out_dir: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    import torch.distributed as dist
    from torch import nn
    from train_throughput import compose

    from eqmarl.build import make_env
    from eqmarl.models import make_policy
    from eqmarl.train.strategy import DdpStrategy, SingleStrategy

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cfg = compose(overrides)
    frames = cfg.algo.rollout_steps * cfg.train.num_envs // cfg.algo.num_minibatches
    env = make_env(cfg.env, frames, seed=rank, device="cpu")
    obs = env.reset(seed=rank)

    class Evaluate(nn.Module):
        def __init__(self, policy: nn.Module) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, obs, action):  # type: ignore[no-untyped-def]
            return self.policy.evaluate(obs, action)

    def build():  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        policy = make_policy(cfg.model, env.spec, centralized_critic=False)
        return policy, torch.optim.Adam(policy.parameters(), lr=1e-4)

    torch.manual_seed(1 + rank)
    action = build()[0].act(obs).action

    def loss_of(out) -> torch.Tensor:  # type: ignore[no-untyped-def]
        logp, ent, value = out
        return -(logp.mean() + 0.01 * ent.mean()) + 0.5 * value.pow(2).mean()

    results = {}
    final = {}
    for mode in ("none", "flat", "ddp"):
        policy, opt = build()
        if mode == "ddp":
            wrapped = nn.parallel.DistributedDataParallel(Evaluate(policy))
            strat = SingleStrategy(policy, opt, cfg.algo.max_grad_norm)  # clip + step, no averaging
            fwd = wrapped
        else:
            strat = (DdpStrategy if mode == "flat" else SingleStrategy)(policy, opt, cfg.algo.max_grad_norm)
            fwd = Evaluate(policy)
        times = []
        for _ in range(steps + 2):
            dist.barrier()
            t = time.perf_counter()
            strat.step(loss_of(fwd(obs, action)))
            times.append(time.perf_counter() - t)
        times = sorted(times[2:])
        results[mode] = {"median_ms": 1e3 * times[len(times) // 2], "min_ms": 1e3 * times[0]}
        final[mode] = torch.cat([p.detach().reshape(-1) for p in policy.parameters()])
    results["flat_vs_ddp_max_abs_param_diff"] = float((final["flat"] - final["ddp"]).abs().max())
    results["params"] = int(final["flat"].numel())
    results["minibatch_frames"] = frames
    if rank == 0:
        Path(out_dir, "result.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    args, overrides = ap.parse_known_args()
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        init_file = str(Path(tmp) / "init")
        mp.spawn(_worker, args=(args.ranks, overrides, args.steps, init_file, tmp), nprocs=args.ranks)
        res = json.loads((Path(tmp) / "result.json").read_text())
    res = {"ranks": args.ranks, "overrides": overrides, **res}
    return res


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
