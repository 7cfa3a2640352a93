"""mpe2 worker processes that die or hang during training are restarted and counted in
metrics.csv (``env_restarts``, ``env_timeouts``).  The faults are real signals sent to the
real worker processes: SIGKILL (a crash) and SIGSTOP (a hang)."""

from __future__ import annotations

import csv
import os
import signal
import time

import pytest

from eqmarl.train.logger import Logger
from eqmarl.train.trainer import Trainer
from tests.conftest import TINY, compose


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class FaultyWorkers(Logger):
    """The real metrics logger; after logging iteration 1 it kills a worker, after
    iteration 2 it freezes one (the pool's hang timeout made short first)."""

    trainer: Trainer
    killed: int
    frozen: int

    def log(self, metrics: dict[str, float]) -> None:
        super().log(metrics)
        env = self.trainer.env
        if metrics["iteration"] == 1:
            self.killed = env.worker_pids[0]
            os.kill(self.killed, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while not _gone(self.killed) and time.monotonic() < deadline:
                time.sleep(0.01)
        elif metrics["iteration"] == 2:
            env._pool.timeout = 1.0  # seconds a worker may take to answer (default 120)
            self.frozen = env.worker_pids[1]
            os.kill(self.frozen, signal.SIGSTOP)


@pytest.mark.slow
def test_mpe2_worker_crash_and_hang_are_counted_in_metrics(tmp_path, one_thread):
    cfg = compose([*TINY, "env.backend=mpe2", "env.workers=2", "model=mlp", "train.total_env_steps=1000"])
    trainer = Trainer(cfg, tmp_path)
    try:
        logger = FaultyWorkers(cfg.logger, tmp_path, {}, total_env_steps=1000)
        logger.trainer = trainer
        trainer.run(logger)
        logger.close()
        pids = trainer.env.worker_pids
        assert logger.killed not in pids and logger.frozen not in pids  # both were replaced
        assert trainer.iteration == 5  # and training went on to the end
    finally:
        trainer.env.close()
        trainer.eval_env.close()
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    counts = [(int(r["iteration"]), float(r["env_restarts"]), float(r["env_timeouts"])) for r in rows]
    # one worker process restarted in iteration 2 (crash) and one in iteration 3 (hang)
    assert counts == [(1, 0, 0), (2, 1, 0), (3, 1, 1), (4, 0, 0), (5, 0, 0)]
    assert _gone(logger.frozen)  # the hung worker was killed, not left behind
