#!/usr/bin/env python
"""DDP scaling on SLURM: training env steps/s with 1 rank vs N ranks (one per node).

    python benchmarks/ddp_scaling.py [--ranks 1 2] [--iterations 10] [--warmup 2] [hydra overrides...]

Submits one real SLURM job per rank count through submitit, each running
:class:`eqmarl.launch.job.TrainJob` (the same entry as ``launch.py -m cluster=slurm``)
with ``cluster.nodes=N`` and one task per node, on the embedded default config unless
overridden (per-rank batch fixed: weak scaling).  Throughput is read from the run's
``metrics.csv``: frames of all ranks over the wall time of the timed iterations
(after ``warmup``).  Scaling efficiency = steps/s(N) / (N * steps/s(1)).  Prints one JSON
object on stdout (everything else on stderr).  Needs a SLURM cluster (``sudo slurm/local/up.sh`` here).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


from train_throughput import compose  # noqa: E402  (same folder: the same config composition)


def timed_throughput(metrics_csv: Path, warmup: int) -> dict[str, float]:
    """Frames/s over the iterations after ``warmup`` (from per-iteration steps_per_s)."""
    with open(metrics_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["iteration"]) > warmup]
    frames = [float(r["env_steps"]) for r in rows]
    per_iter = frames[1] - frames[0] if len(frames) > 1 else frames[0]
    seconds = sum(per_iter / float(r["steps_per_s"]) for r in rows)
    return {
        "iterations_timed": len(rows),
        "frames_per_iteration": per_iter,
        "env_steps_per_s": per_iter * len(rows) / seconds,
        "rollout_s_mean": sum(float(r["rollout_s"]) for r in rows) / len(rows),
        "update_s_mean": sum(float(r["update_s"]) for r in rows) / len(rows),
    }


def run(ranks: int, overrides: list[str], iterations: int, warmup: int, workdir: Path) -> dict[str, float]:
    import submitit

    from eqmarl.launch.job import TrainJob

    cfg = compose(
        [
            "cluster=slurm",
            f"cluster.nodes={ranks}",
            "cluster.tasks_per_node=1",
            "cluster.timeout_min=30",
            "train.threads=1",
            "train.eval_every=0",
            "train.checkpoint_every=0",
            f"train.max_iterations={warmup + iterations}",
            "logger.wandb_mode=disabled",
            "logger.progress=false",
            *overrides,
        ]
    )
    c = cfg.cluster
    ex = submitit.AutoExecutor(folder=str(workdir / f"ranks{ranks}" / ".submitit" / "%j"), cluster="slurm")
    params = {
        k: v for k, v in {"slurm_partition": c.partition, "slurm_account": c.account, "slurm_qos": c.qos}.items() if v
    }
    ex.update_parameters(
        nodes=c.nodes,
        tasks_per_node=c.tasks_per_node,
        cpus_per_task=1,
        timeout_min=c.timeout_min,
        name=f"eqmarl-ddp-bench-{ranks}",
        **params,
    )
    run_dir = workdir / f"ranks{ranks}" / "run"
    job = ex.submit(TrainJob(cfg, run_dir))
    job.results()  # every rank's return; raises if a rank failed
    return {"ranks": ranks, "job_id": job.job_id, **timed_throughput(run_dir / "metrics.csv", warmup)}


def main() -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args, overrides = ap.parse_known_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="eqmarl-ddp-bench-", dir=str(Path.home())) as tmp:
        results = [run(n, overrides, args.iterations, args.warmup, Path(tmp)) for n in args.ranks]
    base = next(r for r in results if r["ranks"] == min(args.ranks))
    for r in results:
        ideal = base["env_steps_per_s"] * r["ranks"] / base["ranks"]
        r["speedup"] = r["env_steps_per_s"] / base["env_steps_per_s"]
        r["scaling_efficiency"] = r["env_steps_per_s"] / ideal
    cfg = compose(overrides)
    out = {
        "benchmark": "ddp_scaling",
        "host": platform.node(),
        "overrides": overrides,
        "per_rank_batch_frames": cfg.algo.rollout_steps * cfg.train.num_envs,
        "model": cfg.model.name,
        "env": f"{cfg.env.name}/{getattr(cfg.env, 'scenario', '')}",
        "threads_per_rank": 1,
        "cpu_cores": os.cpu_count(),
        # other work on the machine distorts the figure: the 1-minute load average around the runs
        "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "results": results,
    }
    return json.dumps(out, indent=2)


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
