"""Run directories: one run per directory, one process per run.

- :func:`check_fresh_run_dir`: a fresh run (no ``resume=``) refuses a directory that
  already holds another run (``config.json``, ``metrics.csv`` or ``checkpoints/``), so
  two runs never share checkpoints, ``latest`` or ``metrics.csv``.
- :func:`check_writable`: the run directory can be created and written.
- :class:`RunDirLock`: ``<run dir>/eqmarl.lock``, created with ``O_EXCL`` and holding the
  owner's pid, host, SLURM job id and start time, is held while a run trains (rank 0).
  A lock whose process is gone (same host, pid no longer alive) is stale and taken over
  with a note; so is one left by an earlier attempt of the same SLURM job (a requeued or
  preempted job resumes in its own run directory).  Any other live holder is refused.

Errors are :class:`RunDirError` (the launcher prints them and exits with code 2).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from eqmarl.core.log import get_logger

log = get_logger("train")

LOCK_NAME = "eqmarl.lock"
# what makes a directory hold a run (written by eqmarl.launch.job.run_training / Trainer)
RUN_MARKERS = ("config.json", "metrics.csv", "checkpoints")
# a lock file still without content this long after its creation is a crashed writer's
UNREADABLE_LOCK_GRACE_S = 10.0


class RunDirError(RuntimeError):
    """A run directory that cannot be used (held by another run, locked, not writable)."""


def run_markers(run_dir: str | Path) -> list[str]:
    """The files of an earlier run in ``run_dir`` (``checkpoints/`` only when it holds files)."""
    d = Path(run_dir)
    found = []
    for name in RUN_MARKERS:
        p = d / name
        if name == "checkpoints":
            if p.is_dir() and any(p.iterdir()):
                found.append("checkpoints/")
        elif p.exists():
            found.append(name)
    return found


def check_fresh_run_dir(run_dir: str | Path) -> None:
    """Refuse a directory that already holds a run (a fresh run would mix with it).

    Raises:
        RunDirError: naming ``resume=<dir>`` (continue that run) and ``hydra.run.dir``.
    """
    found = run_markers(run_dir)
    if found:
        raise RunDirError(
            f"hydra.run.dir={run_dir} already holds a run ({', '.join(found)}); a fresh run there would "
            f"mix its checkpoints and metrics with it. Continue that run with resume={run_dir}, "
            "or start a new one in another directory with hydra.run.dir=<new dir> (or leave hydra.run.dir unset)"
        )


def check_writable(run_dir: str | Path, key: str = "hydra.run.dir") -> None:
    """Create ``run_dir`` and write (then remove) a probe file in it.

    Raises:
        RunDirError: naming ``key`` and the OS error.
    """
    d = Path(run_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=d, prefix=".eqmarl-write-probe.")
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise RunDirError(
            f"{key}={d}: cannot write there ({e.strerror or e}); pick a writable directory with {key}=<dir> "
            "(or free space / remount the disk read-write)"
        ) from e


def slurm_job_id() -> str | None:
    """This process's SLURM job id (kept by a requeued job), or None outside SLURM."""
    return os.environ.get("SLURM_JOB_ID") or None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else "?"
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{job}, started {when}"


class RunDirLock:
    """``<run dir>/eqmarl.lock`` held while a run trains (use as a context manager).

    Args:
        run_dir: the run directory (created if missing).
        quiet: no note when a stale lock is taken over.
    """

    def __init__(self, run_dir: str | Path, quiet: bool = False) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.quiet = quiet
        self.info: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "slurm_job_id": slurm_job_id(),
            "started": time.time(),
        }
        self.held = False

    # -- judging an existing lock ------------------------------------------------------
    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _stale_reason(self, holder: dict[str, Any] | None) -> str | None:
        """Why an existing lock may be taken over (None: it is live, refuse)."""
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return "it is gone"
            return "it is unreadable (a crashed writer)" if age > UNREADABLE_LOCK_GRACE_S else None
        me = self.info
        if me["slurm_job_id"] and holder.get("slurm_job_id") == me["slurm_job_id"]:
            return f"it was left by an earlier attempt of this SLURM job {me['slurm_job_id']} (requeue)"
        if holder.get("host") == me["host"]:
            pid = holder.get("pid")
            if not isinstance(pid, int) or pid == me["pid"] or not _pid_alive(pid):
                return f"its process (pid {pid}) is no longer running"
        return None

    # -- acquire / release -------------------------------------------------------------
    def acquire(self) -> RunDirLock:
        """Take the lock.

        Raises:
            RunDirError: another live process holds it (the message names it).
        """
        payload = json.dumps(self.info).encode()
        for _ in range(5):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = self._read()
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                reason = self._stale_reason(holder)
                if reason is None:
                    who = _describe(holder) if holder is not None else "a process that is still writing it"
                    raise RunDirError(
                        f"run dir {self.path.parent} is in use by {who} (lock {self.path}). Wait for that run "
                        "to end, or use another directory with hydra.run.dir=<new dir>. If that process is no "
                        f"longer running (e.g. on another host), delete {self.path}"
                    ) from None
                if not self.quiet:
                    what = _describe(holder) if holder is not None else "unknown holder"
                    log.warning(f"taking over the stale lock {self.path} ({what}): {reason}")
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            except OSError as e:
                raise RunDirError(self._unwritable(e)) from e
            try:
                os.write(fd, payload)
                os.fsync(fd)
            except OSError as e:
                os.close(fd)
                with contextlib.suppress(OSError):
                    self.path.unlink()
                raise RunDirError(self._unwritable(e)) from e
            else:
                os.close(fd)
            self.held = True
            return self
        raise RunDirError(f"could not take the lock {self.path} (it keeps changing); is another run starting there?")

    def _unwritable(self, e: OSError) -> str:
        d = self.path.parent
        return (
            f"run dir {d} is not writable ({e.strerror or e}): a run writes its lock, config, metrics and "
            f"checkpoints there. Free space or remount it read-write; to continue a run stored on a read-only "
            f"disk, copy its dir elsewhere and resume=<copy>; for a new run pick hydra.run.dir=<writable dir>"
        )

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if not self.held:
            return
        self.held = False
        with contextlib.suppress(OSError):
            holder = self._read()
            if (
                holder is not None
                and holder.get("pid") == self.info["pid"]
                and holder.get("started") == self.info["started"]
            ):
                self.path.unlink()

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------ hydra's own output dir
def remove_hydra_only_dir(output_dir: str | Path, job_name: str, keep: str | Path | None = None) -> bool:
    """Remove ``output_dir`` if it holds nothing but hydra's files (``.hydra/``, ``<job>.log``).

    A resumed run continues in its checkpoint's directory; the directory hydra made for
    the resuming invocation is then empty of results and would only confuse ``eqmarl plot``.

    Returns:
        whether it was removed.
    """
    d = Path(output_dir)
    if keep is not None and d.resolve() == Path(keep).resolve():
        return False
    hydra_files = {".hydra", f"{job_name}.log"}
    try:
        names = {p.name for p in d.iterdir()}
    except OSError:
        return False
    if not names <= hydra_files:
        return False
    try:
        if (d / ".hydra").is_dir():
            for p in (d / ".hydra").iterdir():
                p.unlink()
            (d / ".hydra").rmdir()
        with contextlib.suppress(FileNotFoundError):
            (d / f"{job_name}.log").unlink()
        d.rmdir()
    except OSError as e:
        log.warning(f"could not remove the unused output dir {d}: {e}")
        return False
    return True
