#!/usr/bin/env python
"""Measured memory of the envs and of whole runs, against the estimate that
``eqmarl.config.checks`` refuses oversized runs with (``eqmarl.config.memory``).

    python benchmarks/memory_model.py env "env=smax env.n_units=20 env.n_enemies=20 train.num_envs=8" ...
    python benchmarks/memory_model.py run "train.num_envs=8 model=mlp" ... [--out FILE] [--cap-gb 8]
    python benchmarks/memory_model.py reestimate docs/results/memory_model.json  # after changing the model

``env`` points (``peak_mb``: beyond the imports, worker processes included): a fresh
process composes the config, imports what the backend needs
(torch; jax and jaxmarl for SMAX), builds ``train.num_envs`` envs, resets them and takes
``--steps`` steps with always-available actions.  Per point: the resident set after the
imports (``base_mb``), the peak of the resident set (``ru_maxrss``) after building and
resetting the envs and after the steps, and those peaks minus ``base_mb``
(``env_peak_mb``).  SMAX compiles into a fresh, empty JAX compilation cache (the worst
case: a run whose compiled steps are cached needs less).

With ``--warm`` every env point runs a second time on the compilation cache the first run
filled: its ``warm_env_peak_mb`` is the memory of the running envs without the compiler's
(JAX's compiler frees its memory before the envs allocate theirs, so a cold peak hides
the per-env memory while it is below the compiler's).

``run`` points: ``python launch.py <overrides> train.max_iterations=1`` (one rollout,
update, evaluation and checkpoint) in a fresh process; ``peak_mb`` is its peak resident
set (``/usr/bin/time``'s maximum) plus the peak private memory of the processes below it
(env workers and their fork server, sampled every 0.1 s).

Every point is killed when its resident set passes ``--cap-gb`` (reported as
``"status": "cap"``).  Each line printed is one point's JSON object; the last is the
whole result (also written to ``--out``), with the estimate of each point beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
MB = 2**20


def compose(overrides: list[str]):  # type: ignore[no-untyped-def]
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    from eqmarl.config import register_configs, to_config

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return to_config(hcompose("config", overrides=overrides))


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def private_mb(pid: int) -> float:
    """Memory only this process holds (its private pages: what it adds to the machine's use)."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _actions(env, obs):  # type: ignore[no-untyped-def]
    """Always-available actions: stop (mixed), the first allowed action (masked discrete),
    random moves otherwise."""
    import torch

    spec = env.spec
    n = obs.obs.shape[0]
    if spec.action_type == "mixed":
        return torch.zeros(n, spec.n_agents, 4)
    if spec.action_type == "continuous":
        return torch.rand(n, spec.n_agents, spec.action_dim) * 2 - 1
    if obs.action_mask is not None:
        return obs.action_mask.float().argmax(-1)
    return torch.randint(spec.action_dim, (n, spec.n_agents))


def measure_env(overrides: list[str], steps: int) -> dict:
    """One ``env`` point, in this (fresh) process."""
    cfg = compose(overrides)
    import torch

    torch.set_num_threads(1)
    backend = getattr(cfg.env, "backend", None)
    if cfg.env.name == "smacv2" and backend == "smax":
        from eqmarl.envs.smax import import_jax

        import_jax()
    from eqmarl.build import make_env

    base = rss_mb()
    t = time.perf_counter()
    env = make_env(cfg.env, cfg.train.num_envs, 0)
    obs = env.reset(seed=0)
    built_peak, built_s = peak_mb(), time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        obs = env.step(_actions(env, obs)).obs
    step_peak, step_s = peak_mb(), time.perf_counter() - t
    workers: dict = {}
    pids = list(getattr(env, "worker_pids", []))
    if pids:  # worker processes (mpe2): theirs and the fork server's private memory
        server = int(Path(f"/proc/{pids[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
        workers = {
            "workers": len(pids),
            "workers_private_mb": round(sum(private_mb(p) for p in pids), 1),
            "forkserver_private_mb": round(private_mb(server), 1),
            "workers_rss_mb": round(sum(rss_mb(p) for p in pids), 1),
        }
    env.close()
    return {
        **workers,
        "base_mb": round(base, 1),
        "built_peak_mb": round(built_peak, 1),
        "stepped_peak_mb": round(step_peak, 1),
        "env_peak_mb": round(step_peak - base, 1),
        "build_s": round(built_s, 2),
        "step_s": round(step_s / max(steps, 1), 4),
    }


def _descendants(root: int, min_depth: int) -> list[int]:
    """Processes below ``root`` at least ``min_depth`` generations down."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out = []
    for pid in parent:
        depth, p = 0, pid
        while p in parent and p != root and depth < 64:
            p, depth = parent[p], depth + 1
        if p == root and depth >= min_depth:
            out.append(pid)
    return out


def _watch(proc: subprocess.Popen, cap_mb: float, hit: list[bool], below: list[float]) -> None:
    """Kill ``proc`` past ``cap_mb``; ``below[0]``: the peak private memory of its
    grandchildren and below (env worker processes and their fork server)."""
    while proc.poll() is None:
        try:
            if rss_mb(proc.pid) > cap_mb:
                hit[0] = True
                proc.kill()
                return
            total = 0.0
            for pid in _descendants(proc.pid, 2):
                try:
                    total += private_mb(pid)
                except (OSError, ProcessLookupError):
                    pass
            below[0] = max(below[0], total)
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.1)


def run_point(cmd: list[str], cap_mb: float, timeout_s: float) -> tuple[int, float, str, bool, float]:
    """(exit status, peak private MB of the grandchildren, the output, cap hit, seconds)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hit, below = [False], [0.0]
    watcher = threading.Thread(target=_watch, args=(proc, cap_mb, hit, below), daemon=True)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    watcher.join(timeout=5)
    # communicate() reaped the process: its rusage is in RUSAGE_CHILDREN only in aggregate,
    # so the child reports its own peak (env points) or /usr/bin/time does (run points)
    return proc.returncode, below[0], out + "\n" + err, hit[0], time.perf_counter() - t


def estimate(overrides: list[str], mode: str) -> dict:
    """The estimate of a point: the whole run's (``run``), or its training envs' alone
    (``env``: what the env point measures, beyond the imports)."""
    from eqmarl.config.memory import env_footprint, estimate_run_memory

    cfg = compose([*overrides, "train.memory_check=false"])
    if mode == "env":
        fp = env_footprint(cfg.env)
        return {"estimate_mb": round((fp.envs_bytes(cfg.train.num_envs) + fp.transient_bytes) / MB, 1)}
    est = estimate_run_memory(cfg)
    return {
        "estimate_mb": round(est.total / MB, 1),
        "estimate_parts_mb": {k: round(v / MB, 1) for k, v in est.parts.items()},
    }


def reestimate(path: Path) -> dict:
    """Recompute the estimates of the measured points in ``path`` (after the model changed)."""
    data = json.loads(path.read_text())
    for p in data["points"]:
        for k in ("estimate_mb", "estimate_parts_mb", "estimate_error"):
            p.pop(k, None)
        try:
            p.update(estimate(p["overrides"], p["mode"]))
        except Exception as e:  # reported in the point
            p["estimate_error"] = f"{type(e).__name__}: {e}"
    path.write_text(json.dumps(data, indent=1))
    return data


def main() -> None:
    from eqmarl.core.machine import cpu_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["env", "run", "reestimate"])
    ap.add_argument("points", nargs="+", help="one quoted string of hydra overrides per point (reestimate: JSON files)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--cap-gb", type=float, default=8.0)
    ap.add_argument("--timeout-s", type=float, default=1800)
    ap.add_argument("--out", default=None)
    ap.add_argument("--warm", action="store_true", help="env points: a second run on the filled compilation cache")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("POINT " + json.dumps(measure_env(shlex.split(args.points[0]), args.steps)), flush=True)
        return
    if args.mode == "reestimate":
        for path in args.points:
            print(json.dumps(reestimate(Path(path))))
        return
    results = []
    for point in args.points:
        overrides = shlex.split(point)
        res: dict = {"mode": args.mode, "overrides": overrides}
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(Path(tmp) / "jax"), OMP_NUM_THREADS="1")
            if args.mode == "env":
                cmd = [sys.executable, __file__, "env", point, "--child", f"--steps={args.steps}"]
            else:
                run_dir = Path(tmp) / "run"
                launch = [sys.executable, str(ROOT / "launch.py"), *overrides, "train.max_iterations=1"]
                launch += ["logger.wandb_mode=disabled", "logger.progress=false", f"hydra.run.dir={run_dir}"]
                cmd = ["/usr/bin/time", "-f", "MAXRSS_KB %M", *launch]
            os.environ["JAX_COMPILATION_CACHE_DIR"] = env["JAX_COMPILATION_CACHE_DIR"]
            os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # cache every compiled step
            rc, workers_mb, out, hit, wall = run_point(cmd, args.cap_gb * 1024, args.timeout_s)
            if args.mode == "env" and args.warm and not hit:
                _, _, warm_out, warm_hit, _ = run_point(cmd, args.cap_gb * 1024, args.timeout_s)
                lines = [ln for ln in warm_out.splitlines() if ln.startswith("POINT ")]
                if lines and not warm_hit:
                    warm = json.loads(lines[-1][6:])
                    res["warm_env_peak_mb"] = warm["env_peak_mb"]
                    res["warm_step_s"] = warm["step_s"]
        res["wall_s"] = round(wall, 1)
        if hit:
            res["status"] = "cap"
        elif args.mode == "env":
            lines = [ln for ln in out.splitlines() if ln.startswith("POINT ")]
            res.update(json.loads(lines[-1][6:]) if lines else {"status": f"exit {rc}", "error": out[-500:]})
            if "env_peak_mb" in res:  # with the worker processes' own memory
                extra = res.get("workers_private_mb", 0.0) + res.get("forkserver_private_mb", 0.0)
                res["peak_mb"] = round(res["env_peak_mb"] + extra, 1)
        else:
            kb = [ln for ln in out.splitlines() if ln.startswith("MAXRSS_KB ")]
            res["exit"] = rc
            if kb:
                res["main_peak_mb"] = round(int(kb[-1].split()[1]) / 1024, 1)
                res["workers_peak_mb"] = round(workers_mb, 1)
                res["peak_mb"] = round(res["main_peak_mb"] + workers_mb, 1)
            if rc != 0:
                res["error"] = out[-500:]
        try:
            res.update(estimate(overrides, args.mode))
        except Exception as e:  # a point the config refuses still reports its measurement
            res["estimate_error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(res), flush=True)
        results.append(res)
    summary = {
        "benchmark": "memory_model",
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "load_avg_at_end": os.getloadavg(),
        "points": results,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
