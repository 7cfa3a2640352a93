"""Build a run's env and agent from its config: the one place that knows env names and
schemas (:func:`make_env`) and how ``model.*`` becomes the module that acts (:func:`make_agent`).

It sits above the envs, models, wrappers and the config (which it reads) and below the
trainer and the evaluation tools (which call it), so training, ``eqmarl eval``,
``eqmarl render`` and ``eqmarl xplay`` act with the same module.  A new env registers
here: a schema in :mod:`eqmarl.config` (``ENV_SCHEMAS``) and a builder in :data:`BUILDERS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from eqmarl.config import (
    ConfigError,
    EnvConfig,
    HanabiEnvConfig,
    LeverEnvConfig,
    ModelConfig,
    MpeEnvConfig,
    Smacv2EnvConfig,
)
from eqmarl.core.env import MultiAgentEnv, Observation
from eqmarl.models.heads import CategoricalHead
from eqmarl.models.policy import Policy
from eqmarl.models.registry import make_policy
from eqmarl.symmetry.actions import GroupAction, orbit_uniform_bias
from eqmarl.wrappers.eqc import EQC


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
    kwargs = _env_kwargs(cfg, skip=("backend", "workers", "worker_timeout_s"))
    if cfg.backend == "vmas":
        return VmasMPE(num_envs=num_envs, seed=seed, device=device, **kwargs)
    return Mpe2MPE(
        num_envs=num_envs,
        seed=seed,
        device=device,
        workers=cfg.workers,
        worker_timeout_s=cfg.worker_timeout_s,
        **kwargs,
    )


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


def env_symmetry(env: Any, group: str) -> GroupAction:
    """The env's symmetry group action named ``group`` (``model.eqc``, ``model.orbit_init``,
    ``algo.other_play``).

    Args:
        env: a built env; envs with a finite symmetry expose ``symmetry(group)``.
        group: the group's name (e.g. ``C9``).

    Raises:
        ValueError: the env exposes no symmetry group.
    """
    if not hasattr(env, "symmetry"):
        raise ValueError(
            f"this env ({type(env).__name__}) exposes no symmetry group; model.eqc and algo.other_play need one"
        )
    return env.symmetry(group)


@dataclasses.dataclass
class Agent:
    """A run's policy and the module that acts with it.

    Attributes:
        policy: the plain policy; its ``state_dict`` is what checkpoints hold.
        module: the module that acts and is trained: ``policy`` itself, or ``policy``
            inside the EQC symmetrizer (``model.eqc``, then any test-time EQC).  Its
            ``state_dict`` is the plain policy's, so a checkpoint loads into either.
    """

    policy: Policy
    module: Policy | EQC

    def actions(self, obs: Observation, deterministic: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """The module's actions for ``obs``: the most likely ones, or samples.

        Args:
            obs: an observation of the batch.
            deterministic: the distribution's mode instead of a sample.
            generator: the random stream of samples (default: torch's global one).
        """
        dist = self.module.distribution(obs)
        return dist.mode() if deterministic else dist.sample(generator=generator)


def make_agent(
    model_cfg: ModelConfig,
    env: MultiAgentEnv,
    centralized_critic: bool,
    device: torch.device | str = "cpu",
    test_time_eqc: str | None = None,
) -> Agent:
    """The policy of ``model.*`` for ``env``, initialized and wrapped as training uses it.

    In this order: :func:`~eqmarl.models.registry.make_policy` (draws the initial
    parameters from torch's global stream), ``model.orbit_init`` (the categorical head's
    bias made uniform over the group's orbits), ``model.eqc`` (the EQC symmetrizer,
    averaging as ``model.eqc_average`` says) and ``test_time_eqc`` (one more EQC on top,
    for a policy evaluated with a symmetry it was not trained with).

    Args:
        model_cfg: ``model.*``.
        env: the env it acts in (its spec and, for the group options, its symmetry).
        centralized_critic: MAPPO's critic on the global state (``algo.name=mappo``).
        device: where the parameters live.
        test_time_eqc: a group name to symmetrize over at test time, or None.

    Raises:
        ValueError: ``model.orbit_init`` without discrete actions; a group option on an
            env without a symmetry group.
    """
    policy = make_policy(model_cfg, env.spec, centralized_critic=centralized_critic).to(device)
    if model_cfg.orbit_init is not None:
        head = policy.head
        if not isinstance(head, CategoricalHead):
            raise ValueError(f"model.orbit_init={model_cfg.orbit_init}: needs an env with discrete actions")
        with torch.no_grad():
            head.logits.bias.add_(orbit_uniform_bias(env_symmetry(env, model_cfg.orbit_init)).to(device))
    module: Policy | EQC = policy
    if model_cfg.eqc is not None:  # train through the symmetrizer; checkpoints hold the plain policy
        module = EQC(policy, env_symmetry(env, model_cfg.eqc), model_cfg.eqc_average).to(device)
    if test_time_eqc is not None:
        module = EQC(module, env_symmetry(env, test_time_eqc), model_cfg.eqc_average).to(device)
    return Agent(policy=policy, module=module)
