"""Environments: batched multi-agent tasks behind one interface (see ``base.py``).

:func:`eqmarl.build.make_env` builds one from its config.
"""

from eqmarl.envs.base import EnvSpec, MultiAgentEnv, Observation, StepResult
from eqmarl.envs.graph import EntityGraph

__all__ = ["EntityGraph", "EnvSpec", "MultiAgentEnv", "Observation", "StepResult"]
