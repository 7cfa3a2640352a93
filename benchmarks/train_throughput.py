#!/usr/bin/env python
"""Training-loop throughput: frames/s of the whole loop and of the env alone.

    python benchmarks/train_throughput.py [--iterations N] [--warmup K] [hydra overrides...]
    python benchmarks/train_throughput.py --models mlp,gnn,egnn,e2gn2 [...]   # one JSON for all

Accepts the same overrides as ``launch.py`` (e.g. ``model=mlp algo=mappo
train.num_envs=600``).  Runs ``warmup`` iterations, then times ``iterations`` more of
the real loop (``Trainer.run``: rollout + update + logging to CSV), then the env alone
with random actions, then this CPU's float32 matmul rate and the update's FLOP rate.
Prints one JSON object on stdout (everything else on stderr).  With ``--models``, each
model is measured in its own fresh process, one after the other, and the JSON holds
every model's result and its training throughput relative to the first model's
(``vs_first``; frames/s and frames per CPU-second).
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


def compose(overrides: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from eqmarl.config import register_configs, to_config

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return to_config(hcompose("config", overrides=overrides))


def warm_trainer(overrides: list[str], prefix: str):
    """A ``Trainer`` from ``launch.py``'s overrides (no W&B, evaluations or checkpoints),
    after one untimed iteration (SMAX compiles there); its saves are no-ops.  Returns the
    trainer and its (open) logger."""
    from eqmarl.train.logger import Logger
    from eqmarl.train.trainer import Trainer

    base = ["logger.wandb_mode=disabled", "logger.progress=false", "train.eval_every=0", "train.checkpoint_every=0"]
    cfg = compose(base + overrides)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    cfg.train.total_env_steps = 10**12
    trainer = Trainer(cfg, tmp)
    trainer.save = lambda: tmp
    cfg.train.max_iterations = 1
    logger = Logger(cfg.logger, tmp, {}, total_env_steps=1)
    trainer.run(logger)
    return trainer, logger


def matmul_gflops(device, n: int = 2048, reps: int = 20) -> float:
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def adam_step_flops(trainer) -> float:
    """FLOPs of one minibatch forward+backward (counted by torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    from eqmarl.algos.ppo import ppo_loss

    a = trainer.cfg.algo
    ro = trainer.rollout()
    n = trainer.batch_frames
    mb = n // a.num_minibatches
    flat = lambda x: x.reshape((n, *x.shape[2:]))[:mb]  # noqa: E731
    obs = ro.obs.map(flat)
    with FlopCounterMode(display=False) as fc:
        logp, ent, v = trainer.policy.evaluate(obs, flat(ro.action))
        t = ppo_loss(
            logp,
            flat(ro.logprob),
            flat(ro.advantages),
            v,
            flat(ro.value),
            flat(ro.returns),
            ent,
            a.clip_coef,
            a.vf_coef,
            a.ent_coef,
        )
        t["loss"].backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def main() -> dict:
    from eqmarl.core.machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=5, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    ap.add_argument("--env-steps", type=int, default=50, help="steps of the env-only measurement")
    ap.add_argument("--models", default=None, help="comma-separated model names, each measured in a fresh process")
    args, overrides = ap.parse_known_args()
    if args.models:
        return compare_models(args, overrides)

    import torch

    from eqmarl.build import make_env
    from eqmarl.train.logger import Logger
    from eqmarl.train.trainer import Trainer

    base = [
        "logger.wandb_mode=disabled",
        "logger.progress=false",
        "train.eval_every=0",
        "train.eval_episodes=8",
        "train.checkpoint_every=0",
    ]
    cfg = compose(base + overrides)
    tmp = Path(tempfile.mkdtemp(prefix="eqmarl-bench-"))
    cfg.train.total_env_steps = 10**12  # no LR schedule end within the benchmark
    trainer = Trainer(cfg, tmp)
    trainer.save = lambda: tmp  # the benchmark measures the loop, not checkpoint I/O
    logger = Logger(cfg.logger, tmp, {}, total_env_steps=1)

    cfg.train.max_iterations = args.warmup
    trainer.run(logger)
    rollout_s = update_s = 0.0
    cfg.train.max_iterations = args.warmup + args.iterations
    steps0 = trainer.env_steps
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    orig_rollout, orig_update = trainer.rollout, trainer.update

    def timed_rollout():
        nonlocal rollout_s
        t = time.perf_counter()
        out = orig_rollout()
        rollout_s += time.perf_counter() - t
        return out

    def timed_update(ro):
        nonlocal update_s
        t = time.perf_counter()
        out = orig_update(ro)
        update_s += time.perf_counter() - t
        return out

    trainer.rollout, trainer.update = timed_rollout, timed_update
    eval_t = time.perf_counter()
    trainer.run(logger)
    loop_s = time.perf_counter() - t0
    loop_cpu_s = time.process_time() - cpu0
    trainer.rollout, trainer.update = orig_rollout, orig_update
    frames = trainer.env_steps - steps0
    eval_s = max(0.0, loop_s - rollout_s - update_s)
    del eval_t

    # env alone, random actions of the right kind
    env = make_env(cfg.env, cfg.train.num_envs, cfg.seed + 99, str(trainer.device))
    spec = env.spec
    env.reset(seed=1)
    e, a = cfg.train.num_envs, spec.n_agents

    def rand_action():
        if spec.action_type == "continuous":
            return torch.rand(e, a, spec.action_dim, device=trainer.device) * 2 - 1
        if spec.action_type == "mixed":  # SMACv2's [choice, move_x, move_y, target]: every unit stops
            return torch.zeros(e, a, 4, device=trainer.device)
        return torch.randint(0, spec.action_dim, (e, a), device=trainer.device)

    for _ in range(5):
        env.step(rand_action())
    t = time.perf_counter()
    for _ in range(args.env_steps):
        env.step(rand_action())
    env_only = args.env_steps * e / (time.perf_counter() - t)
    env.close()

    al = cfg.algo
    adam_steps = args.iterations * al.epochs * al.num_minibatches
    flops = adam_step_flops(trainer)
    mm = matmul_gflops(trainer.device)
    upd_gflops = flops * adam_steps / update_s / 1e9
    logger.close()
    trainer.env.close()
    result = {
        "env_steps_per_s": frames / loop_s,
        "env_only_steps_per_s": env_only,
        # CPU time of this process over the timed loop (all its threads): on a shared
        # machine, frames per CPU-second is the steadier figure (with train.threads=1)
        "loop_cpu_s": loop_cpu_s,
        "env_steps_per_cpu_s": frames / loop_cpu_s,
        "frames": frames,
        "loop_s": loop_s,
        "rollout_s": rollout_s,
        "update_s": update_s,
        "other_s": eval_s,
        "update_share": update_s / loop_s,
        "ms_per_adam_step": 1e3 * update_s / adam_steps,
        "adam_steps": adam_steps,
        "gflop_per_adam_step": flops / 1e9,
        "update_gflops": upd_gflops,
        "matmul_gflops": mm,
        "update_vs_matmul": upd_gflops / mm,
        "compile": cfg.train.compile,
        # seconds spent compiling (train.compile), all within the warm-up iterations unless a
        # shape changed later; the timed loop excludes the warm-up
        "compile_s": trainer.collector.policy_step.compile_s + trainer.updater.loss.compile_s,
        "model": cfg.model.name,
        "algo": cfg.algo.name,
        "num_envs": cfg.train.num_envs,
        "batch_frames": trainer.batch_frames,
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "overrides": overrides,
    }
    return result


def compare_models(args, overrides: list[str]) -> dict:
    """Measure each of ``args.models`` in a fresh process; return one combined JSON document."""
    import subprocess

    names = [m for m in args.models.split(",") if m]
    rest = [o for o in overrides if not o.startswith("model=")]
    results = {}
    for name in names:
        cmd = [
            sys.executable,
            __file__,
            f"--iterations={args.iterations}",
            f"--warmup={args.warmup}",
            f"--env-steps={args.env_steps}",
            f"model={name}",
            *rest,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            sys.exit(f"model={name} failed:\n{out.stderr[-2000:]}")
        results[name] = json.loads(out.stdout)  # the child's stdout is its one JSON document
        print(f"{name}: {results[name]['env_steps_per_s']:.0f} frames/s", file=sys.stderr)
    first = results[names[0]]
    vs_first = {
        n: {
            "env_steps_per_s": r["env_steps_per_s"] / first["env_steps_per_s"],
            "env_steps_per_cpu_s": r["env_steps_per_cpu_s"] / first["env_steps_per_cpu_s"],
        }
        for n, r in results.items()
    }
    return {"models": results, "vs_first": vs_first, "first": names[0], "overrides": rest}


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
