#!/usr/bin/env python
"""Per-rank model-state memory of learner=deepspeed at ZeRO 0/1/2/3 (per-agent parameters).

    python benchmarks/zero_memory.py [--agents 100] [--hidden 256] [--stages 0,1,2,3] [--ranks 2]
        [--precisions fp32,bf16]

For each ZeRO stage, ``--ranks`` local processes (gloo, CPU accelerator) build the
``model.share_params=false`` MLP policy for ``--agents`` agents (Psi parameters, every
agent its own actor and critic), wrap it in :class:`eqmarl.train.deepspeed_strategy.
DeepSpeedStrategy` with the trainer's Adam, and take one PPO-shaped step (forward,
backward, optimizer step) on a tiny batch (activations are negligible next to the
weights).  Each rank reports:

* ``peak_mb``: its peak resident set (``ru_maxrss``) minus its resident set just before
  the model was built: parameters + gradients + optimizer state at their peak during
  initialization and the step (and any transient copies DeepSpeed makes);
* ``rest_mb``: resident set after the step (freed memory returned with ``malloc_trim``)
  minus the same baseline: what stays allocated between updates.

ZeRO's accounting for fp32 Adam: 4 (params) + 4 (grads) + 8 (Adam m, v) = 16 bytes per
parameter at stage 0, with the optimizer state (plus DeepSpeed's fp32 partition copy)
divided by the ranks at stage 1, the gradients too at stage 2, the parameters too at
stage 3.  With ``learner.precision=bf16_weights`` (16-bit weights and gradients, fp32
master weights and Adam state in the optimizer: 2 + 2 + 12 bytes per parameter) stage 2
on 2 ranks holds 2 + 14/2 = 9 of 16 bytes (56 %); in fp32 it holds 4 + 12/2 = 10 bytes
plus DeepSpeed's fp32 partition copy (``learner.precision=bf16`` is autocast only: its
model state is fp32's).  The trainer's optional copy for undoing non-finite steps
(``train.rollback_nonfinite``) is left out: it is not model state.  ``rest_vs_stage0``
compares with the same precision's stage 0, ``rest_vs_fp32_stage0`` with fp32 stage 0.
Prints one JSON object on stdout; the per-point rows (and DeepSpeed's messages) go to
stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rank_main(
    rank: int, world: int, port: int, args: argparse.Namespace, stage: int, precision: str, out: object
) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        DS_ACCELERATOR="cpu",
        OMP_NUM_THREADS="1",
    )
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    from eqmarl.config import LearnerConfig, ModelConfig
    from eqmarl.core.env import EnvSpec, Observation
    from eqmarl.models import make_policy
    from eqmarl.train.deepspeed_strategy import DeepSpeedStrategy, import_deepspeed

    import_deepspeed(torch.device("cpu"))
    n = args.agents

    def one_step(n_agents: int, hidden: int) -> tuple[int, DeepSpeedStrategy]:
        spec = EnvSpec(
            n_agents=n_agents,
            obs_dim=8,
            state_dim=8 * n_agents,
            action_type="continuous",
            action_dim=2,
            episode_limit=25,
        )
        torch.manual_seed(0)
        policy = make_policy(ModelConfig(name="mlp", hidden=hidden, layers=2, share_params=False), spec, False)
        psi = sum(p.numel() for p in policy.parameters())
        opt = torch.optim.Adam(policy.parameters(), lr=1e-4, eps=1e-5)
        learner = LearnerConfig(name="deepspeed", zero_stage=stage, precision=precision)
        # the model state ZeRO shards, without the trainer's optional per-step copy for
        # undoing non-finite steps (train.rollback_nonfinite; +12 B/parameter at stage 0)
        strat = DeepSpeedStrategy(policy, opt, 0.5, learner, keep_snapshots=False)
        obs = Observation(obs=torch.randn(4, n_agents, 8), state=torch.randn(4, 8 * n_agents))
        logp, _, value = strat.forward(obs, torch.randn(4, n_agents, 2))
        strat.backward(-(logp.mean() + value.mean()))
        strat.optimizer_step()
        return psi, strat

    libc = ctypes.CDLL("libc.so.6")
    warm = one_step(1, 8)  # DeepSpeed's fixed per-process cost (ops, comm buffers) before the baseline
    libc.malloc_trim(0)
    base = rss_mb()
    psi, _strat = one_step(n, args.hidden)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    libc.malloc_trim(0)
    rest = rss_mb() - base
    del warm
    res = {"rank": rank, "params": psi, "peak_mb": round(peak, 1), "rest_mb": round(rest, 1)}
    got = [None] * world if rank == 0 else None
    dist.gather_object(res, got, dst=0)
    if rank == 0:
        out.put(got)  # type: ignore[attr-defined]
    dist.destroy_process_group()


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--stages", default="0,1,2,3")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--precisions", default="fp32,bf16_weights", help="learner.precision values")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    rows = []
    points = [(p, int(s)) for p in args.precisions.split(",") for s in args.stages.split(",")]
    for precision, stage in points:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        q = ctx.Queue()
        procs = [
            ctx.Process(target=rank_main, args=(r, args.ranks, port, args, stage, precision, q))
            for r in range(args.ranks)
        ]
        for p in procs:
            p.start()
        got = q.get(timeout=1800)
        for p in procs:
            p.join()
        psi = got[0]["params"]
        row = {
            "precision": precision,
            "zero_stage": stage,
            "ranks": args.ranks,
            "params": psi,
            "zero_accounting_mb": round(16 * psi / 2**20, 1),
            "per_rank_peak_mb": [g["peak_mb"] for g in got],
            "per_rank_rest_mb": [g["rest_mb"] for g in got],
        }
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    base = {(r["precision"], r["zero_stage"]): max(r["per_rank_rest_mb"]) for r in rows}
    for r in rows:
        rest = max(r["per_rank_rest_mb"])
        for key, ref in (("rest_vs_stage0", (r["precision"], 0)), ("rest_vs_fp32_stage0", ("fp32", 0))):
            if base.get(ref, 0) > 0:
                r[key] = round(rest / base[ref], 3)
    out = {
        "benchmark": "zero_memory",
        "agents": args.agents,
        "hidden": args.hidden,
        "model": "mlp, share_params=false",
        "rows": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
