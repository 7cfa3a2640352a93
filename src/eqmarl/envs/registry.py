"""Build a batched env from its config (``eqmarl.envs.make_env`` calls :func:`make`)."""

from __future__ import annotations

from eqmarl.config import ConfigError, EnvConfig, HanabiEnvConfig, LeverEnvConfig, MpeEnvConfig, Smacv2EnvConfig
from eqmarl.envs.base import MultiAgentEnv

ENV_NAMES = ("mpe", "lever", "hanabi", "smacv2")


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


def _make_lever(cfg: LeverEnvConfig, num_envs: int, seed: int, device: str) -> MultiAgentEnv:
    from eqmarl.envs.lever import LeverGame

    return LeverGame(num_envs, n_agents=cfg.n_agents, payoffs=list(cfg.payoffs), seed=seed, device=device)


def _make_hanabi(cfg: HanabiEnvConfig, num_envs: int, seed: int, device: str) -> MultiAgentEnv:
    from eqmarl.envs.hanabi import HanabiEnv
    from eqmarl.envs.hanabi_fast import FastHanabiEnv

    if cfg.backend not in ("engine", "fast"):
        raise ConfigError("env.backend", cfg.backend, "engine, fast")
    cls = FastHanabiEnv if cfg.backend == "fast" else HanabiEnv
    try:
        return cls(
            num_envs,
            players=cfg.players,
            preset=cfg.preset,
            colors=cfg.colors,
            ranks=cfg.ranks,
            hand_size=cfg.hand_size,
            max_information_tokens=cfg.max_information_tokens,
            max_life_tokens=cfg.max_life_tokens,
            observation_type=cfg.observation_type,
            random_start_player=cfg.random_start_player,
            episode_limit=cfg.episode_limit or None,
            seed=seed,
            device=device,
        )
    except ValueError as e:  # "env.<key>=<value>; allowed: ..."
        key, _, rest = str(e).partition("=")
        value, _, allowed = rest.partition("; allowed: ")
        raise ConfigError(key, value, allowed or str(e)) from None


def _make_smacv2(cfg: Smacv2EnvConfig, num_envs: int, seed: int, device: str) -> MultiAgentEnv:
    from eqmarl.envs.smacv2 import make_smacv2

    try:
        return make_smacv2(
            cfg.backend, num_envs, seed, device, race=cfg.race, n_units=cfg.n_units, n_enemies=cfg.n_enemies,
            start_positions=cfg.start_positions, p=cfg.p, surround_sides=cfg.surround_sides,
            movement=cfg.movement, episode_limit=cfg.episode_limit,
        )
    except ValueError as e:  # "env.<key>=<value>; allowed: ..."
        key, _, rest = str(e).partition("=")
        value, _, allowed = rest.partition("; allowed: ")
        raise ConfigError(key, value, allowed or str(e)) from None


def make(cfg: EnvConfig, num_envs: int, seed: int, device: str = "cpu") -> MultiAgentEnv:
    """Build the env named by ``cfg.name``.

    Args:
        cfg: env config (``MpeEnvConfig``, ``LeverEnvConfig`` or ``HanabiEnvConfig``).
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
    if name == "lever" and isinstance(cfg, LeverEnvConfig):
        return _make_lever(cfg, num_envs, seed, device)
    if name == "hanabi" and isinstance(cfg, HanabiEnvConfig):
        return _make_hanabi(cfg, num_envs, seed, device)
    if name == "smacv2" and isinstance(cfg, Smacv2EnvConfig):
        return _make_smacv2(cfg, num_envs, seed, device)
    raise ConfigError("env.name", name, ", ".join(ENV_NAMES))
