"""The types every layer speaks, at the bottom of the package.

``env`` (:class:`Observation`, :class:`StepResult`, :class:`EnvSpec`, the
:class:`MultiAgentEnv` protocol and its autoreset semantics), ``graph``
(:class:`EntityGraph`), ``knn`` (its k-nearest-neighbour construction),
``smacv2_actions`` (the SMACv2 mixed action layout) and ``episodes`` (one evaluation
episode in each env of a batch).  Nothing here imports another part
of eqmarl.
"""

from eqmarl.core.env import EnvSpec, MultiAgentEnv, Observation, StepResult
from eqmarl.core.graph import EntityGraph

__all__ = ["EntityGraph", "EnvSpec", "MultiAgentEnv", "Observation", "StepResult"]
