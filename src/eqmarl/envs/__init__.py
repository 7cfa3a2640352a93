"""Environments: batched multi-agent tasks behind one interface (see ``base.py``)."""

from eqmarl.envs.base import EnvSpec, MultiAgentEnv, Observation, StepResult
from eqmarl.envs.graph import EntityGraph

__all__ = ["EnvSpec", "MultiAgentEnv", "Observation", "StepResult", "EntityGraph", "make_env"]


def make_env(cfg, num_envs: int, seed: int, device: str = "cpu") -> MultiAgentEnv:
    """Build the environment named by ``cfg.name`` (an :class:`eqmarl.config.EnvConfig`).

    Args:
        cfg: environment config.
        num_envs: number of parallel environments in the batch.
        seed: base seed; every env in the batch gets its own stream derived from it.
        device: torch device of the returned tensors.
    """
    from eqmarl.envs import registry

    return registry.make(cfg, num_envs=num_envs, seed=seed, device=device)
