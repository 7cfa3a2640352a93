"""Build a batched env from its config: the one place that knows env names and schemas.

It sits above the envs and the config (which it reads) and below the trainer and the
evaluation tools (which call :func:`make_env`).  A new env registers here: a schema in
:mod:`eqmarl.config` (``ENV_SCHEMAS``) and a builder in :data:`BUILDERS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from eqmarl.config import ConfigError, EnvConfig, HanabiEnvConfig, LeverEnvConfig, MpeEnvConfig, Smacv2EnvConfig
from eqmarl.core.env import MultiAgentEnv


def _env_kwargs(cfg: EnvConfig, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The config's fields as constructor arguments (fields and arguments share names)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ("name", *skip)}


def _make_mpe(cfg: EnvConfig, num_envs: int, seed: int, device: str) -> MultiAgentEnv:
    from eqmarl.envs.mpe import BACKENDS, PREY_POLICIES, SCENARIOS
    from eqmarl.envs.mpe_mpe2 import Mpe2MPE
    from eqmarl.envs.mpe_vmas import VmasMPE

    assert isinstance(cfg, MpeEnvConfig)
    for key, value, allowed in (
        ("scenario", cfg.scenario, SCENARIOS),
        ("backend", cfg.backend, BACKENDS),
        ("prey_policy", cfg.prey_policy, PREY_POLICIES),
    ):
        if value not in allowed:
            raise ConfigError(f"env.{key}", value, ", ".join(allowed))
    kwargs = _env_kwargs(cfg, skip=("backend", "workers"))
    if cfg.backend == "vmas":
        return VmasMPE(num_envs=num_envs, seed=seed, device=device, **kwargs)
    return Mpe2MPE(num_envs=num_envs, seed=seed, device=device, workers=cfg.workers, **kwargs)


def _make_lever(cfg: EnvConfig, num_envs: int, seed: int, device: str) -> MultiAgentEnv:
    from eqmarl.envs.lever import LeverGame

    assert isinstance(cfg, LeverEnvConfig)
    return LeverGame(num_envs, n_agents=cfg.n_agents, payoffs=list(cfg.payoffs), seed=seed, device=device)


def _make_hanabi(cfg: EnvConfig, num_envs: int, seed: int, device: str) -> MultiAgentEnv:
    from eqmarl.envs.hanabi import HanabiEnv, check_backend
    from eqmarl.envs.hanabi_fast import FastHanabiEnv

    assert isinstance(cfg, HanabiEnvConfig)
    check_backend(cfg.backend, cfg.random_start_player)
    cls = FastHanabiEnv if cfg.backend == "fast" else HanabiEnv
    kwargs = _env_kwargs(cfg, skip=("backend", "episode_limit"))
    return cls(num_envs, episode_limit=cfg.episode_limit or None, seed=seed, device=device, **kwargs)


def _make_smacv2(cfg: EnvConfig, num_envs: int, seed: int, device: str) -> MultiAgentEnv:
    from eqmarl.envs.smacv2 import make_smacv2

    assert isinstance(cfg, Smacv2EnvConfig)
    return make_smacv2(num_envs=num_envs, seed=seed, device=device, **_env_kwargs(cfg))


BUILDERS: dict[str, tuple[type, Callable[[EnvConfig, int, int, str], MultiAgentEnv]]] = {
    "mpe": (MpeEnvConfig, _make_mpe),
    "lever": (LeverEnvConfig, _make_lever),
    "hanabi": (HanabiEnvConfig, _make_hanabi),
    "smacv2": (Smacv2EnvConfig, _make_smacv2),
}


def make_env(cfg: EnvConfig, num_envs: int, seed: int, device: str = "cpu") -> MultiAgentEnv:
    """Build the env named by ``cfg.name``.

    Args:
        cfg: env config (an :class:`~eqmarl.config.EnvConfig` subclass named in ``BUILDERS``).
        num_envs: parallel envs in the batch.
        seed: base seed of the batch; every env gets its own stream derived from it.
        device: torch device of the returned tensors.

    Raises:
        ConfigError: a bad option: an unknown env name, or an option the env's own checks
            refuse (they raise :class:`~eqmarl.core.errors.InvalidOption`, the same class),
            naming the ``env.`` key and the allowed values.
    """
    name = getattr(cfg, "name", None)
    if name not in BUILDERS or not isinstance(cfg, BUILDERS[name][0]):
        raise ConfigError("env.name", name, ", ".join(BUILDERS))
    return BUILDERS[name][1](cfg, num_envs, seed, device)
