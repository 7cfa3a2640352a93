"""Shared test helpers: compose configs like launch.py does, with tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Tiny sizes: a run takes a second or two on a laptop CPU.
TINY = [
    "train.num_envs=8",
    "train.total_env_steps=800",
    "train.eval_episodes=4",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "algo.rollout_steps=25",
    "algo.epochs=2",
    "algo.num_minibatches=2",
    "model.hidden=16",
    "logger.progress=false",
    "logger.wandb_mode=disabled",
]


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    """Small tensors: one torch thread avoids oversubscription on shared 2-core machines."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def compose(overrides: list[str] | None = None):
    """Compose the hydra config (like launch.py) and return the typed Config."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from eqmarl.config import register_configs, to_config

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        dict_cfg = hcompose("config", overrides=list(overrides or []))
    return to_config(dict_cfg)


def load_benchmark(name: str):  # type: ignore[no-untyped-def]
    """``benchmarks/<name>.py`` as a module (benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_ok(cmd: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cmd``; fail the test with the end of its output unless it exits 0."""
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def launch_cmd(*overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "launch.py"), *overrides]


def subprocess_env() -> dict[str, str]:
    """Environment for CLI subprocesses: no W&B key, not inside a SLURM job, quiet, one thread."""
    env = dict(os.environ)
    env.pop("WANDB_API_KEY", None)
    env.pop("SLURM_JOB_ID", None)
    # a W&B service this test process started (its port in WANDB_SERVICE) must not be shared:
    # a subprocess's run ids would collide with the runs the service still holds
    env.pop("WANDB_SERVICE", None)
    env["WANDB_SILENT"] = "true"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(autouse=True)
def _own_wandb_service():  # type: ignore[no-untyped-def]
    """A W&B service started in this process by one test is torn down after it, so the next
    test (in-process or a subprocess inheriting ``WANDB_SERVICE``) starts its own."""
    before = os.environ.get("WANDB_SERVICE")
    yield
    if os.environ.get("WANDB_SERVICE") != before and "wandb" in sys.modules:
        sys.modules["wandb"].teardown()
        if before is None:
            os.environ.pop("WANDB_SERVICE", None)
        else:
            os.environ["WANDB_SERVICE"] = before


@pytest.fixture
def clean_env():
    """:func:`subprocess_env` for one test."""
    return subprocess_env()
