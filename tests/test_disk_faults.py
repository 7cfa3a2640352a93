"""Disks: a read-only or full disk gives a message naming the path and what to do, never a
traceback; a failed checkpoint write keeps the previous checkpoint and `latest`.

Faults are real: small tmpfs mounts (full), read-only tmpfs mounts, and RLIMIT_FSIZE (a
per-process file size limit; SIGXFSZ ignored so writes fail with EFBIG).  We run as root,
so file modes would not stop a write.
"""

from __future__ import annotations

import contextlib
import hashlib
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY, launch_cmd, run_ok, subprocess_env

FAST = [*TINY, "train.eval_every=0"]
QUIET = ["logger.progress=false", "logger.wandb_mode=disabled"]


@pytest.fixture
def env():
    return subprocess_env()


@contextlib.contextmanager
def tmpfs(where: Path, size: str, read_only: bool = False, populate: Path | None = None) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``where`` (``populate`` copied in first, then remounted
    read-only if asked); skips the test where mounting is not permitted."""
    where.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, check=False
    )
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {p.stderr.decode().strip()}")
    try:
        if populate is not None:
            shutil.copytree(populate, where / populate.name)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def file_size_limit(limit: int):
    """preexec_fn: writes past ``limit`` bytes fail with EFBIG (instead of SIGXFSZ killing us)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def run(cmd: list[str], env: dict, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False, **kw)


def test_read_only_run_dir_at_start_is_refused(tmp_path, env):
    """Old main: hydra's traceback (exit 1) creating the dir or its log file."""
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        p = run(launch_cmd(*FAST, f"hydra.run.dir={ro / 'run'}"), env, tmp_path)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"hydra.run.dir={ro / 'run'}: cannot write there (Read-only file system)" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow
def test_resume_of_a_run_on_a_read_only_disk_is_refused(tmp_path, env):
    """Old main: a traceback writing config.json."""
    src = tmp_path / "run"
    run_ok(launch_cmd(*FAST, "train.max_iterations=2", f"hydra.run.dir={src}"), env)
    with tmpfs(tmp_path / "ro", "2m", read_only=True, populate=src) as ro:
        p = run(launch_cmd(f"resume={ro / 'run'}", *QUIET), env, tmp_path)
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"run dir {ro / 'run'} is not writable (Read-only file system)" in p.stderr
    assert "resume=<copy>" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_full_disk_at_every_checkpoint(tmp_path, env):
    """A 128 KiB tmpfs: config and metrics fit, no checkpoint (~200 KB) does.  The periodic
    checkpoint warns and training goes on; the final one ends the run with exit 1 and a
    message.  Old main: an OSError traceback at the first checkpoint."""
    with tmpfs(tmp_path / "small", "128k") as small:
        d = small / "run"
        p = run(launch_cmd(*FAST, f"hydra.run.dir={d}"), env, tmp_path)
        leftovers = sorted(x.name for x in (d / "checkpoints").iterdir()) if (d / "checkpoints").exists() else []
        rows = (d / "metrics.csv").read_text().strip().splitlines()
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    err = p.stderr
    periodic = f"checkpoint not saved: cannot write {d / 'checkpoints' / 'ckpt_000002.pt'} (No space left on device)"
    assert periodic in err and "training continues and tries again" in err
    final = f"eqmarl: checkpoint not saved: cannot write {d / 'checkpoints' / 'ckpt_000004.pt'} (No space left"
    assert final in err and f"resume={d}" in err and "Traceback" not in err
    assert leftovers == []  # no temp file left behind
    assert len(rows) == 5  # header + 4 iterations: training went on past the failed checkpoint


@pytest.mark.slow
def test_failed_checkpoint_keeps_the_previous_one(tmp_path, env):
    """Resume a run under a file size limit that checkpoints exceed: every write fails,
    ckpt_000002.pt and `latest` stay as they were, and a later resume continues from them."""
    d = tmp_path / "run"
    run_ok(launch_cmd(*FAST, "train.max_iterations=2", f"hydra.run.dir={d}"), env)
    ckpt = d / "checkpoints" / "ckpt_000002.pt"
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    more = [f"resume={d}", "train.max_iterations=null", "train.total_env_steps=1200", *QUIET]
    p = run(launch_cmd(*more), env, tmp_path, preexec_fn=file_size_limit(100_000))
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    assert f"cannot write {d / 'checkpoints' / 'ckpt_000004.pt'} (File too large)" in p.stderr
    assert f"the previous checkpoint {ckpt} is intact" in p.stderr
    assert f"cannot write {d / 'checkpoints' / 'ckpt_000006.pt'}" in p.stderr and "Traceback" not in p.stderr
    assert sorted(x.name for x in (d / "checkpoints").iterdir()) == ["ckpt_000002.pt", "latest"]
    assert (d / "checkpoints" / "latest").read_text() == "ckpt_000002.pt"
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before
    p = run(launch_cmd(*more), env, tmp_path)  # space again: continues from iteration 2
    assert p.returncode == 0, p.stderr[-2000:]
    assert "at iteration 2 " in p.stderr
    assert (d / "checkpoints" / "latest").read_text() == "ckpt_000006.pt"
