"""The resume command a stopped run prints resumes it, whatever the env and however it
stopped (SIGINT, SIGTERM, kill -9); a refused resume override names the key and why;
a resume leaves no folder behind in the working directory."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
from eqmarl.train.resume import refused_overrides
from tests.conftest import TINY, launch_cmd

QUIET = ["logger.progress=false", "logger.wandb_mode=disabled"]


def base(total: int) -> list[str]:
    keep = [o for o in TINY if not o.startswith(("train.total_env_steps", "train.eval_every"))]
    return [*keep, f"train.total_env_steps={total}", "train.eval_every=0", "train.checkpoint_every=1"]


def wait_until(cond, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s")


def rows(run: Path) -> int:
    metrics = run / "metrics.csv"
    return len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0


def printed_command(out: str) -> list[str]:
    """The printed ``Continue with: python ...`` as argv (``python`` -> this interpreter)."""
    m = re.search(r"Continue with: (.+)", out)
    assert m, out[-3000:]
    argv = shlex.split(m.group(1))
    assert argv[0] == "python", argv
    return [sys.executable, *argv[1:]]


def saved_iteration(run: Path) -> int:
    return int(load_checkpoint(resolve_checkpoint(run))["iteration"])


def stop_and_resume(
    tmp_path: Path, env: dict, args: list[str], sig: int, iterations: int
) -> subprocess.CompletedProcess:
    """Train in a working dir without launch.py, stop with ``sig`` after the first logged
    iteration, run exactly the printed command there; return the resume's result."""
    work = tmp_path / "work"
    work.mkdir()
    run = tmp_path / "run"
    proc = subprocess.Popen(
        launch_cmd(*args, f"hydra.run.dir={run}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=work,
    )
    try:
        wait_until(lambda: rows(run) >= 1, proc)
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + sig, out[-3000:]
    stopped_at = saved_iteration(run)
    assert 1 <= stopped_at < iterations
    cmd = printed_command(out)
    p = subprocess.run(cmd, capture_output=True, check=False, text=True, env=env, cwd=work, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"resumed {run} at iteration {stopped_at}" in p.stderr
    assert saved_iteration(run) == iterations
    assert sorted(os.listdir(work)) == [], "the resume left a folder in the working dir (hydra's outputs/)"
    return p


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env_args", "sig", "total"),
    [
        (["env=lever", "model=mlp"], signal.SIGINT, 4000),
        (["env=hanabi_3c", "model=mlp"], signal.SIGTERM, 3000),
    ],
    ids=["lever-sigint", "hanabi-sigterm"],
)
def test_the_printed_command_resumes_a_non_default_env(env_args, sig, total, tmp_path, clean_env):
    """Old main: the printed `python launch.py resume=<dir>` exited 2 with "Key 'payoffs' not
    in 'MpeEnvConfig'" (resume composed the default env=mpe before reading the saved config)."""
    stop_and_resume(tmp_path, clean_env, [*base(total), *env_args], sig, total // 200)


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path, clean_env):
    """SIGKILL: no message, the lock stays; `python launch.py resume=<dir>` continues anyway."""
    run = tmp_path / "run"
    args = [*base(4000), "env=lever", "model=mlp"]
    proc = subprocess.Popen(
        launch_cmd(*args, f"hydra.run.dir={run}"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env
    )
    try:
        wait_until(lambda: (run / "checkpoints" / "latest").exists(), proc)
    finally:
        proc.kill()
        proc.wait()
    assert (run / "eqmarl.lock").exists()
    p = subprocess.run(
        launch_cmd(f"resume={run}"),
        capture_output=True,
        check=False,
        text=True,
        env=clean_env,
        cwd=tmp_path,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "taking over the stale lock" in p.stderr and f"resumed {run} at iteration" in p.stderr
    assert saved_iteration(run) == 20
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_the_printed_command_resumes_smax(tmp_path, clean_env):
    """The same for SMAX (old main: "Key 'race' not in 'MpeEnvConfig'")."""
    pytest.importorskip("jax")
    pytest.importorskip("jaxmarl")
    smax = [
        "env=smax",
        "env.n_units=2",
        "env.n_enemies=2",
        "env.episode_limit=10",
        "model=mlp",
        "model.hidden=16",
        "train.num_envs=4",
        "train.eval_episodes=4",
        "train.eval_every=0",
        "train.checkpoint_every=1",
        "train.total_env_steps=400",
        "algo.rollout_steps=10",
        "algo.epochs=1",
        "algo.num_minibatches=2",
        *QUIET,
    ]
    stop_and_resume(tmp_path, clean_env, smax, signal.SIGTERM, 10)


@pytest.mark.slow
def test_refused_env_override_names_its_key(tmp_path, clean_env):
    """Old main: an override of a lever key on resume failed to compose ("Key 'payoffs' not
    in 'MpeEnvConfig'"); a restated group was refused without naming what differs."""
    run = tmp_path / "run"
    p = subprocess.run(
        launch_cmd(*base(400), "env=lever", "model=mlp", "train.max_iterations=1", f"hydra.run.dir={run}"),
        capture_output=True,
        check=False,
        text=True,
        env=clean_env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    p = subprocess.run(
        launch_cmd(f"resume={run}", "env.payoffs=[1.0,0.5]", "model=mlp", *QUIET),
        capture_output=True,
        check=False,
        text=True,
        env=clean_env,
        cwd=tmp_path,
        timeout=300,
    )
    assert p.returncode == 2, p.stdout[-3000:] + p.stderr[-3000:]
    err = p.stderr
    assert "env.payoffs=[1.0,0.5] (saved: env.payoffs=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.9])" in err
    assert "model=mlp (the saved run has other model settings): model.hidden=16 saved, 128 asked" in err
    assert "MpeEnvConfig" not in err and "Traceback" not in err
    assert not (tmp_path / "outputs").exists()


SMAX_SAVED = {
    "env": {
        "name": "smacv2",
        "backend": "smax",
        "race": "terran",
        "n_units": 2,
        "n_enemies": 2,
        "start_positions": "surrounded_and_reflect",
        "p": 0.5,
        "surround_sides": "all",
        "movement": "continuous",
        "episode_limit": 10,
        "map_size": None,
    },
    "seed": 0,
}


def test_refused_smax_overrides_name_the_key_and_why():
    """Old main refused `env=smax` on a resume with "(the saved run has other env settings)"
    and named no key."""
    asked = {**SMAX_SAVED, "env": {**SMAX_SAVED["env"], "n_units": 5, "n_enemies": 5, "episode_limit": 100}}
    (group,) = refused_overrides(["env=smax"], asked, SMAX_SAVED)
    assert group.startswith("env=smax (the saved run has other env settings): ")
    for key, saved, want in (("env.n_units", 2, 5), ("env.n_enemies", 2, 5), ("env.episode_limit", 10, 100)):
        assert f"{key}={saved} saved, {want} asked" in group
    asked = {**SMAX_SAVED, "env": {**SMAX_SAVED["env"], "race": "zerg", "map_size": 40.0}}
    out = refused_overrides(["env.race=zerg", "env.map_size=40", "env.n_units=2"], asked, SMAX_SAVED)
    assert out == ["env.race=zerg (saved: env.race=terran)", "env.map_size=40 (saved: env.map_size=null)"]


@pytest.mark.slow
def test_a_resume_leaves_no_folder_in_the_working_dir(tmp_path, clean_env):
    """Old main removed hydra's dir of the resuming call but left its parents: an empty
    outputs/<date>/ in the working dir after every resume."""
    run = tmp_path / "run"
    p = subprocess.run(
        launch_cmd(*base(400), "train.max_iterations=1", f"hydra.run.dir={run}"),
        capture_output=True,
        check=False,
        text=True,
        env=clean_env,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run(
        launch_cmd(f"resume={run}", "train.max_iterations=2"),
        capture_output=True,
        check=False,
        text=True,
        env=clean_env,
        cwd=work,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert saved_iteration(run) == 2
    assert sorted(os.listdir(work)) == []
