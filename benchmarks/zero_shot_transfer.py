#!/usr/bin/env python
"""Zero-shot transfer across agent counts: one E2GN2, evaluated with kNN on more agents.

    python benchmarks/zero_shot_transfer.py RUN_DIR [RUN_DIR ...] [--agents 3,10,30,100,1000]
        [--knn 8] [--episodes 4] [--out docs/results/zero_shot_transfer.json]

Each RUN_DIR holds a run trained with ``env.scenario=simple_spread_large`` (any agent
count, shared parameters).  Its newest checkpoint's policy is evaluated, unchanged, on
``simple_spread_large`` with N agents and N landmarks for every N of ``--agents``, with
``model.knn=--knn`` (the trained model saw a complete graph; with few agents kNN with
``k >= 2N - 1`` is that graph), deterministic actions, one episode (25 steps) in each of
``--episodes`` envs.  Per-agent measures at the episode's last step, averaged over envs:

* ``cover``: mean over landmarks of the distance to the nearest agent (lower is better);
* ``collisions``: other agents touching an agent, per agent.

Baselines: ``random`` (uniform actions in [-1, 1]) and ``still`` (zero actions) on the
same envs.  Prints one JSON object on stdout (the
per-N rows on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def episode(env, act) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Run 25 steps; per-agent measures at the last step (before the autoreset)."""
    obs = env.reset(seed=12345)
    scen = env._env.scenario
    for _ in range(env.episode_limit - 1):
        obs = env.step(act(obs)).obs
    # the last observation of the episode (the next step would reset): measure it
    scen._key = None
    scen._compute()
    return {"cover": float(scen.cover.mean()), "collisions": float(scen.collisions.mean())}


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--agents", default="3,10,30,100,1000")
    ap.add_argument("--knn", type=int, default=8)
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from eqmarl.config import ModelConfig
    from eqmarl.envs.mpe_vmas import VmasMPE
    from eqmarl.models import make_policy
    from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint

    torch.set_num_threads(1)
    rows = []
    for n in [int(a) for a in args.agents.split(",")]:
        env = VmasMPE("simple_spread_large", num_envs=args.episodes, n_agents=n, seed=0)
        row: dict = {"agents": n}
        gen = torch.Generator().manual_seed(0)
        row["random"] = episode(env, lambda o, n=n, g=gen: torch.rand(o.obs.shape[0], n, 2, generator=g) * 2 - 1)
        row["still"] = episode(env, lambda o, n=n: torch.zeros(o.obs.shape[0], n, 2))
        per_run = []
        for run in args.runs:
            st = load_checkpoint(resolve_checkpoint(run))
            mc = ModelConfig(**{**st["config"]["model"], "knn": args.knn})
            policy = make_policy(mc, env.spec, st["config"]["algo"]["name"] == "mappo")
            policy.load_state_dict(st["policy"])
            with torch.no_grad():
                per_run.append(episode(env, lambda o, p=policy: p.distribution(o).mode()))
        row["e2gn2_runs"] = per_run
        row["e2gn2"] = {k: sum(r[k] for r in per_run) / len(per_run) for k in ("cover", "collisions")}
        if len(per_run) > 1:
            row["e2gn2_se"] = {
                k: float(torch.tensor([r[k] for r in per_run]).std() / len(per_run) ** 0.5)
                for k in ("cover", "collisions")
            }
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    out = {
        "benchmark": "zero_shot_transfer",
        "runs": args.runs,
        "knn": args.knn,
        "episodes": args.episodes,
        "rows": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
