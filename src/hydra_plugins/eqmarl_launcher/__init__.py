"""Hydra plugin namespace entry for eqmarl's SLURM launcher (hydra only loads plugins from ``hydra_plugins``).

The launcher itself lives in :mod:`eqmarl.launch.slurm`; ``configs/cluster/slurm.yaml``
selects it with ``_target_: hydra_plugins.eqmarl_launcher.EqmarlSlurmLauncher``.
"""

try:  # the cluster extra (hydra-submitit-launcher) is optional: without it, no launcher
    from eqmarl.launch.slurm import SlurmLauncher as _SlurmLauncher
except ImportError:  # pragma: no cover
    _SlurmLauncher = None  # type: ignore[assignment,misc]

if _SlurmLauncher is not None:

    class EqmarlSlurmLauncher(_SlurmLauncher):  # type: ignore[valid-type,misc]
        """eqmarl's SLURM launcher (see :class:`eqmarl.launch.slurm.SlurmLauncher`)."""
