"""Build a batched env from its config (``eqmarl.envs.make_env`` calls :func:`make`)."""

from __future__ import annotations

from eqmarl.config import ConfigError, EnvConfig, MpeEnvConfig
from eqmarl.envs.base import MultiAgentEnv

ENV_NAMES = ("mpe",)


def _make_mpe(cfg: MpeEnvConfig, num_envs: int, seed: int, device: str) -> MultiAgentEnv:
    from eqmarl.envs.mpe import BACKENDS, PREY_POLICIES, SCENARIOS, Mpe2MPE, VmasMPE

    if cfg.scenario not in SCENARIOS:
        raise ConfigError("env.scenario", cfg.scenario, ", ".join(SCENARIOS))
    if cfg.backend not in BACKENDS:
        raise ConfigError("env.backend", cfg.backend, ", ".join(BACKENDS))
    if cfg.prey_policy not in PREY_POLICIES:
        raise ConfigError("env.prey_policy", cfg.prey_policy, ", ".join(PREY_POLICIES))
    kwargs = dict(
        scenario=cfg.scenario,
        num_envs=num_envs,
        n_agents=cfg.n_agents,
        n_landmarks=cfg.n_landmarks,
        n_prey=cfg.n_prey,
        continuous_actions=cfg.continuous_actions,
        episode_limit=cfg.episode_limit,
        prey_policy=cfg.prey_policy,
        seed=seed,
        device=device,
    )
    if cfg.backend == "vmas":
        return VmasMPE(**kwargs)
    return Mpe2MPE(workers=cfg.workers, **kwargs)


def make(cfg: EnvConfig, num_envs: int, seed: int, device: str = "cpu") -> MultiAgentEnv:
    """Build the env named by ``cfg.name``.

    Args:
        cfg: env config (``MpeEnvConfig`` for ``name="mpe"``).
        num_envs: parallel envs in the batch.
        seed: base seed of the batch.
        device: torch device of the returned tensors.

    Raises:
        ConfigError: unknown env name, scenario, backend or prey policy.
    """
    name = getattr(cfg, "name", None)
    if name == "mpe":
        if not isinstance(cfg, MpeEnvConfig):
            raise ConfigError("env.name", name, "mpe with an MpeEnvConfig")
        return _make_mpe(cfg, num_envs, seed, device)
    raise ConfigError("env.name", name, ", ".join(ENV_NAMES))
