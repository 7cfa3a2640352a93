"""The types every layer speaks, at the bottom of the package.

``env`` (:class:`Observation`, :class:`StepResult`, :class:`EnvSpec`, the
:class:`MultiAgentEnv` protocol and its autoreset semantics), ``graph``
(:class:`EntityGraph`), ``batched`` (their field-generic map/stack/where), ``knn`` (the
graph's k-nearest-neighbour construction), ``tracking`` (:class:`EpisodeTracker`, the
envs' episode returns and lengths), ``errors`` (:class:`InvalidOption`) and
``smacv2_actions`` (the SMACv2 mixed action layout).  Nothing here imports another part
of eqmarl.
"""

from eqmarl.core.env import EnvSpec, MultiAgentEnv, Observation, StepResult
from eqmarl.core.graph import EntityGraph

__all__ = ["EntityGraph", "EnvSpec", "MultiAgentEnv", "Observation", "StepResult"]
