"""Sizes the machine cannot hold are refused before anything runs (issue 19): the run's
peak memory is estimated from its config (eqmarl.config.memory, the backends' measured
footprints) and compared with what this machine has available (or what a SLURM job
requests); a run that does not fit exits 2 naming the keys to shrink, before any process
grows or the run dir is created.  ``train.memory_check=false`` runs anyway."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from eqmarl.config import ConfigError
from eqmarl.config.checks import check_memory
from eqmarl.config.memory import available_memory, estimate_run_memory
from tests.conftest import ROOT, TINY, compose, launch_cmd

GiB = 2**30
# far beyond any machine: 2,000 vs 2,000 SMAX units in the default batch of envs
HUGE_SMAX = ["env=smax", "env.n_units=2000", "env.n_enemies=2000"]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_size_that_cannot_fit_exits_2_before_anything_grows(tmp_path: Path, clean_env) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "run"
    cmd = launch_cmd(*HUGE_SMAX, "logger.wandb_mode=disabled", f"hydra.run.dir={run_dir}")
    cap_mb = 2048  # the refusal imports the config and torch, nothing more; the run itself grew to 20.8 GB
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env)
    peak, over = [0.0], [False]

    def watch() -> None:  # sample the resident set; kill the process if it grows (the old behaviour)
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], _rss_mb(proc.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            if peak[0] > cap_mb:
                over[0] = True
                proc.kill()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    watcher.join()
    wall = time.monotonic() - start
    assert not over[0], f"the launch grew past {cap_mb} MB instead of refusing"
    assert proc.returncode == 2, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("eqmarl:")]
    assert lines and "Traceback" not in err, err[-2000:]
    msg = lines[0]
    assert "env.n_units=2000" in msg and "env.n_enemies" in msg and "train.num_envs" in msg
    assert "available" in msg and "GiB" in msg and "train.memory_check=false" in msg
    assert not run_dir.exists()  # refused before the run dir (and its lock) exist
    # what a refusal costs: the launcher's imports (hydra, torch), no simulator, no jax
    assert peak[0] < 1024, f"peak resident set {peak[0]:.0f} MB"
    print(f"refused in {wall:.1f} s, peak resident set {peak[0]:.0f} MB")


def test_the_check_itself_is_cheap_and_imports_no_jax() -> None:
    cfg = compose([*TINY, "env=smax", "train.memory_check=false"])
    import sys

    jax_before = "jax" in sys.modules
    t = time.perf_counter()
    with pytest.raises(ConfigError):
        check_memory(compose([*HUGE_SMAX, "train.memory_check=false"]), graph_model=True)
    check_memory(cfg, graph_model=True)
    assert time.perf_counter() - t < 1.0
    assert ("jax" in sys.modules) == jax_before


def test_the_default_sizes_pass_here() -> None:
    room = available_memory()
    assert room is not None and 0 < room[0] <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for overrides in ([], ["env=smax"], ["env.backend=mpe2"], ["env=hanabi", "model=mlp"], ["experiment=hanabi_3c"]):
        cfg = compose(overrides)  # validated, the memory check included
        est = estimate_run_memory(cfg)
        assert est.total < 3 * GiB, (overrides, est.describe())


def test_more_than_available_is_refused_naming_the_estimate_and_the_keys() -> None:
    cfg = compose(["train.memory_check=false"])
    est = estimate_run_memory(cfg)
    one = ["train.memory_check=false", "train.num_envs=1", "train.eval_episodes=1", "algo.num_minibatches=1"]
    one_env = estimate_run_memory(compose(one))
    room = ((est.total + one_env.total) // 2, "a test's machine")  # one env fits, 300 do not
    with pytest.raises(ConfigError) as e:
        check_memory(cfg, graph_model=True, available=room)
    assert e.value.key == "train.num_envs" and "a test's machine" in str(e.value)
    assert "train.memory_check=false" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:  # not even one env fits: the env's size is named
        check_memory(cfg, graph_model=True, available=(one_env.total // 2, "a smaller machine"))
    assert e.value.key == "env.n_agents"
    check_memory(cfg, graph_model=True, available=(est.total + 1, "enough"))  # fits: no error


@pytest.mark.parametrize(
    "overrides,key",
    [
        (HUGE_SMAX, "env.n_units"),
        (
            [
                *("env.scenario=simple_spread_large", "env.n_agents=30000", "model.knn=16"),
                *("train.num_envs=2", "train.eval_episodes=2", "algo.num_minibatches=1"),
            ],
            "env.n_agents",
        ),
        (["env=hanabi", "model=mlp", "train.num_envs=1000000"], "train.num_envs"),
        (["env=smax", "model=mlp", "train.eval_episodes=1000000"], "train.eval_episodes"),
        (["model.hidden=100000"], "model.hidden"),
        (["model=mlp", "model.share_params=false", "env.n_agents=3000", "model.hidden=2048"], "model.hidden"),
    ],
)
def test_every_backend_and_part_is_estimated(overrides: list[str], key: str) -> None:
    """SMAX, VMAS (spread_large), Hanabi, the eval env, a graph model's activations,
    per-agent weights: each too large for this machine, each refused naming its key."""
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    assert e.value.key == key, str(e.value)
    compose([*overrides, "train.memory_check=false"])  # the override runs anyway


def test_knn_and_activation_checkpointing_shrink_the_graph_activations() -> None:
    base = ["env.scenario=simple_spread_large", "env.n_agents=300", "train.num_envs=8", "train.memory_check=false"]
    full = estimate_run_memory(compose(base)).parts
    knn = estimate_run_memory(compose([*base, "model.knn=16"])).parts
    ckpt = estimate_run_memory(compose([*base, "model.knn=16", "model.activation_checkpointing=true"])).parts
    assert full["update"] > 10 * knn["update"] > 10 * ckpt["update"]
    assert full["inference"] > 10 * knn["inference"]
    mlp = estimate_run_memory(compose([*base, "model=mlp"])).parts
    assert mlp["update"] < knn["update"]


def test_a_slurm_job_is_checked_against_its_requested_memory() -> None:
    with pytest.raises(ConfigError) as e:
        compose(["cluster=slurm", "cluster.mem_gb=1", "env=smax"])
    assert "cluster.mem_gb=1" in str(e.value) and e.value.key == "cluster.mem_gb"
    compose(["cluster=slurm", "cluster.mem_gb=1", "env=smax", "train.memory_check=false"])
    compose(["cluster=slurm", "cluster.mem_gb=64", "env=smax"])


def test_the_estimate_follows_the_measured_runs() -> None:
    """docs/results/memory_model.json: peak resident sets measured here (SMAX envs, whole
    runs); the estimate of each is within a factor of 2."""
    points = json.loads((ROOT / "docs" / "results" / "memory_model.json").read_text())["points"]
    checked = 0
    for p in points:
        if "peak_mb" not in p or "estimate_mb" not in p:
            continue
        assert p["peak_mb"] / 2 <= p["estimate_mb"] <= 2 * p["peak_mb"], p
        checked += 1
    assert checked >= 10


def test_a_resume_may_skip_the_check_or_wait_longer_for_workers() -> None:
    """A run that fit when it started may not fit a busier machine when it resumes: the
    override the refusal names is one a resume accepts (so is the worker timeout)."""
    from eqmarl.train.resume import refused_overrides, resumable

    assert resumable("train.memory_check") and resumable("env.worker_timeout_s")
    saved = {"train": {"memory_check": True}, "env": {"worker_timeout_s": 60.0}}
    wanted = {"train": {"memory_check": False}, "env": {"worker_timeout_s": 5.0}}
    assert refused_overrides(["train.memory_check=false", "env.worker_timeout_s=5"], wanted, saved) == []


def test_on_a_gpu_the_rollout_and_the_model_are_not_host_memory() -> None:
    import dataclasses

    cfg = compose(
        ["env.scenario=simple_spread_large", "env.n_agents=300", "train.num_envs=8", "train.memory_check=false"]
    )
    gpu = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cuda"))
    host, on_gpu = estimate_run_memory(cfg), estimate_run_memory(gpu)
    assert set(on_gpu.device_parts) == {"rollout", "inference", "update", "model"}
    assert on_gpu.total == host.total - sum(on_gpu.device_parts.values())
