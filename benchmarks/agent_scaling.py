#!/usr/bin/env python
"""Agent-count scaling of E2GN2 PPO: memory and speed, complete vs kNN graphs.

    python benchmarks/agent_scaling.py [--agents 10,30,100,300,1000,3000] [--graphs 0,8,16]
        [--ckpt 0,1] [--learners single] [--env mpe|smax] [--mem-cap-gb 6]
        [--out docs/results/agent_scaling.json] [hydra overrides...]

Every point (agents N, ``model.knn``, ``model.activation_checkpointing``, learner) runs
in a fresh process on ``env.scenario=simple_spread_large`` (N agents, N landmarks: 2N
graph nodes; ``--env smax``: SMAX N-vs-N, N allies and N enemies) with a capped address
space (``--mem-cap-gb``; a point that does not fit is reported as ``"oom"``).  Per point it measures:

* ``update_peak_mb``: peak memory of the first PPO update (``algo.epochs=1``, one
  minibatch), CUDA: ``torch.cuda.max_memory_allocated`` above the pre-update level;
  CPU: the resident set sampled every millisecond during the update minus the one
  before it (the rollout's freed buffers are reused, so this is a lower bound);
* ``rollout_peak_mb``: the same for the first rollout (its graph forwards run
  ``train.inference_chunk_envs`` envs at a time when set);
* ``saved_bytes_per_edge_layer``: the bytes autograd keeps for backward (the distinct
  storages seen by ``torch.autograd.graph.saved_tensors_hooks`` over one actor+critic
  forward of the minibatch) divided by edges x message-passing layers x 2 networks; the facts sheet's
  estimate is ~2 KB at width 64 (``32 H + 4 (2 + d + a)`` bytes);
* ``agent_steps_per_s``: agent-steps per second of the whole loop (rollout + update;
  ``frames * N / seconds``), after one warm-up iteration;
* ``rollout_s``, ``update_s``, ``edges_per_graph``;
* ``setup_s``: building the trainer (env construction and, for SMAX, compiling its reset);
  ``first_iteration_s``: the first rollout and update (SMAX: compiling its step);
  ``peak_rss_mb``: the point's process's peak resident set (everything: libraries, the
  env, JAX's compiled programs, the model);
* ``load_avg``: the machine's 1/5/15-minute load averages (``uptime``) before and after the
  point (a shared machine: figures taken under load are slower than the machine).

Every point compiles into an empty JAX compilation cache (SMAX's programs are compiled, not
read back; ``--warm-jax-cache`` keeps ``$JAX_COMPILATION_CACHE_DIR``/eqmarl's cache instead).

``--merge`` keeps the points of an existing ``--out`` file that this run does not measure
again (same agents, kNN, checkpointing and learner), so a file can be refreshed point by point.

Prints one JSON object on stdout (also written to ``--out``); the per-point rows and
anything else go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def compose(overrides: list[str]):  # type: ignore[no-untyped-def]
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from eqmarl.config import register_configs, to_config

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return to_config(hcompose("config", overrides=overrides))


# the scaling scenario per --env: N agents and N other nodes each
SCENARIOS = {
    "mpe": lambda n: ["env.scenario=simple_spread_large", f"env.n_agents={n}"],
    # SMAX N-vs-N (surrounded starts) on a map scaled to 10v10's unit density (env.map_size=null)
    "smax": lambda n: ["env=smax", f"env.n_units={n}", f"env.n_enemies={n}", "env.start_positions=surrounded"],
}


def point_overrides(n: int, knn: int, ckpt: int, learner: str, extra: list[str], env: str = "mpe") -> list[str]:
    return [
        *SCENARIOS[env](n),
        f"model.knn={knn}",
        f"model.activation_checkpointing={'true' if ckpt else 'false'}",
        f"learner={learner}",
        "train.num_envs=2",
        "algo.rollout_steps=4",
        "algo.epochs=1",
        "algo.num_minibatches=1",
        "train.eval_episodes=1",
        "train.eval_every=0",
        "logger.wandb_mode=disabled",
        "logger.progress=false",
        *extra,
    ]


def measure(overrides: list[str]) -> dict:
    """One point, in this process."""
    import tempfile

    import torch

    from eqmarl.models.message_passing import graph_batch
    from eqmarl.train.trainer import Trainer

    cfg = compose(overrides)
    t_setup = time.perf_counter()
    tr = Trainer(cfg, Path(tempfile.mkdtemp()))
    setup_s = time.perf_counter() - t_setup
    cuda = tr.device.type == "cuda"
    n_agents = tr.spec.n_agents

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    import threading

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def peak_growth_mb(fn):  # type: ignore[no-untyped-def]
        """(fn(), peak memory during fn above the level before it, MB); CPU: a sampler
        thread records the resident set every ms."""
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        rss0, peak, stop = rss_mb(), [0.0], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb())
                time.sleep(0.001)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        out = fn()
        sync()
        stop.set()
        th.join()
        if cuda:
            return out, (torch.cuda.max_memory_allocated() - base) / 2**20
        return out, max(peak[0], rss_mb()) - rss0

    # memory: the first rollout (train.inference_chunk_envs bounds it) and the first update
    t_first = time.perf_counter()
    ro, rollout_peak_mb = peak_growth_mb(tr.rollout)
    _, peak_mb = peak_growth_mb(lambda: tr.update(ro))
    first_s = time.perf_counter() - t_first
    # speed: the next whole iteration
    t0 = time.perf_counter()
    ro = tr.rollout()
    sync()
    t1 = time.perf_counter()
    tr.update(ro)
    sync()
    t2 = time.perf_counter()
    frames = tr.batch_frames
    # saved activations of one forward (actor + critic) of the minibatch
    flat = ro.obs.map(lambda t: t.reshape((frames, *t.shape[2:])))
    storages: dict[int, int] = {}  # one count per storage (ops often save the same tensor)

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        tr.policy.evaluate(flat, ro.action.reshape((frames, *ro.action.shape[2:])))
    saved = sum(storages.values())
    g = graph_batch(flat.graph, True, torch.float32, cfg.model.knn)
    n_nodes = g.num_nodes
    # edges of one graph under the env's edge rule and masks (mean over the minibatch)
    if cfg.model.knn:
        edges = round(int(flat.graph.with_knn(cfg.model.knn).neighbor_valid.sum()) / frames)
    else:
        edges = round(int(flat.graph.adjacency().sum()) / frames)
    n_layers = cfg.model.layers
    return {
        "agents": n_agents,
        "nodes": n_nodes,
        "knn": cfg.model.knn,
        "activation_checkpointing": cfg.model.activation_checkpointing,
        "learner": cfg.learner.name,
        "hidden": cfg.model.hidden,
        "layers": n_layers,
        "samples_per_update": frames,
        "edges_per_graph": edges,
        "update_peak_mb": round(peak_mb, 1),
        "rollout_peak_mb": round(rollout_peak_mb, 1),
        "inference_chunk_envs": cfg.train.inference_chunk_envs,
        "saved_mb": round(saved / 2**20, 1),
        "saved_bytes_per_edge_layer": round(saved / (frames * edges * n_layers * 2), 1),
        "rollout_s": round(t1 - t0, 3),
        "update_s": round(t2 - t1, 3),
        "agent_steps_per_s": round(frames * n_agents / (t2 - t0), 1),
        "setup_s": round(setup_s, 1),
        "first_iteration_s": round(first_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": str(tr.device),
    }


def _point_key(r: dict) -> tuple:
    return (r["agents"], r["knn"], bool(r["activation_checkpointing"]), r["learner"])


def _commit() -> str:
    """The short commit of the code measured (``+dirty`` with uncommitted changes), or ``?``."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        status = [*git, "status", "--porcelain", "--untracked-files=no"]
        dirty = subprocess.run(status, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> dict:
    from eqmarl.core.machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", default="10,30,100,300,1000,3000")
    ap.add_argument("--graphs", default="0,8,16", help="model.knn values (0: complete graph)")
    ap.add_argument("--ckpt", default="0,1", help="activation checkpointing off/on")
    ap.add_argument("--learners", default="single")
    ap.add_argument("--env", default="mpe", choices=sorted(SCENARIOS), help="mpe: simple_spread_large; smax: N-vs-N")
    ap.add_argument("--mem-cap-gb", type=float, default=6.0)
    ap.add_argument("--timeout-s", type=float, default=900)
    ap.add_argument("--out", default=None)
    ap.add_argument("--warm-jax-cache", action="store_true", help="use the usual JAX compilation cache")
    ap.add_argument("--merge", action="store_true", help="keep --out's points that this run does not measure")
    ap.add_argument("--point", action="store_true", help=argparse.SUPPRESS)
    args, overrides = ap.parse_known_args()
    if args.point:
        return measure(overrides)  # the child's one JSON document on stdout
    results = []
    for n in [int(v) for v in args.agents.split(",")]:
        for knn in [int(v) for v in args.graphs.split(",")]:
            for ckpt in [int(v) for v in args.ckpt.split(",")]:
                for learner in args.learners.split(","):
                    ov = point_overrides(n, knn, ckpt, learner, overrides, args.env)
                    cap = int(args.mem_cap_gb * 2**30)

                    def limit(cap: int = cap) -> None:
                        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
                        os.nice(5)

                    env = dict(os.environ)
                    if not args.warm_jax_cache:
                        env["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxcache-")
                    t, load_before = time.perf_counter(), [round(v, 2) for v in os.getloadavg()]
                    try:
                        p = subprocess.run(
                            [sys.executable, __file__, "--point", *ov],
                            capture_output=True,
                            text=True,
                            timeout=args.timeout_s,
                            preexec_fn=limit,
                            env=env,
                            check=False,
                        )
                        if p.returncode == 0:
                            res = json.loads(p.stdout)
                        else:
                            err = p.stderr.strip().splitlines()[-1:] or ["?"]
                            oom = "memory" in p.stderr.lower() or "alloc" in p.stderr.lower() or p.returncode < 0
                            res = {
                                "agents": n,
                                "knn": knn,
                                "activation_checkpointing": bool(ckpt),
                                "learner": learner,
                                "status": "oom" if oom else "error",
                                "error": err[0][:300],
                            }
                    except subprocess.TimeoutExpired:
                        res = {
                            "agents": n,
                            "knn": knn,
                            "activation_checkpointing": bool(ckpt),
                            "learner": learner,
                            "status": "timeout",
                        }
                    res["wall_s"] = round(time.perf_counter() - t, 1)
                    res["load_avg"] = {"before": load_before, "after": [round(v, 2) for v in os.getloadavg()]}
                    res["measured"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    res["commit"] = _commit()
                    res["jax_cache"] = "warm" if args.warm_jax_cache else "empty"
                    print(json.dumps(res), file=sys.stderr, flush=True)
                    results.append(res)
    out = {
        "benchmark": "agent_scaling",
        "scenario": {"mpe": "simple_spread_large (N agents, N landmarks)", "smax": "SMAX N-vs-N, surrounded"}[args.env],
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "mem_cap_gb": args.mem_cap_gb,
        "overrides": overrides,
        "points": results,
    }
    if args.out and args.merge and Path(args.out).exists():
        measured = {_point_key(r) for r in results}
        kept = [r for r in json.loads(Path(args.out).read_text())["points"] if _point_key(r) not in measured]
        out["points"] = sorted(kept + results, key=lambda r: (r["agents"], -r["knn"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
