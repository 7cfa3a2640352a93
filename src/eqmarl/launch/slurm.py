"""The hydra launcher behind ``cluster=slurm``: hydra-submitit-launcher's, plus two things.

1. Every point of the sweep is composed and validated (:func:`eqmarl.config.to_config`)
   before the first ``sbatch``; one bad point stops the whole sweep with exit code 2 and
   a message naming the key, and nothing is submitted.  With ``container=docker|apptainer|
   charliecloud`` the runtime and image are checked too, and every task's Python starts
   inside the image (submitit's ``python`` command, :mod:`eqmarl.launch.container`).
2. On preemption/timeout submitit calls :meth:`SlurmLauncher.checkpoint`; it lets the
   running :class:`~eqmarl.launch.job.TrainJob` decide (it has already saved at an
   iteration boundary, and it enforces ``cluster.max_requeues``), then requeues this
   same sweep point, whose TrainJob resumes from the run directory's newest checkpoint.

The configuration lives in ``configs/cluster/slurm.yaml``; this module only passes it on.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurmLauncher

if TYPE_CHECKING:
    from eqmarl.config import Config


class SlurmLauncher(_SubmititSlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher with up-front validation and TrainJob checkpoints."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        cfgs = self.validate_sweep(job_overrides, initial_job_idx)
        python = self.container_python(cfgs, len(job_overrides))
        if python is None:
            return super().launch(job_overrides, initial_job_idx)
        import submitit

        # hydra-submitit-launcher 1.2.0 has no `python` key: hand it to submitit's executor directly
        auto_executor = submitit.AutoExecutor
        submitit.AutoExecutor = functools.partial(auto_executor, slurm_python=python)  # type: ignore[misc,assignment]
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor = auto_executor  # type: ignore[misc]

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
