"""Run directories: one run per directory, one process per run.

- :func:`check_fresh_run_dir`: a fresh run (no ``resume=``) refuses a directory that
  already holds another run (``config.json``, ``metrics.csv`` or ``checkpoints/``), so
  two runs never share checkpoints, ``latest`` or ``metrics.csv``.
- :func:`check_writable`: the run directory can be created and written.
- :class:`RunDirLock`: ``<run dir>/eqmarl.lock``, created with ``O_EXCL`` and holding the
  owner's pid, host, SLURM job id and start time, is held while a run trains (rank 0).
  For a fresh run the lock is taken first and the directory checked while it is held
  (``fresh=True``), so two launches on one directory can never both pass the check.
  A lock whose process is gone (same host, pid no longer alive) is stale and taken over
  with a note; so is one left by an earlier attempt of the same SLURM job (a requeued or
  preempted job resumes in its own run directory), and one of another host whose SLURM
  job ``squeue``/``sacct`` report ended.  Any other holder is refused with its host and
  job named (and, when SLURM cannot be asked, why not).
- :func:`claim_run_dir`: the lock taken by hydra's callback before hydra writes into the
  directory, handed to the run with :func:`take_claimed_lock`.
- :func:`own_slurm_requeue`: this process is a requeued attempt of the SLURM job that
  trained in the directory (``SLURM_RESTART_COUNT`` > 0 and the job id recorded in the
  lock or in ``slurm_job.json``): it continues there instead of being refused.
- :func:`remove_unstarted_run`, :func:`remove_hydra_only_dir`: what a launch that trained
  nothing leaves behind is removed, with the parent directories it created.

Errors are :class:`RunDirError` (the launcher prints them and exits with code 2).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from eqmarl.core.log import get_logger

log = get_logger("train")

LOCK_NAME = "eqmarl.lock"
# the SLURM job that last trained in a run dir (kept after the lock is released: a
# requeued attempt of that job recognises its own run dir by it)
JOB_RECORD_NAME = "slurm_job.json"
# what makes a directory hold a run (written by eqmarl.launch.job.run_training / Trainer)
RUN_MARKERS = ("config.json", "metrics.csv", "checkpoints")
# a lock file still without content this long after its creation is a crashed writer's
UNREADABLE_LOCK_GRACE_S = 10.0
# SLURM job states (squeue/sacct) after which the job holds nothing any more
SLURM_ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "TIMEOUT",
    }
)
# how long one squeue/sacct call may take
SLURM_QUERY_TIMEOUT_S = 15.0


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


def slurm_restart_count() -> int:
    """How often SLURM restarted (requeued) this job: ``SLURM_RESTART_COUNT``, 0 outside SLURM."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


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


# ------------------------------------------------------------------ SLURM's view of a job
def _run_query(cmd: list[str]) -> tuple[str, str] | None:
    """(stdout, stderr) of a SLURM command; None when it cannot run here (missing, hung, broken)."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=SLURM_QUERY_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if p.returncode != 0:
        # squeue: a job the controller no longer knows is "Invalid job id specified"
        return ("", p.stderr) if "invalid job id" in p.stderr.lower() else None
    return p.stdout, p.stderr


def slurm_job_state(job_id: str) -> tuple[str | None, str]:
    """What SLURM says of ``job_id``: ``(state, source)``.

    ``state`` is SLURM's state word (``RUNNING``, ``PENDING``, ``COMPLETED``, ...),
    ``"GONE"`` when ``squeue`` no longer lists the job and ``sacct`` knows nothing more,
    or None when neither command can answer here; ``source`` says which command answered
    (or why none could).
    """
    queue = _run_query(["squeue", "-h", "-j", str(job_id), "-o", "%T"])
    if queue is not None:
        words = queue[0].split()
        if words:
            return words[0].upper(), "squeue"
    acct = _run_query(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State"])
    if acct is not None:
        lines = [ln.split()[0].upper() for ln in acct[0].splitlines() if ln.strip()]
        if lines:
            return lines[-1], "sacct"
    if queue is not None:  # not in the queue, and accounting has no record to add
        return "GONE", "squeue (not in the queue)"
    missing = [c for c in ("squeue", "sacct") if shutil.which(c) is None]
    if missing == ["squeue", "sacct"]:
        return None, "squeue and sacct are not installed here"
    if acct is not None:
        return None, "squeue failed and sacct knows no such job"
    return None, "squeue and sacct could not be run here (" + (", ".join(missing) or "both failed") + ")"


def slurm_job_ended(state: str | None) -> bool:
    """Whether a :func:`slurm_job_state` state means the job holds nothing any more."""
    return state == "GONE" or (state is not None and state.split("+")[0] in SLURM_ENDED_STATES)


# ------------------------------------------------------------------ the lock
class RunDirLock:
    """``<run dir>/eqmarl.lock`` held while a run trains (use as a context manager).

    Args:
        run_dir: the run directory (created if missing).
        quiet: no note when a stale lock is taken over.
        fresh: a fresh run: once the lock is held, refuse a directory that already holds
            a run (:func:`check_fresh_run_dir`), then release the lock.  Taken and checked
            in this order, two launches on one directory cannot both pass.
    """

    def __init__(self, run_dir: str | Path, quiet: bool = False, fresh: bool = False) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.quiet = quiet
        self.fresh = fresh
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

    def _judge(self, holder: dict[str, Any] | None) -> tuple[str | None, str]:
        """Whether an existing lock may be taken over: ``(why it is stale, None: live)`` and,
        for a live one, what the refusal adds about its holder."""
        if holder is None:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return "it is gone", ""
            return ("it is unreadable (a crashed writer)" if age > UNREADABLE_LOCK_GRACE_S else None), ""
        me = self.info
        job = holder.get("slurm_job_id")
        if me["slurm_job_id"] and job == me["slurm_job_id"]:
            return f"it was left by an earlier attempt of this SLURM job {me['slurm_job_id']} (requeue)", ""
        if holder.get("host") == me["host"]:
            pid = holder.get("pid")
            if not isinstance(pid, int) or pid == me["pid"] or not _pid_alive(pid):
                return f"its process (pid {pid}) is no longer running", ""
            return None, ""
        # another host: its process cannot be checked from here, its SLURM job can
        if not job:
            return None, (
                f"Host {holder.get('host')} is not this host ({me['host']}) and the holder ran outside SLURM, so "
                "whether it still runs cannot be checked from here"
            )
        state, source = slurm_job_state(str(job))
        if slurm_job_ended(state):
            return f"its SLURM job {job} on host {holder.get('host')} has ended ({source}: {state})", ""
        if state is None:
            return None, (
                f"Whether SLURM job {job} still runs cannot be checked from this host ({source}), so the lock "
                "is not taken over"
            )
        return None, f"SLURM job {job} is still {state} ({source})"

    # -- acquire / release -------------------------------------------------------------
    def acquire(self) -> RunDirLock:
        """Take the lock (and, with ``fresh``, check the directory holds no run).

        Raises:
            RunDirError: another process holds it (the message names its pid, host and
                SLURM job), or ``fresh`` and the directory holds a run.
        """
        self._take()
        if self.fresh:
            try:
                check_fresh_run_dir(self.path.parent)
            except RunDirError:
                self.release()
                raise
        return self

    def _take(self) -> None:
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
                reason, about = self._judge(holder)
                if reason is None:
                    raise RunDirError(self._in_use(holder, about)) from None
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
            self._record_job()
            return
        raise RunDirError(f"could not take the lock {self.path} (it keeps changing); is another run starting there?")

    def _record_job(self) -> None:
        """In a SLURM job, note the job in ``slurm_job.json`` (a requeue finds its run dir by it)."""
        if not self.info["slurm_job_id"]:
            return
        record = {k: self.info[k] for k in ("slurm_job_id", "host", "started")}
        path = self.path.parent / JOB_RECORD_NAME
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp, path)
        except OSError as e:  # only a requeue's convenience: the run itself goes on
            log.warning(f"could not write {path}: {e}")

    def _in_use(self, holder: dict[str, Any] | None, about: str) -> str:
        who = _describe(holder) if holder is not None else "a process that is still writing it"
        about = f" {about}." if about else ""
        return (
            f"run dir {self.path.parent} is in use by {who} (lock {self.path}).{about} Wait for that run "
            "to end, or use another directory with hydra.run.dir=<new dir>. If that process is no "
            f"longer running (e.g. on another host), delete {self.path}"
        )

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


# locks hydra's callback took before hydra wrote into the run dir, by resolved path
_claimed: dict[Path, RunDirLock] = {}


def _release_claimed() -> None:
    for lock in list(_claimed.values()):
        lock.release()
    _claimed.clear()


def claim_run_dir(run_dir: str | Path, fresh: bool = True) -> RunDirLock:
    """Lock ``run_dir`` now (and, with ``fresh``, check it holds no run) for the run to come.

    hydra's callback calls this before hydra writes its own files there, so a directory
    another launch has just claimed is refused before anything is written into it.  The
    run takes the lock over with :func:`take_claimed_lock`; one never taken is released
    when the process exits.

    Raises:
        RunDirError: as :meth:`RunDirLock.acquire`.
    """
    lock = RunDirLock(run_dir, fresh=fresh).acquire()
    if not _claimed:
        atexit.register(_release_claimed)
    _claimed[Path(run_dir).resolve()] = lock
    return lock


def take_claimed_lock(run_dir: str | Path) -> RunDirLock | None:
    """The lock :func:`claim_run_dir` holds for ``run_dir`` (now the caller's to release), if any."""
    lock = _claimed.pop(Path(run_dir).resolve(), None)
    return lock if lock is not None and lock.held else None


def recorded_slurm_jobs(run_dir: str | Path) -> set[str]:
    """The SLURM job ids recorded in ``run_dir``: the lock's holder and ``slurm_job.json``."""
    d = Path(run_dir)
    jobs: set[str] = set()
    for name in (LOCK_NAME, JOB_RECORD_NAME):
        try:
            data = json.loads((d / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("slurm_job_id"):
            jobs.add(str(data["slurm_job_id"]))
    return jobs


def own_slurm_requeue(run_dir: str | Path) -> bool:
    """This process is a requeued attempt of the SLURM job that trained in ``run_dir``.

    True when ``SLURM_RESTART_COUNT`` > 0 and ``SLURM_JOB_ID`` is the job recorded in the
    directory (its lock, left by a killed attempt, or ``slurm_job.json``): a plain
    ``sbatch --requeue`` of ``python launch.py`` then continues its own run.
    """
    job = slurm_job_id()
    return bool(job) and slurm_restart_count() > 0 and job in recorded_slurm_jobs(run_dir)


# ------------------------------------------------------------------ what a launch leaves behind
# directories a launch created (hydra's run dir and its parents), deepest first, by run dir
_new_dirs: dict[Path, list[Path]] = {}


def note_new_dirs(run_dir: str | Path) -> None:
    """Remember which of ``run_dir`` and its parents do not exist yet (before hydra makes them)."""
    d = _absolute(run_dir)
    missing = []
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    _new_dirs[_absolute(run_dir)] = missing


def _absolute(path: str | Path) -> Path:
    """``path`` made absolute as hydra makes its output dir (``os.path.abspath``)."""
    return Path(os.path.abspath(path))


def _remove_new_parents(run_dir: Path) -> None:
    """Remove the empty parents of ``run_dir`` that this launch created (``outputs/<date>/``)."""
    for d in _new_dirs.pop(_absolute(run_dir), [])[1:]:
        try:
            d.rmdir()
        except OSError:  # not empty (another run's dir) or already gone
            break


def remove_unstarted_run(run_dir: str | Path, job_name: str) -> bool:
    """Remove what a fresh run that saved no checkpoint left in ``run_dir``.

    A run stopped (SIGINT/SIGTERM) before its first checkpoint cannot be resumed; its
    ``config.json`` and hydra's files would only make the directory look like a run (and
    refuse the next fresh run there).  Only eqmarl's and hydra's own files go; the
    directory itself, and the parents this launch created, when nothing else is left.

    Returns:
        whether the directory was removed.
    """
    d = Path(run_dir)
    ckpts = d / "checkpoints"
    if ckpts.is_dir() and any(p.name.startswith("ckpt_") for p in ckpts.iterdir()):
        return False  # a checkpoint exists: the run is resumable, keep everything
    names = [".hydra", f"{job_name}.log", "config.json", "metrics.csv", "checkpoints", "wandb", JOB_RECORD_NAME]
    for name in names:
        p = d / name
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        except OSError as e:
            log.warning(f"could not remove {p}: {e}")
    for p in d.glob(".eqmarl-write-probe.*"):
        with contextlib.suppress(OSError):
            p.unlink()
    try:
        d.rmdir()
    except OSError:
        return False
    _remove_new_parents(d)
    return True


def remove_hydra_only_dir(output_dir: str | Path, job_name: str, keep: str | Path | None = None) -> bool:
    """Remove ``output_dir`` if it holds nothing but hydra's files (``.hydra/``, ``<job>.log``).

    A resumed run continues in its checkpoint's directory; the directory hydra made for
    the resuming invocation is then empty of results and would only confuse ``eqmarl plot``.
    The parents this launch created (``outputs/<date>/``, ``outputs/``) go too when empty.

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
    _remove_new_parents(d)
    return True
