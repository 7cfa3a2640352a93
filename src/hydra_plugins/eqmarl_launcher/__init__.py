"""Hydra plugin namespace entry for eqmarl's launchers (hydra only loads plugins from ``hydra_plugins``).

``configs/cluster/local.yaml`` selects :class:`EqmarlLocalLauncher` (hydra's basic
launcher, which first checks every point of a ``-m`` sweep); ``configs/cluster/slurm.yaml``
selects ``EqmarlSlurmLauncher``, whose logic lives in :mod:`eqmarl.launch.slurm`.
"""

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn

try:  # the cluster extra (hydra-submitit-launcher) is optional: without it, no launcher
    from eqmarl.launch.slurm import SlurmLauncher as _SlurmLauncher
except ImportError:  # pragma: no cover
    _SlurmLauncher = None  # type: ignore[assignment,misc]


class EqmarlLocalLauncher(BasicLauncher):
    """hydra's basic launcher (the sweep's jobs one after another in this process), after
    composing and validating every point: a bad value in job 1 stops the sweep with exit
    code 2 before job 0 trains (:func:`eqmarl.launch.checks.validate_sweep`)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from eqmarl.launch.checks import validate_sweep

        assert self.hydra_context is not None and self.config is not None
        validate_sweep(self.hydra_context, self.config, job_overrides, initial_job_idx, "run")
        return super().launch(job_overrides, initial_job_idx)


if _SlurmLauncher is not None:

    class EqmarlSlurmLauncher(_SlurmLauncher):  # type: ignore[valid-type,misc]
        """eqmarl's SLURM launcher (see :class:`eqmarl.launch.slurm.SlurmLauncher`)."""
