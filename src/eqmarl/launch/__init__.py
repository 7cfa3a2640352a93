"""Job entry points (local, and SLURM via submitit).

``job.py`` holds :class:`~eqmarl.launch.job.TrainJob` (the submitit entry) and
``slurm.py`` the hydra launcher that submits it; both import submitit lazily, so a
local run needs neither submitit nor hydra-submitit-launcher.
"""

from __future__ import annotations

from typing import Any


def _first_set(*values: Any) -> Any:
    """The first argument that is not None (None if all are)."""
    return next((v for v in values if v is not None), None)


def register_resolvers() -> None:
    """Register eqmarl's OmegaConf resolvers (``${eqmarl.or:a,b}``: a unless it is null, else b)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("eqmarl.or"):
        OmegaConf.register_new_resolver("eqmarl.or", _first_set)


register_resolvers()
