"""Run directories: a fresh run refuses a dir that holds another run, a lock keeps a second
process out (stale locks are taken over), default names are unique."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eqmarl.train.rundir import LOCK_NAME, RunDirError, RunDirLock
from tests.conftest import CONFIGS, TINY, launch_cmd, run_ok, subprocess_env

FAST = [*TINY, "train.eval_every=0"]
# a resume that trains nothing more (the runs below are at iteration 2 or later)
RESUME = ["train.max_iterations=1", "logger.progress=false", "logger.wandb_mode=disabled"]


def snapshot(d: Path) -> dict[str, str]:
    """Every file under ``d`` (hydra's files included) with a hash of its bytes."""
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, clean_env_module):
    """One tiny real run stopped at iteration 2 (checkpoints 1 and 2)."""
    d = tmp_path_factory.mktemp("trained") / "run"
    run_ok(
        launch_cmd(*FAST, "train.checkpoint_every=1", "train.max_iterations=2", f"hydra.run.dir={d}"), clean_env_module
    )
    return d


@pytest.fixture(scope="module")
def clean_env_module():
    return subprocess_env()


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def run(cmd: list[str], env: dict, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run in ``cwd`` (hydra's default outputs/ of a resume lands there, not in the repo)."""
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False)


# ------------------------------------------------------------------------- fresh runs
def test_fresh_run_refuses_a_dir_holding_another_run(trained, tmp_path, clean_env_module):
    """Old main trained the second run into the first one's dir (mixed metrics, pruned
    checkpoints, `latest` naming a deleted file)."""
    d = copy_run(trained, tmp_path / "run")
    before = snapshot(d)
    p = run(launch_cmd(*FAST, "seed=1", f"hydra.run.dir={d}"), clean_env_module, tmp_path)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"resume={d}" in p.stderr and "hydra.run.dir" in p.stderr and "already holds a run" in p.stderr
    assert "Traceback" not in p.stderr
    assert snapshot(d) == before  # nothing touched, not even hydra's .hydra/ and log


# ------------------------------------------------------------------------------ locks
@pytest.mark.slow
def test_second_live_process_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path, clean_env_module):
    d = tmp_path / "busy"
    many = [o for o in FAST if not o.startswith("train.total_env_steps")] + ["train.total_env_steps=400000"]
    first = subprocess.Popen(
        launch_cmd(*many, "train.checkpoint_every=1", f"hydra.run.dir={d}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env_module,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (d / "checkpoints" / "latest").exists():
            assert first.poll() is None, "the first run ended early"
            time.sleep(0.1)
        holder = json.loads((d / LOCK_NAME).read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        # a second process resuming the same dir while the first one trains: refused
        p = run(launch_cmd(*RESUME, f"resume={d}"), clean_env_module, tmp_path)
        assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
        assert f"is in use by pid {first.pid} on host {socket.gethostname()}" in p.stderr
        assert "hydra.run.dir" in p.stderr and "Traceback" not in p.stderr
    finally:
        first.kill()  # SIGKILL: no clean-up, the lock stays behind
        first.wait()
    assert (d / LOCK_NAME).exists()
    p = run(launch_cmd(*RESUME, f"resume={d}"), clean_env_module, tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"taking over the stale lock {d / LOCK_NAME} (pid {first.pid}" in p.stderr
    assert "no longer running" in p.stderr
    assert not (d / LOCK_NAME).exists()  # released at the end


@pytest.mark.slow
def test_a_requeued_slurm_job_takes_over_its_own_lock(trained, tmp_path, clean_env_module):
    """A preempted attempt of SLURM job 4242 left its lock (its pid may even be alive on
    this host): the requeued attempt of the same job continues; any other job is refused."""
    d = copy_run(trained, tmp_path / "run")
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "slurm_job_id": "4242", "started": time.time()}
    (d / LOCK_NAME).write_text(json.dumps(lock))
    other = run(launch_cmd(*RESUME, f"resume={d}"), {**clean_env_module, "SLURM_JOB_ID": "7"}, tmp_path)
    assert other.returncode == 2 and "SLURM job 4242" in other.stderr, other.stderr[-2000:]
    same = run(
        launch_cmd(*RESUME, f"resume={d}"),
        {**clean_env_module, "SLURM_JOB_ID": "4242"},
        tmp_path,
    )
    assert same.returncode == 0, same.stderr[-2000:]
    assert "earlier attempt of this SLURM job 4242" in same.stderr


def test_lock_rules(tmp_path, capsys):
    """In-process: live holder refused (naming it), dead pid / unreadable old lock taken over."""
    d = tmp_path / "d"
    with RunDirLock(d) as held:
        assert held.held and json.loads((d / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (d / LOCK_NAME).exists()
    # a live process on this host
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = {"pid": sleeper.pid, "host": socket.gethostname(), "slurm_job_id": None, "started": time.time()}
        (d / LOCK_NAME).write_text(json.dumps(info))
        with pytest.raises(RunDirError, match=f"in use by pid {sleeper.pid} on host"):
            RunDirLock(d).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    # ... now dead: stale
    lock = RunDirLock(d).acquire()
    assert "taking over the stale lock" in capsys.readouterr().err
    lock.release()
    # another host: cannot be checked, refused with how to clear it
    (d / LOCK_NAME).write_text(json.dumps({**info, "host": "elsewhere-node"}))
    with pytest.raises(RunDirError, match=f"delete {d / LOCK_NAME}"):
        RunDirLock(d).acquire()
    # an unreadable lock: fresh = still being written (refused), old = crashed writer (stale)
    (d / LOCK_NAME).write_text("")
    with pytest.raises(RunDirError, match="still writing it"):
        RunDirLock(d).acquire()
    old = time.time() - 3600
    os.utime(d / LOCK_NAME, (old, old))
    RunDirLock(d).acquire().release()


# ------------------------------------------------------------------------ dir names
def test_default_run_dir_names_are_unique(tmp_path):
    """Two launches within the same second got the same default dir on old main."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from eqmarl.config import register_configs

    register_configs()
    names = []
    for _ in range(2):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("config", return_hydra_config=True)
        names += [str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)]
    GlobalHydra.instance().clear()
    assert len(set(names)) == 4, names
