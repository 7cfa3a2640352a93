"""Honest resume: what resume= cannot do is refused with a message (exit 2), never ignored
or a traceback; a damaged newest checkpoint is named when skipped; no stray output dirs;
the mpe2 backend resumes exactly."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, TINY, compose, launch_cmd, run_ok, subprocess_env

FAST = [*TINY, "train.eval_every=0"]
QUIET = ["logger.progress=false", "logger.wandb_mode=disabled"]


@pytest.fixture(scope="module")
def env_module():
    env = subprocess_env()
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env_module):
    """One tiny real run stopped at iteration 2 (checkpoints 1 and 2)."""
    d = tmp_path_factory.mktemp("trained") / "run"
    run_ok(launch_cmd(*FAST, "train.checkpoint_every=1", "train.max_iterations=2", f"hydra.run.dir={d}"), env_module)
    return d


def run(cmd: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False)


def digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*.pt"))}


@pytest.mark.slow
def test_overrides_resume_cannot_apply_are_refused(trained, tmp_path, env_module):
    """Old main ignored seed=, algo.lr= and train.num_envs= on resume without a word."""
    before = digest(trained)
    p = run(
        launch_cmd(f"resume={trained}", "seed=5", "algo.lr=0.5", "train.num_envs=16", "model.hidden=16", *QUIET),
        env_module,
        tmp_path,
    )
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    err = p.stderr
    assert "seed=5 (saved: seed=0)" in err and "algo.lr=0.5 (saved: algo.lr=0.001)" in err
    assert "train.num_envs=16 (saved: train.num_envs=8)" in err
    assert "model.hidden" not in err  # equal to the saved value: allowed
    assert "train.total_env_steps, train.max_iterations, logger.*" in err and "Traceback" not in err
    assert digest(trained) == before
    # a group swapped for another one is refused too
    p = run(launch_cmd(f"resume={trained}", "model=mlp", *QUIET), env_module, tmp_path)
    assert p.returncode == 2 and "model=mlp (the saved run has other model settings)" in p.stderr, p.stderr[-2000:]


def test_empty_resume_is_refused(tmp_path, env_module):
    """Old main trained a fresh run for `resume=`."""
    p = run(launch_cmd(*FAST, "resume=", f"hydra.run.dir={tmp_path / 'x'}"), env_module, tmp_path)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert "resume= is empty" in p.stderr and "resume=null" in p.stderr
    assert not (tmp_path / "x").exists()  # nothing trained, and hydra's empty dir is gone


@pytest.mark.parametrize("kind", ["truncated", "config_json", "other_pt", "empty_dir"])
def test_resume_of_something_that_is_not_a_checkpoint_is_refused(kind, trained, tmp_path, env_module):
    """Old main ended each of these in a traceback."""
    if kind == "truncated":
        target = tmp_path / "ckpt_000002.pt"
        target.write_bytes((trained / "checkpoints" / "ckpt_000002.pt").read_bytes()[:5000])
        want = "is not a readable torch checkpoint (truncated or damaged?)"
    elif kind == "config_json":
        target = trained / "config.json"
        want = "is a JSON file (a run's config.json?), not a checkpoint"
    elif kind == "other_pt":
        target = tmp_path / "weights.pt"
        torch.save({"weight": torch.ones(3)}, target)
        want = "is a torch file but not an eqmarl checkpoint (no config, policy"
    else:
        target = tmp_path / "empty"
        target.mkdir()
        want = "no readable checkpoint in"
    p = run(launch_cmd(f"resume={target}", *QUIET), env_module, tmp_path)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert want in p.stderr and "resume= accepts a run directory" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_fallback_past_a_damaged_checkpoint_names_it(trained, tmp_path, env_module):
    """Old main fell back silently."""
    d = shutil.copytree(trained, tmp_path / "run")
    newest = d / "checkpoints" / "ckpt_000002.pt"
    newest.write_bytes(newest.read_bytes()[:3000])
    p = run(launch_cmd(f"resume={d}", *QUIET), env_module, tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"skipping checkpoint {newest}: it does not load (RuntimeError" in p.stderr
    assert f"using the newest readable checkpoint {d / 'checkpoints' / 'ckpt_000001.pt'}" in p.stderr
    assert "resumed" in p.stderr and "at iteration 1 " in p.stderr


@pytest.mark.slow
def test_resume_leaves_no_stray_output_dir_and_plot_skips_non_run_dirs(trained, tmp_path, env_module):
    """Old main left outputs/<date>/<time>_... (hydra's dir for the resuming call, empty of
    results) and `eqmarl plot outputs/*/*` stopped at it with exit 2."""
    d = shutil.copytree(trained, tmp_path / "run")
    p = run(launch_cmd(f"resume={d}", "train.max_iterations=3", *QUIET), env_module, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(tmp_path.glob("outputs/*/*")) == []
    # a failed launch's leftover dir (hydra's files only) next to a real run
    leftover = tmp_path / "outputs" / "day" / "12-00-00_mpe_e2gn2_s0"
    (leftover / ".hydra").mkdir(parents=True)
    plot = [sys.executable, "-m", "eqmarl.cli", "plot"]
    p = run([*plot, str(d), str(leftover)], env_module, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"skipping {leftover}: not a run dir (no metrics.csv)" in p.stderr
    assert (d / "learning_curve.png").exists()
    p = run([*plot, str(leftover)], env_module, tmp_path)
    assert p.returncode == 2 and "no run dir" in p.stderr


@pytest.mark.slow
def test_mpe2_resume_is_exact(tmp_path, one_thread):
    """mpe2 runs in worker processes; its checkpoint now holds every worker's PettingZoo env
    (world, np_random) and prey generator.  Old main saved no env state for mpe2 and the
    resumed run differed from an uninterrupted one (173 of 229 tensors)."""
    from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
    from eqmarl.train.trainer import Trainer

    base = [*TINY, "env.backend=mpe2", "env.workers=1", "train.total_env_steps=1000", "train.eval_every=0"]
    full = Trainer(compose(base), tmp_path / "full")
    full.run()
    full.env.close()
    part = Trainer(compose([*base, "train.max_iterations=2"]), tmp_path / "part")
    part.run()
    part.env.close()
    state = load_checkpoint(resolve_checkpoint(tmp_path / "part"))
    assert state["env"] is not None and len(state["env"]["slots"]) == 8
    resumed = Trainer(compose(base), tmp_path / "part")
    resumed.load_state_dict(state)
    resumed.run()
    resumed.env.close()
    a, b = resumed.policy.state_dict(), full.policy.state_dict()
    assert resumed.iteration == full.iteration == 5
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_resume_without_simulator_state_says_it_is_not_exact(tmp_path, capsys, one_thread):
    """The Hanabi engine backend cannot export its games: the resume says so (old main: silent)."""
    pytest.importorskip("hanabi_learning_environment")
    from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
    from eqmarl.train.trainer import Trainer

    base = [*FAST, "env=hanabi", "env.backend=engine", "model=mlp", "train.max_iterations=1"]
    Trainer(compose(base), tmp_path / "run").run()
    state = load_checkpoint(resolve_checkpoint(tmp_path / "run"))
    assert state["env"] is None
    capsys.readouterr()
    Trainer(compose(base), tmp_path / "run").load_state_dict(state)
    err = capsys.readouterr().err
    assert "env=hanabi with env.backend=engine cannot save its simulator state" in err and "not bit-exact" in err
