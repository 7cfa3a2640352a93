"""The hydra launcher behind ``cluster=slurm``: hydra-submitit-launcher's, plus three things.

1. Every point of the sweep is composed and validated (:func:`eqmarl.config.to_config`)
   before the first ``sbatch``; one bad point stops the whole sweep with exit code 2 and
   a message naming the key, and nothing is submitted.  With ``container=none`` that
   includes what the jobs need from their node (they run this machine's Python:
   StarCraft II, packages; ``cluster.skip_local_checks``), with ``container=docker|
   apptainer|charliecloud`` the runtime and image, and every task's Python starts inside
   the image (submitit's ``python`` command, :mod:`eqmarl.launch.container`).
2. A run that raises makes its SLURM job fail (state FAILED, the traceback in the job's
   stderr), and the launcher waits for every job of the sweep and reports each in one
   block, failed or not (:mod:`eqmarl.launch.outcomes`), then exits 1 if one failed,
   instead of raising the first failure's error through hydra's frames.
3. On preemption/timeout submitit calls :meth:`SlurmLauncher.checkpoint`; it lets the
   running :class:`~eqmarl.launch.job.TrainJob` decide (it has already saved at an
   iteration boundary, and it enforces ``cluster.max_requeues``), then requeues this
   same sweep point, whose TrainJob resumes from the run directory's newest checkpoint.

The configuration lives in ``configs/cluster/slurm.yaml``; this module only passes it on.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurmLauncher

from eqmarl.core.log import get_logger

if TYPE_CHECKING:
    from eqmarl.config import Config

log = get_logger("launch")


@contextlib.contextmanager
def _submitit_executor(python: str | None, jobs: list[Any]) -> Iterator[None]:
    """While open, the executor hydra-submitit-launcher builds runs tasks with ``python`` (when
    given) and appends the jobs it submits to ``jobs``.

    hydra-submitit-launcher 1.2.0 has no ``python`` key and keeps its jobs to itself; it
    builds its executor as ``submitit.AutoExecutor(...)``, so that name is swapped here.
    """
    import submitit

    auto_executor = submitit.AutoExecutor

    class Executor(auto_executor):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if python is not None:
                kwargs["slurm_python"] = python
            super().__init__(*args, **kwargs)

        def map_array(self, *args: Any, **kwargs: Any) -> Any:
            submitted = super().map_array(*args, **kwargs)
            jobs.extend(submitted)
            return submitted

    submitit.AutoExecutor = Executor  # type: ignore[misc]
    try:
        yield
    finally:
        submitit.AutoExecutor = auto_executor  # type: ignore[misc]


class SlurmLauncher(_SubmititSlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher with up-front validation and TrainJob checkpoints."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from submitit.core.utils import UncompletedJobError

        cfgs = self.validate_sweep(job_overrides, initial_job_idx)
        python = self.container_python(cfgs, len(job_overrides))
        jobs: list[Any] = []
        returns: Sequence[JobReturn] | None = None
        with _submitit_executor(python, jobs):
            try:
                returns = super().launch(job_overrides, initial_job_idx)
            except UncompletedJobError as e:  # FailedJobError too: the first failed job, in sweep order
                if not jobs:  # sbatch refused the array (its message is printed above): bad input
                    sbatch = "; ".join(ln.removeprefix("sbatch: error: ") for ln in str(e).splitlines() if ln.strip())
                    print(
                        f"eqmarl: sbatch refused the jobs: {sbatch}\n"
                        f"eqmarl: nothing was submitted ({len(job_overrides)} job(s) in this sweep)",
                        file=sys.stderr,
                    )
                    sys.exit(2)
                if len(jobs) != len(job_overrides):
                    raise
                if not all(job.done() for job in jobs):
                    log.info("a job of this sweep failed; waiting for the others, then a report of each")
        self.report_jobs(jobs, job_overrides, initial_job_idx, returns)
        assert returns is not None  # report_jobs exits 1 when a job failed
        return returns

    def report_jobs(
        self,
        jobs: Sequence[Any],
        job_overrides: Sequence[Sequence[str]],
        initial_job_idx: int,
        returns: Sequence[JobReturn] | None,
    ) -> None:
        """Wait for every job, report each in one block; exit 1 (no traceback) if one failed.

        Args:
            jobs: the sweep's submitit jobs, in sweep order.
            job_overrides: each point's overrides.
            initial_job_idx: the number of the first point.
            returns: the jobs' hydra results when all of them came back (None: one failed).
        """
        from eqmarl.launch.outcomes import job_outcome, report, sweep_points

        points = sweep_points(job_overrides, initial_job_idx)
        outcomes = [
            job_outcome(job, point, None if returns is None else returns[i])
            for i, (job, point) in enumerate(zip(jobs, points))
        ]
        if report(outcomes):
            sys.stderr.flush()
            sys.exit(1)

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """Run one sweep point in its SLURM job (hydra's ``run_job``); a run that raised raises
        here, so its job fails with the traceback in its stderr and submitit's result file."""
        ret = super().__call__(*args, **kwargs)
        if ret.status == JobStatus.FAILED:
            _ = ret.return_value  # raises the run's exception, traceback included
        return ret

    def container_python(self, cfgs: Sequence[Config], n_jobs: int) -> str | None:
        """The in-image ``python`` command for the sweep's jobs (None: container=none); exits 2 when unusable."""
        from eqmarl.config import ConfigError
        from eqmarl.launch.container import check_container, prepare_mount_points, python_command

        assert self.config is not None
        first = cfgs[0].container
        if first.runtime == "none" and all(c.container.runtime == "none" for c in cfgs):
            return None
        # the job's directories, bound at the same paths: sweep/run dirs, submitit folder, project
        folder = str(self.params["submitit_folder"]).split("%", 1)[0]
        binds = [
            str(self.config.hydra.sweep.dir),
            folder if folder.endswith("/") else str(Path(folder).parent),
            str(Path.cwd()),
            str(Path(sys.argv[0]).resolve().parent),
        ]
        try:
            for c in cfgs[1:]:
                if c.container != first:
                    raise ConfigError(
                        "container",
                        c.container.image,
                        f"the same container for every point of a sweep (first point: {first.runtime} {first.image})",
                    )
            check_container(first)
            prepare_mount_points(first, binds)
        except ConfigError as e:
            print(f"eqmarl: {e}\neqmarl: nothing was submitted ({n_jobs} job(s) in this sweep)", file=sys.stderr)
            sys.exit(2)
        return python_command(first, binds, max(c.cluster.gpus_per_node for c in cfgs))

    def validate_sweep(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int = 0) -> list[Config]:
        """Compose and validate every sweep point; on the first bad one print why and exit 2."""
        from eqmarl.launch.checks import validate_sweep

        assert self.hydra_context is not None and self.config is not None
        return validate_sweep(self.hydra_context, self.config, job_overrides, initial_job_idx, "submitted")

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue this sweep point after the running TrainJob has saved (None: no requeue)."""
        from eqmarl.launch.job import TrainJob

        job = TrainJob.active()
        if job is not None and job.checkpoint() is None:
            return None
        return super().checkpoint(*args, **kwargs)
