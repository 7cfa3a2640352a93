"""Run-dir locks across ranks, launches, hosts and SLURM requeues.

- a lock refused to rank 0 stops every rank at once, with rank 0's message;
- the fresh-run check and the lock are one step: a second launch on the same directory
  is refused before hydra writes anything there;
- a lock of another host is judged by its SLURM job (squeue/sacct), and never taken over
  when SLURM cannot be asked;
- a plain ``sbatch --requeue`` of ``python launch.py`` continues its own run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from eqmarl.train.rundir import JOB_RECORD_NAME, LOCK_NAME, RunDirError, RunDirLock, own_slurm_requeue
from tests.conftest import TINY, launch_cmd

FAST = [*TINY, "train.eval_every=0", "env=lever", "model=mlp"]


def wait_until(cond, proc: subprocess.Popen | None = None, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        if proc is not None:
            assert proc.poll() is None, proc.communicate()[0][-3000:] if proc.stdout else proc.returncode
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s")


# ------------------------------------------------------------------ (a) every rank stops
def _rank_main(rank: int, world: int, port: int, run_dir: str, out_dir: str) -> None:
    import datetime

    import torch.distributed as dist

    from eqmarl.launch.job import run_training
    from tests.conftest import compose

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    cfg = compose([*FAST, "learner=ddp", "learner.timeout_s=120"])
    started = time.time()
    try:
        run_training(cfg, Path(run_dir), rank=rank, world_size=world)
        result = ["ok", ""]
    except Exception as e:
        result = [type(e).__name__, str(e)]
    Path(out_dir, f"{rank}.json").write_text(json.dumps([*result, time.time() - started]))
    time.sleep(3)  # stay in the group a moment: a rank that waits on this one must not see it leave


@pytest.mark.slow
def test_a_lock_refused_to_rank_0_stops_every_rank_with_its_message(tmp_path):
    """Old main: rank 0 was refused, the others built their trainer and waited in DDP's
    first broadcast until the collective timeout (or failed with a gloo error)."""
    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        holder = {"pid": sleeper.pid, "host": socket.gethostname(), "slurm_job_id": None, "started": time.time()}
        (run / LOCK_NAME).write_text(json.dumps(holder))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.start_processes(
            _rank_main, args=(2, port, str(run), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    results = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    assert [r[0] for r in results] == ["RunDirError", "RunDirError"], results
    assert results[0][1] == results[1][1] and f"in use by pid {sleeper.pid}" in results[0][1]
    assert all(r[2] < 60 for r in results), results  # promptly, not after the collective timeout


# ------------------------------------------------------------------ (b) check and lock in one step
def test_the_fresh_check_happens_under_the_lock(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "config.json").write_text("{}")
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDirLock(d, fresh=True).acquire()
    assert not (d / LOCK_NAME).exists()  # released: refused, not held
    RunDirLock(d).acquire().release()  # a resume (not fresh) may use it


@pytest.mark.slow
def test_a_second_launch_on_a_just_claimed_dir_is_refused_before_hydra_writes(tmp_path, clean_env):
    """Old main: launch A checked the dir, hydra wrote .hydra/, and only seconds later (its
    lock, its config.json) did the dir look taken; launch B on the same dir in between
    passed the fresh-run check, overwrote A's .hydra/ and trained into the same dir."""
    d = tmp_path / "run"
    a = subprocess.Popen(
        launch_cmd(*FAST, "seed=0", "train.max_iterations=2", f"hydra.run.dir={d}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env,
    )
    try:
        wait_until(lambda: (d / ".hydra" / "overrides.yaml").exists(), a)
        os.kill(a.pid, signal.SIGSTOP)  # A stays between its check and its training
        b = subprocess.run(
            launch_cmd(*FAST, "seed=1", "train.max_iterations=2", f"hydra.run.dir={d}"),
            capture_output=True,
            check=False,
            text=True,
            env=clean_env,
            timeout=300,
        )
        os.kill(a.pid, signal.SIGCONT)
        out, _ = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)
            a.kill()
            a.communicate()
    assert b.returncode == 2, b.stdout[-3000:] + b.stderr[-3000:]
    assert f"is in use by pid {a.pid}" in b.stderr, b.stderr[-3000:]
    assert a.returncode == 0, out[-3000:]
    assert "seed=0" in (d / ".hydra" / "overrides.yaml").read_text()  # A's, not overwritten by B
    assert json.loads((d / "config.json").read_text())["seed"] == 0


# ------------------------------------------------------------------ (c) a lock of another host
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **scripts: str) -> None:
    """PATH with only these SLURM commands (name -> shell script body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        p = bin_dir / name
        p.write_text("#!/bin/sh\n" + body + "\n")
        p.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def foreign_lock(d: Path) -> dict:
    d.mkdir(exist_ok=True)
    holder = {"pid": 4321, "host": "node-17", "slurm_job_id": "123", "started": time.time()}
    (d / LOCK_NAME).write_text(json.dumps(holder))
    return holder


@pytest.mark.parametrize(
    ("scripts", "state"),
    [
        ({"squeue": "echo RUNNING"}, "RUNNING (squeue)"),
        ({"squeue": "echo PENDING", "sacct": "echo COMPLETED"}, "PENDING (squeue)"),
        ({"sacct": "echo RUNNING"}, "RUNNING (sacct)"),
    ],
    ids=["running", "pending", "sacct-only"],
)
def test_a_lock_of_a_running_job_on_another_host_is_refused_naming_host_and_job(scripts, state, tmp_path, monkeypatch):
    """Old main refused every lock of another host without saying whether its job ran."""
    fake_slurm(tmp_path, monkeypatch, **scripts)
    d = tmp_path / "run"
    foreign_lock(d)
    with pytest.raises(RunDirError) as e:
        RunDirLock(d).acquire()
    msg = str(e.value)
    assert "pid 4321 on host node-17, SLURM job 123" in msg and f"SLURM job 123 is still {state}" in msg, msg


@pytest.mark.parametrize(
    ("scripts", "why"),
    [
        (
            {"squeue": "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", "sacct": "echo COMPLETED"},
            "(sacct: COMPLETED)",
        ),
        ({"squeue": "true", "sacct": "echo 'CANCELLED by 0'"}, "(sacct: CANCELLED)"),
        ({"squeue": "echo TIMEOUT"}, "(squeue: TIMEOUT)"),
        ({"squeue": "true"}, "(squeue (not in the queue): GONE)"),
    ],
    ids=["completed", "cancelled", "timeout", "not-queued"],
)
def test_a_lock_of_an_ended_job_on_another_host_is_taken_over(scripts, why, tmp_path, monkeypatch, capsys):
    """Old main never took such a lock over: the user had to find and delete it."""
    fake_slurm(tmp_path, monkeypatch, **scripts)
    d = tmp_path / "run"
    foreign_lock(d)
    lock = RunDirLock(d).acquire()
    err = capsys.readouterr().err
    assert "taking over the stale lock" in err and f"its SLURM job 123 on host node-17 has ended {why}" in err, err
    assert json.loads((d / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_without_squeue_and_sacct_a_foreign_lock_is_kept_and_the_message_says_why(tmp_path, monkeypatch):
    fake_slurm(tmp_path, monkeypatch)
    d = tmp_path / "run"
    holder = foreign_lock(d)
    with pytest.raises(RunDirError) as e:
        RunDirLock(d).acquire()
    msg = str(e.value)
    assert "on host node-17, SLURM job 123" in msg and "squeue and sacct are not installed here" in msg, msg
    assert "not taken over" in msg and f"delete {d / LOCK_NAME}" in msg
    assert json.loads((d / LOCK_NAME).read_text()) == holder


# ------------------------------------------------------------------ (d) sbatch --requeue of launch.py
def test_own_requeue_is_recognised_by_the_recorded_job(tmp_path, monkeypatch):
    d = tmp_path / "run"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    RunDirLock(d).acquire().release()
    assert json.loads((d / JOB_RECORD_NAME).read_text())["slurm_job_id"] == "4242"
    assert not own_slurm_requeue(d)  # the first attempt
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert own_slurm_requeue(d)
    monkeypatch.setenv("SLURM_JOB_ID", "999")
    assert not own_slurm_requeue(d)  # another job


@pytest.mark.slow
def test_sbatch_requeue_of_launch_py_continues_its_own_run(tmp_path, clean_env):
    """Old main refused the requeued attempt as a fresh run in a dir that holds a run."""
    d = tmp_path / "run"
    long = [o for o in FAST if not o.startswith("train.total_env_steps")] + ["train.total_env_steps=4000"]
    cmd = launch_cmd(*long, "train.checkpoint_every=1", f"hydra.run.dir={d}")
    job = {**clean_env, "SLURM_JOB_ID": "4242", "SLURM_RESTART_COUNT": "0"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=job)
    try:
        wait_until(lambda: (d / "checkpoints" / "latest").exists(), first)
        os.kill(first.pid, signal.SIGTERM)  # SLURM's preemption/requeue: SIGTERM first
        out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 143, out[-3000:]
    other = subprocess.run(
        cmd,
        capture_output=True,
        check=False,
        text=True,
        env={**job, "SLURM_JOB_ID": "999", "SLURM_RESTART_COUNT": "1"},
        timeout=300,
    )
    assert other.returncode == 2 and "already holds a run" in other.stderr, other.stderr[-3000:]
    again = subprocess.run(
        cmd, capture_output=True, check=False, text=True, env={**job, "SLURM_RESTART_COUNT": "1"}, timeout=600
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "SLURM job 4242 restarted" in again.stderr and f"resumed {d} at iteration" in again.stderr
    rows = (d / "metrics.csv").read_text().splitlines()[1:]
    iterations = [int(r.split(",")[0]) for r in rows]
    assert iterations == list(range(1, 21)), iterations  # each iteration logged once, to the end
