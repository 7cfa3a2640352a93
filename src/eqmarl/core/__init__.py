"""The types every layer speaks, at the bottom of the package.

``env`` (:class:`Observation`, :class:`StepResult`, :class:`EnvSpec`, the
:class:`MultiAgentEnv` protocol and its autoreset semantics), ``graph``
(:class:`EntityGraph`), ``knn`` (its k-nearest-neighbour construction) and
``smacv2_actions`` (the SMACv2 mixed action layout).  Nothing here imports another part
of eqmarl.
"""

from eqmarl.core.env import EnvSpec, MultiAgentEnv, Observation, StepResult
from eqmarl.core.graph import EntityGraph

__all__ = ["EntityGraph", "EnvSpec", "MultiAgentEnv", "Observation", "StepResult"]
