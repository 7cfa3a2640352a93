"""A hung env worker never hangs the run (issue 19): at every point where the trainer talks
to mpe2's worker processes (reset, step, the env state of a checkpoint, its restore on
resume, close, the eval env, the interpreter's exit) the exchange is bounded by
``env.worker_timeout_s``, the hung worker is killed (SIGKILL), restarted and counted.
The hangs are real: SIGSTOP sent to the real worker processes, with a 2 s timeout."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eqmarl.build import make_env
from eqmarl.config import MpeEnvConfig
from eqmarl.envs.vector import ProcessVectorEnv, WorkerCrash
from eqmarl.train.logger import Logger
from eqmarl.train.trainer import Trainer
from tests.conftest import ROOT, TINY, compose, launch_cmd, subprocess_env

TIMEOUT = 2.0  # env.worker_timeout_s of these tests
# what a bounded exchange may take beyond the timeout: killing, reaping and restarting a
# worker (a fork of the preloaded fork server, rebuilding and resetting its envs) on a
# loaded 2-core machine
SLACK = 15.0


def _gone(pid: int) -> bool:
    """The process no longer exists (killed and reaped: a zombie would still be there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _stop(pid: int) -> int:
    os.kill(pid, signal.SIGSTOP)
    return pid


def _reap_leftover(pids: list[int]) -> None:
    """A worker the code under test failed to kill must not outlive the test stopped."""
    for pid in pids:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def mpe2():  # type: ignore[no-untyped-def]
    cfg = MpeEnvConfig(backend="mpe2", workers=2, worker_timeout_s=TIMEOUT)
    env = make_env(cfg, num_envs=4, seed=0)
    stopped: list[int] = []
    yield env, stopped
    _reap_leftover(stopped)
    env.close()


def _actions(env) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.zeros(env.num_envs, env.spec.n_agents, env.spec.action_dim)


def test_reset_with_a_stopped_worker_restarts_it(mpe2) -> None:  # type: ignore[no-untyped-def]
    env, stopped = mpe2
    stopped.append(_stop(env.worker_pids[0]))
    t = time.monotonic()
    obs = env.reset(seed=1)
    assert time.monotonic() - t < TIMEOUT + SLACK
    assert env.worker_timeouts == 1 and env.worker_restarts == 1
    assert _gone(stopped[0]) and stopped[0] not in env.worker_pids and len(env.worker_pids) == 2
    assert obs.obs.shape[0] == 4 and torch.isfinite(obs.obs).all()


def test_step_with_a_stopped_worker_cuts_its_episodes(mpe2) -> None:  # type: ignore[no-untyped-def]
    env, stopped = mpe2
    env.step(_actions(env))
    stopped.append(_stop(env.worker_pids[1]))
    t = time.monotonic()
    res = env.step(_actions(env))
    assert time.monotonic() - t < TIMEOUT + SLACK
    assert env.worker_timeouts == 1 and _gone(stopped[0])
    assert res.info["worker_restart"].tolist() == [False, False, True, True]
    assert res.truncated[2:].all() and not res.terminated[2:].any()


def test_state_export_with_a_stopped_worker_saves_no_env_state(mpe2) -> None:  # type: ignore[no-untyped-def]
    env, stopped = mpe2
    stopped.append(_stop(env.worker_pids[0]))
    t = time.monotonic()
    assert env.state_dict() is None  # the checkpoint is written without env state
    assert time.monotonic() - t < TIMEOUT + SLACK
    assert env.worker_timeouts == 1 and _gone(stopped[0])
    res = env.step(_actions(env))  # the next step restarts it
    assert res.info["worker_restart"].tolist() == [True, True, False, False]
    assert env.worker_restarts == 1 and env.state_dict() is not None


def test_state_restore_with_a_stopped_worker_restarts_it(mpe2) -> None:  # type: ignore[no-untyped-def]
    env, stopped = mpe2
    for _ in range(3):
        env.step(_actions(env))
    state = env.state_dict()
    assert state is not None
    stopped.append(_stop(env.worker_pids[1]))
    t = time.monotonic()
    obs = env.load_state_dict(state)
    assert time.monotonic() - t < TIMEOUT + SLACK
    assert env.worker_timeouts == 1 and env.worker_restarts == 1 and _gone(stopped[0])
    # the live worker's envs resume exactly, the restarted one's start new episodes
    assert torch.equal(obs.obs[:2], state["obs"][:2])
    res = env.step(_actions(env))
    assert not res.info["worker_restart"].any()


def test_a_large_request_to_a_stopped_worker_is_bounded(mpe2) -> None:  # type: ignore[no-untyped-def]
    """A request larger than the pipe's socket buffer (a big env state on resume) would
    block the sender forever on a worker that does not read."""
    env, stopped = mpe2
    stopped.append(_stop(env.worker_pids[0]))
    blob = b"\0" * (8 << 20)
    t = time.monotonic()
    with pytest.raises(WorkerCrash, match="timed out"):
        env._pool.call("set_state", [(blob,)] * env.num_envs)
    assert time.monotonic() - t < TIMEOUT + SLACK
    assert env.worker_timeouts == 1 and _gone(stopped[0])


def test_close_with_a_stopped_worker_kills_it(mpe2) -> None:  # type: ignore[no-untyped-def]
    env, stopped = mpe2
    stopped.append(_stop(env.worker_pids[0]))
    other = env.worker_pids[1]
    t = time.monotonic()
    env.close()
    assert time.monotonic() - t < TIMEOUT + SLACK
    assert _gone(stopped[0]) and _gone(other) and env.worker_timeouts == 1


class _BigAnswer:
    """A toy env whose ``big(n)`` answers ``n`` bytes (larger than the socket buffer)."""

    def reset(self, seed):  # type: ignore[no-untyped-def]
        return {"x": np.zeros(1)}

    def step(self, action):  # type: ignore[no-untyped-def]
        return {"x": np.zeros(1)}

    def big(self, n: int) -> bytes:
        return b"\1" * n


def test_an_answer_cut_off_half_way_is_bounded() -> None:
    """The worker stops in the middle of writing its answer: the parent has read part of
    it and must not wait forever for the rest."""
    pool = ProcessVectorEnv([_BigAnswer], workers=1, timeout=TIMEOUT)
    pid = pool.worker_pids[0]
    try:
        pool.reset([0])
        assert pool._send(0, ("call", ("big", [(64 << 20,)]))) is None
        time.sleep(1.0)  # it fills the socket buffer and blocks in write: stop it there
        os.kill(pid, signal.SIGSTOP)
        t = time.monotonic()
        with pytest.raises(WorkerCrash, match="timed out"):
            pool._recv(0)
        assert time.monotonic() - t < TIMEOUT + SLACK
        assert pool.timeouts == 1 and _gone(pid)
        restarted, records = pool.revive()
        assert restarted.tolist() == [True] and records is not None and pool.restarts == 1
        assert pool.call("big", [(3,)]) == [b"\1\1\1"]
    finally:
        _reap_leftover([pid])
        pool.close()


def test_a_worker_stopped_before_its_first_answer_gets_no_start_up_grace() -> None:
    """A new worker's first answer may take longer (it imports the main module and builds
    its envs), but not when it is stopped: that is a hang from the start."""
    pool = ProcessVectorEnv([_BigAnswer] * 2, workers=2, timeout=TIMEOUT)
    pids = pool.worker_pids
    try:
        os.kill(pids[0], signal.SIGSTOP)
        t = time.monotonic()
        out = pool.reset([1, 2])
        assert time.monotonic() - t < TIMEOUT + SLACK
        assert pool.timeouts == 1 and _gone(pids[0]) and out["x"].shape == (2, 1)
    finally:
        _reap_leftover(pids)
        pool.close()


def test_interpreter_exit_with_a_stopped_worker_is_bounded(tmp_path: Path) -> None:
    """A script that ends without closing its env: multiprocessing's exit hook would wait
    forever for the stopped (daemon) worker; the pools are closed before it."""
    code = (
        "import os, signal, sys\n"
        "from eqmarl.build import make_env\n"
        "from eqmarl.config import MpeEnvConfig\n"
        "if __name__ == '__main__':\n"
        f"    env = make_env(MpeEnvConfig(backend='mpe2', workers=2, worker_timeout_s={TIMEOUT}), 4, 0)\n"
        "    print(*env.worker_pids, flush=True)\n"
        "    os.kill(env.worker_pids[0], signal.SIGSTOP)\n"
    )
    script = tmp_path / "exit_with_stopped_worker.py"
    script.write_text(code)
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    try:
        proc.wait(timeout=60 + TIMEOUT + SLACK)  # interpreter start and imports, then the exit
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the interpreter did not exit: its exit hook waits for the stopped worker")
    finally:
        time.sleep(0.5)
        _reap_leftover(pids)
    assert proc.returncode == 0
    assert len(pids) == 2 and all(_gone(p) for p in pids)


class _StopWorkers(Logger):
    """The real metrics logger; after logging iteration 1 it stops a worker of the eval
    env (the evaluation of iteration 2 meets it), and after iteration 2 a training worker
    (the checkpoint of iteration 2 meets it)."""

    trainer: Trainer
    stopped: list[int]

    def log(self, metrics: dict[str, float]) -> None:
        super().log(metrics)
        if metrics["iteration"] == 1:
            self.stopped.append(_stop(self.trainer.eval_env.worker_pids[0]))
        elif metrics["iteration"] == 2:
            self.stopped.append(_stop(self.trainer.env.worker_pids[1]))


@pytest.mark.slow
def test_training_with_stopped_workers_counts_them_and_resumes(tmp_path: Path, one_thread) -> None:  # type: ignore[no-untyped-def]
    overrides = [*TINY, "env.backend=mpe2", "env.workers=2", f"env.worker_timeout_s={TIMEOUT}", "model=mlp"]
    cfg = compose([*overrides, "train.total_env_steps=800", "train.eval_every=2", "train.checkpoint_every=2"])
    trainer = Trainer(cfg, tmp_path)
    logger = _StopWorkers(cfg.logger, tmp_path, {}, total_env_steps=800)
    logger.trainer, logger.stopped = trainer, []
    try:
        t = time.monotonic()
        trainer.run(logger)
        logger.close()
        assert time.monotonic() - t < 4 * (TIMEOUT + SLACK) + 120
        assert trainer.iteration == 4
        assert all(_gone(p) for p in logger.stopped)
        state = trainer.state_dict()
    finally:
        _reap_leftover(logger.stopped)
        trainer.env.close()
        trainer.eval_env.close()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    counts = [(int(r["iteration"]), float(r["env_restarts"]), float(r["env_timeouts"])) for r in rows]
    # the eval env's hung worker in iteration 2 (its evaluation), the training env's in
    # iteration 3 (met by iteration 2's checkpoint, restarted by iteration 3's rollout)
    assert counts == [(1, 0, 0), (2, 1, 1), (3, 1, 1), (4, 0, 0)]

    # resume: a worker hangs while the env state is restored
    resumed = Trainer(cfg, tmp_path / "resumed")
    stopped = [_stop(resumed.env.worker_pids[0])]
    try:
        t = time.monotonic()
        resumed.load_state_dict(state)
        assert time.monotonic() - t < TIMEOUT + SLACK
        assert resumed.env.worker_timeouts == 1 and _gone(stopped[0])
        assert resumed.iteration == 4 and torch.equal(resumed.obs.obs[2:], state["env"]["obs"][2:])
    finally:
        _reap_leftover(stopped)
        resumed.env.close()
        resumed.eval_env.close()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


@pytest.mark.slow
def test_a_worker_stopped_during_a_real_run_is_killed_counted_and_the_run_finishes(tmp_path: Path, clean_env) -> None:  # type: ignore[no-untyped-def]
    """The issue's case: ``kill -STOP`` on an mpe2 worker of a running ``python launch.py``."""
    run_dir = tmp_path / "run"
    over = [*TINY, "env.backend=mpe2", "env.workers=2", f"env.worker_timeout_s={TIMEOUT}", "model=mlp"]
    cmd = launch_cmd(*over, "train.total_env_steps=3000", f"hydra.run.dir={run_dir}")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env)
    stopped: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while not stopped and time.monotonic() < deadline and proc.poll() is None:
            if (run_dir / "metrics.csv").exists():  # training runs: stop a worker (below the fork server)
                workers = [w for server in _children(proc.pid) for w in _children(server)]
                if workers:
                    stopped.append(_stop(workers[0]))
            time.sleep(0.2)
        assert stopped, "no worker to stop"
        t = time.monotonic()
        _, err = proc.communicate(timeout=TIMEOUT + SLACK + 120)
        assert proc.returncode == 0, err[-3000:]
        assert time.monotonic() - t < TIMEOUT + SLACK + 120
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        _reap_leftover(stopped)
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert int(rows[-1]["iteration"]) == 15
    assert sum(float(r["env_timeouts"]) for r in rows) >= 1 and _gone(stopped[0])
