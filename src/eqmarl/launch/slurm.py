"""The hydra launcher behind ``cluster=slurm``: hydra-submitit-launcher's, plus two things.

1. Every point of the sweep is composed and validated (:func:`eqmarl.config.to_config`)
   before the first ``sbatch``; one bad point stops the whole sweep with exit code 2 and
   a message naming the key, and nothing is submitted.
2. On preemption/timeout submitit calls :meth:`SlurmLauncher.checkpoint`; it lets the
   running :class:`~eqmarl.launch.job.TrainJob` decide (it has already saved at an
   iteration boundary, and it enforces ``cluster.max_requeues``), then requeues this
   same sweep point, whose TrainJob resumes from the run directory's newest checkpoint.

The configuration lives in ``configs/cluster/slurm.yaml``; this module only passes it on.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurmLauncher
from omegaconf import open_dict, read_write


class SlurmLauncher(_SubmititSlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher with up-front validation and TrainJob checkpoints."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        self.validate_sweep(job_overrides, initial_job_idx)
        return super().launch(job_overrides, initial_job_idx)

    def validate_sweep(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int = 0) -> None:
        """Compose and validate every sweep point; on the first bad one print why and exit 2."""
        from eqmarl.config import to_config

        assert self.hydra_context is not None and self.config is not None
        for i, overrides in enumerate(job_overrides):
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                task_cfg = copy.deepcopy(cfg)
                with read_write(task_cfg), open_dict(task_cfg):
                    del task_cfg["hydra"]
                to_config(task_cfg)  # also rejects keys the schema does not have
            except Exception as e:  # ConfigError, or hydra/omegaconf composition and type errors
                point = " ".join(overrides) or "(no overrides)"
                print(
                    f"eqmarl: sweep point #{initial_job_idx + i} [{point}]: {e}\n"
                    f"eqmarl: nothing was submitted ({len(job_overrides)} job(s) in this sweep)",
                    file=sys.stderr,
                )
                sys.exit(2)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue this sweep point after the running TrainJob has saved (None: no requeue)."""
        from eqmarl.launch.job import TrainJob

        job = TrainJob.active()
        if job is not None and job.checkpoint() is None:
            return None
        return super().checkpoint(*args, **kwargs)
