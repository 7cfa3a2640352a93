"""The types every layer speaks, at the bottom of the package.

``env`` (:class:`Observation`, :class:`StepResult`, :class:`EnvSpec`, the
:class:`MultiAgentEnv` protocol and its autoreset semantics), ``graph``
(:class:`EntityGraph`), ``batched`` (their field-generic map/stack/where), ``knn`` (the
graph's k-nearest-neighbour construction), ``tracking`` (:class:`EpisodeTracker`, the
envs' episode returns and lengths), ``episodes`` (:func:`run_episodes`: one evaluation
episode in each env of a batch, :class:`EpisodeStats`), ``footprint`` (:class:`EnvFootprint`,
an env config's memory model), ``errors`` (:class:`InvalidOption`), ``log`` (the ``eqmarl``
logger), ``files`` (atomic output files with ordinary permissions), ``stop`` (signals from
``launch.py``'s first line) and ``smacv2_actions`` (the SMACv2 mixed action layout).
Nothing here imports another part
of eqmarl.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eqmarl.core.env import EnvSpec, MultiAgentEnv, Observation, StepResult
    from eqmarl.core.graph import EntityGraph

__all__ = ["EntityGraph", "EnvSpec", "MultiAgentEnv", "Observation", "StepResult"]

# name -> the submodule that defines it, imported on first use: importing a light
# submodule (eqmarl.core.errors, which the config imports before a run needs torch) must
# not import torch through this package
_SUBMODULE_OF = {name: "graph" if name == "EntityGraph" else "env" for name in __all__}


def __getattr__(name: str) -> Any:
    if name not in _SUBMODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"eqmarl.core.{_SUBMODULE_OF[name]}"), name)
