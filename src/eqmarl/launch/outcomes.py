"""What became of each job of a SLURM sweep, and the launcher's report of it.

hydra-submitit-launcher raises the first failed job's error in the launcher (a traceback
of hydra's and submitit's frames) and says nothing of the sweep's other jobs.  eqmarl's
launcher (:mod:`eqmarl.launch.slurm`) waits for every job instead and reports each in
one block on stderr: a finished job with its run dir and final eval return, a failed one
with its SLURM job id, sweep point and state, one line saying what ended it, and the
paths of its stderr and stdout.  The launcher then exits 1 if any job failed.

What ended a job, as submitit sees it:

* an exception in the run (``FailedJobError``: the job wrote its traceback to its stderr
  and to submitit's result file): the traceback's last line, ``module.Error: message``;
* no result at all (``UncompletedJobError``): SLURM ended the process (``scancel``, the
  time limit, the memory limit, a node failure: said from SLURM's state), a signal killed
  it (``kill -9``: SLURM's ``srun: error: ...: Killed`` line in its stderr), or it exited
  by itself (``sys.exit``, a stop signal it handled): its own last line in its stderr, or
  the ``resume=`` hint it printed, with the exit code.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eqmarl.core.log import get_logger

log = get_logger("launch")

# submitit's FailedJobError message puts the job's traceback between two lines of dashes
_TRACE_RULE = "-" * 22 + "\n"
# lines of SLURM's daemons in a job's stderr (why it was killed, how a task ended)
_SLURM_PREFIXES = ("slurmstepd:", "srun:")
# the tag of eqmarl's log lines ("[eqmarl] ", "[eqmarl rank 1] error: ")
_LOG_TAG = re.compile(r"^\[eqmarl[^\]]*\] ")
# why SLURM ended a job, by its state
_WHY = {
    "CANCELLED": "cancelled (scancel)",
    "TIMEOUT": "killed at its time limit (cluster.timeout_min)",
    "OUT_OF_MEMORY": "killed for exceeding its memory (cluster.mem_gb)",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "PREEMPTED": "preempted and not requeued",
    "DEADLINE": "killed at its deadline",
}
# SLURM states of a job that has not ended (yet)
_UNFINISHED = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED", "UNKNOWN")


@dataclasses.dataclass
class JobOutcome:
    """One job of a sweep, after it ended.

    Attributes:
        job_id: SLURM's job id (``<array id>_<index>`` for a sweep).
        point: the sweep point, ``#<n> [<overrides>]``.
        failed: whether the job failed.
        message: failed: the error's last line; finished: the run dir and final eval return.
        state: SLURM's state of the job (``COMPLETED``, ``FAILED``, ``CANCELLED by 0``, ``TIMEOUT``...).
        stdout, stderr: the log files of the (failed) task.
    """

    job_id: str
    point: str
    failed: bool
    message: str
    state: str = ""
    stdout: Path | None = None
    stderr: Path | None = None

    def block(self) -> str:
        """The report of this job: one line when it finished, a few when it failed."""
        if not self.failed:
            return f"job {self.job_id} {self.point} finished: {self.message}"
        return (
            f"job {self.job_id} {self.point} failed (SLURM state {self.state}): {self.message}\n"
            f"    stderr: {self.stderr}\n"
            f"    stdout: {self.stdout}"
        )


def sweep_points(job_overrides: Sequence[Sequence[str]], initial_job_idx: int = 0) -> list[str]:
    """Each point as ``#<n> [<overrides>]``, with only the overrides that differ between
    the points (all of them for a one-point sweep)."""
    shared = set(job_overrides[0]).intersection(*job_overrides[1:]) if len(job_overrides) > 1 else set()
    return [
        f"#{initial_job_idx + i} [{' '.join(o for o in overrides if o not in shared) or 'no overrides'}]"
        for i, overrides in enumerate(job_overrides)
    ]


def job_outcome(job: Any, point: str, returned: Any = None) -> JobOutcome:
    """Wait for ``job`` (a ``submitit.Job``) and say what became of it.

    Args:
        job: the submitit job of one sweep point.
        point: the sweep point (:func:`sweep_points`).
        returned: its hydra ``JobReturn`` when the launcher already has it (else read here).
    """
    for i in range(job.num_tasks):  # the first failed task (rank) of the job, if any
        task = job.task(i)
        error = task.exception()  # waits for the task
        if error is not None:
            state = _state(task)
            message = _error_line(error, task, state)
            return JobOutcome(str(job.job_id), point, True, message, state, task.paths.stdout, task.paths.stderr)
    if returned is None:
        returned = job.results()[0]
    return JobOutcome(str(job.job_id), point, False, _finished(returned), "COMPLETED")


def report(outcomes: Sequence[JobOutcome]) -> int:
    """Log one block per job (failed ones as errors) and a summary; return how many failed."""
    failed = [o for o in outcomes if o.failed]
    for o in outcomes:
        if o.failed:
            log.error(o.block())
        else:
            log.info(o.block())
    if failed:
        ids = ", ".join(o.job_id for o in failed)
        log.error(f"{len(failed)} of {len(outcomes)} job(s) of this sweep failed ({ids}): exit code 1")
    return len(failed)


def _state(job: Any, wait_s: float = 15.0) -> str:
    """SLURM's final state of a job that ended (its result file can come before SLURM's record)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = str(job.get_info(mode="force").get("State") or job.state)
        except Exception:  # sacct/squeue did not answer: the report goes on without the state
            return "UNKNOWN"
        if state.split(" ")[0] not in _UNFINISHED or time.monotonic() > deadline:
            return state
        time.sleep(1.0)


def _error_line(error: BaseException, task: Any, state: str) -> str:
    """What ended a failed task, in one line.

    An exception: the last line of its traceback.  No result: why SLURM ended it (from
    its state) and SLURM's line in the job's stderr, or, when the process exited by
    itself (``sys.exit``, a stop signal it handled), the job's own last line there (its
    ``resume=`` hint when it printed one).
    """
    parts = str(error).split(_TRACE_RULE)
    if len(parts) >= 3 and "failed during processing" in parts[0]:  # FailedJobError: the traceback
        trace = [ln.strip() for ln in parts[1].splitlines() if ln.strip()]
        if trace:
            return trace[-1]
    try:
        stderr = task.stderr() or ""
    except OSError:
        stderr = ""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    own = [_LOG_TAG.sub("", ln) for ln in lines if not ln.startswith(_SLURM_PREFIXES)]
    slurm = [ln for ln in lines if ln.startswith(_SLURM_PREFIXES) and ("error:" in ln or "***" in ln)]
    banner = [ln for ln in slurm if "***" in ln]  # slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT ... ***
    detail = banner[-1] if banner else (slurm[-1] if slurm else "")
    exited = re.search(r"Exited with exit code (\d+)", detail)
    if exited and own:  # it exited by itself: its own last word, or how to continue it if it said
        resume = [ln for ln in own if "resume=" in ln]
        detail = f"{(resume or own)[-1]} (exit code {exited.group(1)})"
    why = _WHY.get(state.split(" ")[0], "")
    if not detail and not why and own:
        detail = own[-1]
    return ": ".join(p for p in (why, detail) if p) or "the job ended without a result and wrote nothing to its stderr"


def _finished(returned: Any) -> str:
    """Where a finished job's run is, and its final eval return."""
    run_dir = None
    hydra_cfg = getattr(returned, "hydra_cfg", None)
    if hydra_cfg is not None:
        run_dir = hydra_cfg.hydra.runtime.output_dir
    from hydra.core.utils import JobStatus

    value = returned.return_value if returned.status == JobStatus.COMPLETED else None
    text = f"run dir {run_dir}"
    if isinstance(value, (int, float)):
        text += f", final eval return {value:.2f}"
    return text
