"""SIGINT and SIGTERM from the first line of launch.py: exit 130/143, "stop requested",
no traceback, and nothing half-written left (no run dir with a half config, no lock).

Each test starts launch.py, waits for one start-up phase (handlers installed while it still
imports; hydra's run dir made; the envs being built) and sends a real signal.  A run the
signal catches before its first checkpoint leaves no run dir; one it catches later (a fast
start-up reaches the first iteration) stops at the end of that iteration with a checkpoint
and the resume hint.  Either way it never trains to the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, launch_cmd

TOTAL_ITERATIONS = 200
LONG = [o for o in TINY if not o.startswith("train.total_env_steps")] + [
    f"train.total_env_steps={200 * TOTAL_ITERATIONS}",
    "env=lever",
    "model=mlp",
]


def handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM (Python alone catches only SIGINT)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def wait_until(cond, proc: subprocess.Popen, timeout: float = 300.0, step: float = 0.005) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s")


PHASES = {
    "importing": lambda proc, run: handlers_installed(proc.pid),
    "run dir made": lambda proc, run: (run / ".hydra").exists(),
    "building": lambda proc, run: (run / "config.json").exists(),
}


def check_stopped(out: str, code: int, sig: int, run: Path) -> None:
    """The documented outcome of a stop, whenever it came."""
    assert code == 128 + sig, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert f"stop requested ({signal.Signals(sig).name})" in out or f"stopped by {signal.Signals(sig).name}" in out
    assert not (run / "eqmarl.lock").exists(), "a stale lock was left"
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("ckpt_*.pt")):
        assert f"Continue with: python launch.py resume={run}" in out, out[-3000:]
        assert not (run / "learning_curve.png").exists(), "it trained to the end"
    else:
        assert not run.exists(), f"left {sorted(p.name for p in run.iterdir())} in {run}"
        assert "nothing was saved" in out, out[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_stops_with_its_exit_code(phase, sig, tmp_path, clean_env):
    """Old main: SIGINT while importing ended in a KeyboardInterrupt traceback (exit 1 or
    -2), SIGTERM killed the process without a word (-15) and left hydra's dir behind."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        launch_cmd(*LONG, f"hydra.run.dir={run}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env,
    )
    try:
        wait_until(lambda: PHASES[phase](proc, run), proc)
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    check_stopped(out, proc.returncode, sig, run)
    if phase == "importing":  # nothing was composed yet: no run dir at all
        assert not run.exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_second_signal_during_start_up_aborts_without_traceback(sig, tmp_path, clean_env):
    """Old main: the second Ctrl-C printed a long traceback."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        launch_cmd(*LONG, f"hydra.run.dir={run}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env,
    )
    try:
        wait_until(lambda: (run / ".hydra").exists(), proc)
        os.kill(proc.pid, sig)
        time.sleep(0.2)
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + sig, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert not (run / "eqmarl.lock").exists()
    if not any(run.glob("checkpoints/ckpt_*.pt")):
        assert not run.exists() or not (run / "config.json").exists(), sorted(p.name for p in run.iterdir())


@pytest.mark.slow
def test_a_signal_while_a_resume_starts_leaves_the_run_unchanged(tmp_path, clean_env):
    """A resume stopped before it trained: the run is as it was, and the hint still applies."""
    run = tmp_path / "run"
    short = [*LONG, "train.max_iterations=2", "train.checkpoint_every=1", f"hydra.run.dir={run}"]
    p = subprocess.run(launch_cmd(*short), capture_output=True, check=False, text=True, env=clean_env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    proc = subprocess.Popen(
        launch_cmd(f"resume={run}", "train.max_iterations=null"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env,
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: handlers_installed(proc.pid), proc)
        time.sleep(1.0)  # composing or reading the checkpoint
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143 and "Traceback" not in out, out[-3000:]
    assert not (run / "eqmarl.lock").exists()
    if sorted(p.name for p in (run / "checkpoints").iterdir()) == before:  # stopped before it trained
        assert "unchanged" in out or "nothing was saved or changed" in out, out[-3000:]
    assert not (tmp_path / "outputs").exists()
