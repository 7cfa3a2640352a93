"""Policy = actor (encoder + action head) and critic (encoder + value head).

The encoders come from :mod:`eqmarl.models.registry`, which builds a :class:`Policy` for
``model.name`` (:func:`~eqmarl.models.registry.make_policy`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from eqmarl.core.env import EnvSpec, Observation
from eqmarl.models.heads import ActionHead, CategoricalHead, Encoder, GaussianHead, ValueHead


class ActOutput(NamedTuple):
    action: Tensor  # [E, A, D] float or [E, A] long
    logprob: Tensor  # [E, A]
    value: Tensor  # [E, A] (normalized scale if value normalization is on)


def _env_slice(t: Tensor, start: int, size: int) -> Tensor:
    return t[start : start + size]


def over_env_chunks(fn: Callable[[Observation], Any], obs: Observation, chunk: int) -> Any:
    """``fn(obs)`` computed over slices of at most ``chunk`` envs (the leading dim) and
    concatenated: the same result with the memory of one slice (``chunk <= 0``: all at once).
    ``fn`` returns a tensor or a tuple of tensors, each with the envs as its leading dim."""
    n = obs.obs.shape[0]
    if chunk <= 0 or n <= chunk:
        return fn(obs)
    parts = [fn(obs.map(functools.partial(_env_slice, start=s, size=chunk))) for s in range(0, n, chunk)]
    if isinstance(parts[0], tuple):
        return type(parts[0])(*(torch.cat(x) for x in zip(*parts)))
    return torch.cat(parts)


class ActorCritic:
    """``act`` and ``evaluate`` from a module's ``distribution(obs)`` and ``value(obs)``
    (shared by :class:`Policy` and wrappers such as :class:`~eqmarl.wrappers.eqc.EQC`)."""

    def distribution(self, obs: Observation) -> Any:
        """The action distribution (``sample``, ``mode``, ``log_prob``, ``entropy``)."""
        raise NotImplementedError

    def value(self, obs: Observation) -> Tensor:
        """``[E, A]`` values."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: Observation, deterministic: bool = False, chunk: int = 0) -> ActOutput:
        """Sample (or take the mode of) the policy; log-prob and value of that action
        (``chunk`` > 0: computed ``chunk`` envs at a time, see :func:`over_env_chunks`)."""
        if 0 < chunk < obs.obs.shape[0]:
            return over_env_chunks(lambda o: self.act(o, deterministic), obs, chunk)
        dist = self.distribution(obs)
        action = dist.mode() if deterministic else dist.sample()
        return ActOutput(action, dist.log_prob(action), self.value(obs))

    def evaluate(self, obs: Observation, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log-prob ``[E, A]``, entropy ``[E, A]`` and value ``[E, A]`` of ``action``."""
        dist = self.distribution(obs)
        return dist.log_prob(action), dist.entropy(), self.value(obs)

    def forward(self, obs: Observation, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`evaluate` (what a wrapping engine, e.g. DeepSpeed's, calls)."""
        return self.evaluate(obs, action)


class Policy(ActorCritic, nn.Module):
    """Actor-critic over a batch of envs; one set of parameters shared by all agents.

    Args:
        actor_encoder / critic_encoder: ``Observation -> ActorFeatures`` modules.
        spec: env spec (action type and size).
        init_log_std: initial log-std of continuous actions.
        mixed_entropy: ``model.mixed_entropy`` (mixed actions only: the entropy bonus's
            gradient on the choice, see :mod:`eqmarl.models.smacv2_heads`).
    """

    def __init__(
        self,
        actor_encoder: Encoder,
        critic_encoder: Encoder,
        spec: EnvSpec,
        init_log_std: float = 0.0,
        mixed_entropy: str = "per_part",
    ) -> None:
        super().__init__()
        self.actor_encoder = actor_encoder
        self.critic_encoder = critic_encoder
        self.spec = spec
        if spec.action_type == "continuous":
            self.head: nn.Module = GaussianHead(
                actor_encoder.out_dim,
                spec.action_dim,
                equivariant=actor_encoder.equivariant,
                init_log_std=init_log_std,
            )
        elif spec.action_type == "mixed":  # SMACv2: choice, move, target
            from eqmarl.models.smacv2_heads import MixedActionHead

            self.head = MixedActionHead(
                actor_encoder.out_dim,
                spec.n_targets,
                equivariant=bool(getattr(actor_encoder, "equivariant", False)),
                init_log_std=init_log_std,
                node_targets=bool(getattr(actor_encoder, "uses_graph", True)),
                mixed_entropy=mixed_entropy,
            )
        else:
            self.head = CategoricalHead(actor_encoder.out_dim, spec.action_dim)
        self.value_head = ValueHead(critic_encoder.out_dim)

    def distribution(self, obs: Observation):
        return self.head(self.actor_encoder(obs), obs.action_mask)

    def zero3_external_parameters(self) -> list[nn.Parameter]:
        """The action head's parameters that its distribution reads after the head
        returned (a log-std): read in this module's forward and in its backward, outside
        the head's (:class:`~eqmarl.models.heads.ExternalParameters`)."""
        head = self.head
        return head.distribution_parameters() if isinstance(head, ActionHead) else []

    @property
    def uses_graph(self) -> bool:
        """Whether any encoder reads ``Observation.graph`` (else rollouts may drop it)."""
        return any(getattr(e, "uses_graph", True) for e in (self.actor_encoder, self.critic_encoder))

    def value(self, obs: Observation) -> Tensor:
        """``[E, A]`` values (a centralized critic's ``[E, 1]`` is broadcast over agents)."""
        v = self.value_head(self.critic_encoder(obs))
        n_agents = obs.obs.shape[-2]
        return v.expand(*v.shape[:-1], n_agents) if v.shape[-1] == 1 else v
