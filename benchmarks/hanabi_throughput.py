#!/usr/bin/env python
"""Hanabi env steps/s for each backend: the engine (Python loop) and the batched torch one.

    python benchmarks/hanabi_throughput.py [--envs 1024] [--engine-envs 64] [--steps 100]
        [--threads 1] [--preset full] [--colors N] [--policy]

Each backend is stepped with uniformly random legal actions drawn from its own masks
(the sampling is counted: it is part of any rollout).  With ``--policy`` an extra
measurement runs the training rollout's acting step (MLP policy ``act`` on the
observations, then ``env.step``) on the fast backend.  A "step" is one turn of one
game (one env step, all seats observed).  The engine backend runs fewer envs (its cost
is per env, so steps/s barely depends on the batch size).  Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def measure(env, steps: int, warmup: int = 5, policy=None) -> float:  # type: ignore[no-untyped-def]
    """Env steps per second over ``steps`` batched steps (after ``warmup``)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    obs = env.reset(seed=0)

    def one(obs):  # type: ignore[no-untyped-def]
        if policy is not None:
            action = policy.act(obs).action
        else:
            m = obs.action_mask.float().reshape(-1, obs.action_mask.shape[-1])
            action = torch.multinomial(m, 1, generator=gen).view(obs.action_mask.shape[:-1])
        return env.step(action).obs

    for _ in range(warmup):
        obs = one(obs)
    t0 = time.perf_counter()
    for _ in range(steps):
        obs = one(obs)
    return steps * env.num_envs / (time.perf_counter() - t0)


def main() -> dict:
    from eqmarl.core.machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", type=int, default=1024, help="envs of the fast backend")
    ap.add_argument("--engine-envs", type=int, default=64, help="envs of the engine backend")
    ap.add_argument("--steps", type=int, default=100, help="timed batched steps (fast backend)")
    ap.add_argument("--engine-steps", type=int, default=30, help="timed batched steps (engine backend)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: the machine is shared; more threads only help on idle cores)",
    )
    ap.add_argument("--preset", default="full")
    ap.add_argument("--colors", type=int, default=None)
    ap.add_argument("--hand-size", type=int, default=None)
    ap.add_argument("--policy", action="store_true", help="also time the MLP policy's act + step (fast backend)")
    ap.add_argument("--skip-engine", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from eqmarl.envs.hanabi_fast import FastHanabiEnv

    variant = {"preset": args.preset, "colors": args.colors, "hand_size": args.hand_size}
    out: dict[str, object] = {
        "benchmark": "hanabi_throughput",
        "variant": variant,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "machine": cpu_model(),
        "torch": torch.__version__,
    }
    fast = FastHanabiEnv(args.envs, seed=0, **variant)
    out["obs_dim"] = fast.spec.obs_dim
    out["fast"] = {"envs": args.envs, "steps_per_s": round(measure(fast, args.steps))}
    if args.policy:
        from eqmarl.config import ModelConfig
        from eqmarl.models import make_policy

        pol = make_policy(ModelConfig(hidden=128), fast.spec, centralized_critic=False)
        out["fast_with_policy_act"] = {
            "envs": args.envs,
            "model": "mlp hidden=128 layers=2",
            "steps_per_s": round(measure(fast, max(10, args.steps // 2), policy=pol)),
        }
    if not args.skip_engine:
        try:
            from eqmarl.envs.hanabi import HanabiEnv

            eng = HanabiEnv(args.engine_envs, seed=0, **variant)
            out["engine"] = {"envs": args.engine_envs, "steps_per_s": round(measure(eng, args.engine_steps, warmup=2))}
        except ImportError as e:
            out["engine"] = {"error": str(e)}
    if "engine" in out and "steps_per_s" in out["engine"]:  # type: ignore[operator]
        out["speedup"] = round(out["fast"]["steps_per_s"] / out["engine"]["steps_per_s"], 1)  # type: ignore[index]
    return out


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
