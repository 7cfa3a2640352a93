"""SMAX throughput: eqmarl's SMACv2 env vs a plain jitted SMAX loop, and PPO training speed.

    PYTHONPATH=src python benchmarks/smax_throughput.py                      # all, one JSON on stdout
    PYTHONPATH=src python benchmarks/smax_throughput.py --envs 64 256 --train-envs 64 --out x.json

* ``env``: env-only steps/s (one step of one env, all agents acting) at each batch size:
  ``eqmarl``: :class:`eqmarl.envs.smax.SmaxSMACv2` (5v5 terran, SMACv2 start positions,
  heuristic enemy, continuous moves), every step delivering the entity graph, flat
  observations and masks as torch tensors (autoreset with final observations included);
  ``plain``: JaxMARL's ``HeuristicEnemySMAX`` on its ``smacv2_5_units`` scenario, its own
  ``step`` (with its autoreset) ``vmap``-ped and ``jit``-ted, random available discrete
  actions drawn inside the jitted step, nothing copied to torch.  Both loop in Python over
  jitted calls and block on the result each step.  ``ratio`` = eqmarl / plain.
* ``train``: PPO frames/s (rollout + update) per model with the
  ``experiment=smacv2_generalization`` settings, after one warm-up iteration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def eqmarl_env_sps(num_envs: int, steps: int) -> float:
    from eqmarl.envs.smax import SmaxSMACv2

    env = SmaxSMACv2(num_envs, seed=0)
    gen = torch.Generator().manual_seed(0)
    pool = []
    for _ in range(16):
        a = torch.rand(num_envs, 5, 4, generator=gen)
        a[..., 0] = torch.randint(0, 3, (num_envs, 5), generator=gen).float()
        a[..., 1:3] = a[..., 1:3] * 2 - 1
        a[..., 3] = torch.randint(0, 5, (num_envs, 5), generator=gen).float()
        pool.append(a)
    for i in range(3):  # compile and warm up
        env.step(pool[i])
    t0 = time.perf_counter()
    for i in range(steps):
        res = env.step(pool[i % len(pool)])
    _ = float(res.reward.sum())  # the tensors are real
    return num_envs * steps / (time.perf_counter() - t0)


def plain_smax_sps(num_envs: int, steps: int) -> float:
    from eqmarl.envs.smax import import_jax

    jax = import_jax()
    import jax.numpy as jnp
    from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario

    env = HeuristicEnemySMAX(scenario=map_name_to_scenario("smacv2_5_units"))

    def one(key, state):
        k_act, k_step = jax.random.split(key)
        avail = env.get_avail_actions(state)
        keys = jax.random.split(k_act, env.num_agents)
        actions = {
            a: jax.random.choice(keys[i], avail[a].shape[0], p=avail[a] / avail[a].sum())
            for i, a in enumerate(env.agents)
        }
        _, state, rew, _, _ = env.step(k_step, state, actions)
        return state, rew["ally_0"]

    step = jax.jit(jax.vmap(one))
    reset = jax.jit(jax.vmap(env.reset))
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    _, state = reset(keys)
    for _ in range(3):
        keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        state, r = step(keys, state)
    jax.block_until_ready(r)
    t0 = time.perf_counter()
    for _ in range(steps):
        keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        state, r = step(keys, state)
        jax.block_until_ready(r)
    _ = float(jnp.sum(r))
    return num_envs * steps / (time.perf_counter() - t0)


def train_fps(model: str, num_envs: int, iterations: int) -> float:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from eqmarl.config import register_configs, to_config
    from eqmarl.train.trainer import Trainer

    register_configs()
    GlobalHydra.instance().clear()
    root = Path(__file__).resolve().parents[1]
    with initialize_config_dir(config_dir=str(root / "configs"), version_base="1.3"):
        d = compose(
            "config",
            overrides=[
                "experiment=smacv2_generalization",
                f"model={model}",
                f"train.num_envs={num_envs}",
                "train.eval_episodes=64",  # the presets' batch: its compiled step is cached
                "train.eval_every=0",
                "train.checkpoint_every=0",
                "logger.wandb_mode=disabled",
            ],
        )
    cfg = to_config(d)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp))
        trainer.update(trainer.rollout())  # warm-up (compiles, allocator)
        t0 = time.perf_counter()
        for _ in range(iterations):
            trainer.update(trainer.rollout())
        return iterations * trainer.batch_frames / (time.perf_counter() - t0)


def main() -> str:
    from eqmarl.core.machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--steps", type=int, default=50, help="timed env steps per size")
    ap.add_argument("--models", nargs="*", default=["e2gn2", "gnn", "mlp"])
    ap.add_argument("--train-envs", type=int, default=64)
    ap.add_argument("--train-iterations", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import jax

    result: dict = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
            "torch": torch.__version__,
            "jax": jax.__version__,
            "jax_backend": None,
            "torch_threads": args.threads,
        },
        "env": [],
        "train": [],
    }
    for n in args.envs:
        ours = eqmarl_env_sps(n, args.steps)
        plain = plain_smax_sps(n, args.steps)
        row = {
            "num_envs": n,
            "eqmarl_steps_per_s": round(ours, 1),
            "plain_steps_per_s": round(plain, 1),
            "ratio": round(ours / plain, 3),
        }
        result["env"].append(row)
        print(json.dumps(row), file=sys.stderr)
    result["machine"]["jax_backend"] = jax.default_backend()
    for m in args.models:
        fps = train_fps(m, args.train_envs, args.train_iterations)
        row = {"model": m, "num_envs": args.train_envs, "frames_per_s": round(fps, 1)}
        result["train"].append(row)
        print(json.dumps(row), file=sys.stderr)
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
