"""W&B unreachable: a bounded wait, then the run trains offline; ``eqmarl sync`` is bounded too.

The server is real: a local socket that accepts connections and never answers (a black
hole), or a port where nothing listens.  wandb is the installed package, with an API key
set, so ``logger.wandb_mode=auto`` (the default) goes online first.
"""

import csv
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
from eqmarl.train.logger import read_wandb_history
from tests.conftest import TINY, launch_cmd, run_ok

API_KEY = "0123456789abcdef0123456789abcdef01234567"
# TINY disables W&B; these runs use the default mode (auto) with a short wait
WANDB_RUN = [o for o in TINY if not o.startswith("logger.wandb_mode")] + ["logger.wandb_init_timeout_s=3"]


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


@pytest.fixture
def black_hole():
    server = BlackHole()
    yield server
    server.close()


def wandb_env(clean_env, port):
    env = dict(clean_env)
    env.pop("WANDB_MODE", None)
    env["WANDB_API_KEY"] = API_KEY
    env["WANDB_BASE_URL"] = f"http://127.0.0.1:{port}"
    return env


def offline_runs(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def check_trained_offline(run_dir, p, iterations):
    assert "warning: W&B did not start online within logger.wandb_init_timeout_s=3 s" in p.stderr
    assert f"upload later with: eqmarl sync {run_dir}" in p.stderr
    assert "Traceback" not in p.stderr
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["iteration"]) for r in rows] == list(range(1, iterations + 1))
    (run,) = offline_runs(run_dir)[-1:]
    history = [h for h in read_wandb_history(run) if "iteration" in h]
    assert [h["iteration"] for h in history] == [int(r["iteration"]) for r in rows][-len(history) :]
    return run


@pytest.mark.slow
def test_black_hole_server_falls_back_offline_and_resume_keeps_the_run_id(tmp_path, clean_env, black_hole):
    env = wandb_env(clean_env, black_hole.port)
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    p = run_ok(launch_cmd(*WANDB_RUN, f"hydra.run.dir={run_dir}", "train.max_iterations=2"), env=env)
    assert time.monotonic() - t0 < 90  # 3 s of waiting, not wandb's 90 s
    assert black_hole.conns, "wandb never contacted the server"
    first = check_trained_offline(run_dir, p, 2)
    run_id = first.name.rsplit("-", 1)[1]
    assert f"continuing offline as run {run_id}" in p.stderr
    assert load_checkpoint(resolve_checkpoint(run_dir))["wandb_run_id"] == run_id
    # resumed while the server is still unreachable: offline again, under the same W&B run id
    resume = launch_cmd(*WANDB_RUN, f"resume={run_dir}", "train.max_iterations=null", f"hydra.run.dir={tmp_path / 'x'}")
    p = run_ok(resume, env=env)
    second = check_trained_offline(run_dir, p, 4)
    assert second != first and second.name.endswith(f"-{run_id}")
    assert [h["iteration"] for h in read_wandb_history(second) if "iteration" in h] == [3, 4]


@pytest.mark.slow
def test_refused_connection_falls_back_offline(tmp_path, clean_env):
    env = wandb_env(clean_env, closed_port())
    run_dir = tmp_path / "run"
    p = run_ok(launch_cmd(*WANDB_RUN, f"hydra.run.dir={run_dir}"), env=env)
    check_trained_offline(run_dir, p, 4)
    assert (run_dir / "checkpoints" / "latest").read_text() == "ckpt_000004.pt"


def test_wandb_init_timeout_must_be_a_positive_finite_number(tmp_path, clean_env):
    for bad in ("0", "-1", "inf", "nan"):
        p = subprocess.run(
            launch_cmd(*TINY, f"logger.wandb_init_timeout_s={bad}", f"hydra.run.dir={tmp_path / bad}"),
            capture_output=True,
            text=True,
            env=clean_env,
            timeout=120,
            check=False,
        )
        assert p.returncode == 2, p.stderr[-2000:]
        assert "logger.wandb_init_timeout_s" in p.stderr and "allowed: a finite number" in p.stderr  # (of seconds > 0)
        assert not (tmp_path / bad / "metrics.csv").exists()


@pytest.mark.slow
def test_sync_uses_the_installed_wandb_and_gives_up_after_timeout(tmp_path, clean_env, black_hole):
    # an offline run to upload
    run_dir = tmp_path / "run"
    run_ok(launch_cmd(*TINY, "logger.wandb_mode=offline", f"hydra.run.dir={run_dir}"), env=clean_env)
    (offline,) = offline_runs(run_dir)
    # a different `wandb` first on PATH must not be the one that runs
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    marker = tmp_path / "fake_wandb_ran"
    (fake_bin / "wandb").write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n")
    (fake_bin / "wandb").chmod(0o755)
    env = wandb_env(clean_env, black_hole.port)
    env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "eqmarl.cli", "sync", str(run_dir), "--timeout", "4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 124, p.stdout[-2000:] + p.stderr[-2000:]
    assert time.monotonic() - t0 < 60
    assert "eqmarl sync: not finished after --timeout=4 s" in p.stderr
    assert f"run `eqmarl sync {run_dir}` again later" in p.stderr
    assert not marker.exists(), "ran the wandb found on PATH"
    assert black_hole.conns, "the installed wandb never contacted the server"
    assert offline.exists() and list(offline.glob("run-*.wandb"))  # nothing lost
