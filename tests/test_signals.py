"""SIGTERM and SIGINT on a real launch.py process: checkpoint, resume hint, exit 128+signal.

Each test starts training in a subprocess, waits until an iteration was logged, sends a
real signal with os.kill and checks what a user (or a scheduler) sees afterwards.
"""

import os
import signal
import subprocess
import time

import pytest

from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
from tests.conftest import TINY, launch_cmd, run_ok

# long enough that the signal arrives mid-run (each iteration is 200 frames)
LONG = [o for o in TINY if not o.startswith("train.total_env_steps")] + ["train.total_env_steps=40000"]


def wait_for_rows(metrics, n, proc, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) > n:
            return
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    raise AssertionError(f"no {n} rows in {metrics} after {timeout} s")


@pytest.fixture
def start():
    """Start launch.py with these arguments; whatever is still running at the end is killed."""
    procs = []

    def start(*args, env):
        procs.append(
            subprocess.Popen(launch_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        )
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


def saved_iteration(run_dir):
    return int(load_checkpoint(resolve_checkpoint(run_dir))["iteration"])


@pytest.mark.slow
def test_sigterm_checkpoints_says_how_to_resume_and_exits_143(tmp_path, clean_env, start):
    run = tmp_path / "run"
    proc = start(*LONG, f"hydra.run.dir={run}", env=clean_env)
    wait_for_rows(run / "metrics.csv", 1, proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    assert "stop requested (SIGTERM)" in out
    assert f"Continue with: python launch.py resume={run}" in out
    stopped_at = saved_iteration(run)
    assert 1 <= stopped_at < 200  # 40000 / 200 frames: it stopped early, with a checkpoint
    rows = (run / "metrics.csv").read_text().strip().splitlines()[1:]
    assert int(rows[-1].split(",")[0]) == stopped_at  # the checkpoint holds the last logged iteration
    # the hint works: resume continues from there to the (shortened) end
    p = run_ok(
        launch_cmd(*LONG, f"resume={run}", f"train.max_iterations={stopped_at + 2}", f"hydra.run.dir={tmp_path / 'x'}"),
        env=clean_env,
    )
    assert f"resumed {run} at iteration {stopped_at}" in p.stderr
    assert saved_iteration(run) == stopped_at + 2


@pytest.mark.slow
def test_signal_ends_a_local_sweep(tmp_path, clean_env, start):
    sweep = tmp_path / "sweep"
    proc = start("-m", *LONG, "seed=0,1", f"hydra.sweep.dir={sweep}", env=clean_env)
    deadline = time.time() + 180
    while time.time() < deadline and not list(sweep.glob("0_*/metrics.csv")):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    (job0,) = sweep.glob("0_*")
    wait_for_rows(job0 / "metrics.csv", 1, proc)
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    assert f"Continue with: python launch.py resume={job0}" in out
    assert "the sweep stops here" in out
    assert 1 <= saved_iteration(job0) < 200
    assert not list(sweep.glob("1_*")), "job 1 started after the stop request"
    assert "#1 :" not in out  # hydra announces each job it launches


@pytest.mark.slow
def test_second_sigterm_aborts(tmp_path, clean_env, start):
    run = tmp_path / "run"
    # a longer iteration (≈ 1 s), so both signals land inside the same one
    slow = [*LONG, "algo.rollout_steps=100", "algo.epochs=8"]
    proc = start(*slow, f"hydra.run.dir={run}", env=clean_env)
    wait_for_rows(run / "metrics.csv", 1, proc)
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-3000:]
    assert "SIGTERM again: aborting without a checkpoint" in out
    assert "Traceback" not in out
