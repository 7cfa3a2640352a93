"""The batched multi-agent environment interface.

Every backend presents ``num_envs`` parallel environments with ``n_agents`` agents as
torch tensors with leading shape ``[E, A]`` (or ``[E]`` for per-env quantities).

Autoreset: when an env's episode ends (``terminated`` or ``truncated``) inside
:meth:`MultiAgentEnv.step`, the env is reset at once; ``StepResult.obs`` is the first
observation of the new episode and ``StepResult.final_obs`` holds the last observation
of the finished one (needed to bootstrap the value of a truncated episode).  For envs
that did not finish, ``final_obs`` equals ``obs``.

Seeding: ``reset(seed=s)`` makes the whole batch reproducible; env ``i`` draws from a
stream derived from ``(s, i)`` where the backend allows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from eqmarl.core.batched import BATCHED, map_batched, stack_batched, where_batched
from eqmarl.core.graph import EntityGraph


@dataclass
class Observation:
    """What every policy sees.

    Every field is batched (see :mod:`eqmarl.core.batched`): :meth:`map`, :meth:`stack`
    and :meth:`where` go through all of them, the entity graph's included.

    Attributes:
        obs: ``[E, A, obs_dim]`` flat per-agent observation (agent's own view).
        state: ``[E, state_dim]`` global state for a centralized critic.
        graph: entity graph (graph policies), or None if the env provides none.
        action_mask: ``[E, A, n_actions]`` bool, True = allowed (discrete actions), or None.
        agent_mask: ``[E, A]`` bool, False for an agent that is not in the episode (padding
            of a team size drawn per episode, SMACv2's ``env.min_units``): its transitions
            carry no weight in the PPO loss. None: every agent takes part.
    """

    obs: Tensor = field(metadata=BATCHED)
    state: Tensor = field(metadata=BATCHED)
    graph: EntityGraph | None = field(default=None, metadata=BATCHED)
    action_mask: Tensor | None = field(default=None, metadata=BATCHED)
    agent_mask: Tensor | None = field(default=None, metadata=BATCHED)

    def map(self, fn: Callable[[Tensor], Tensor]) -> Observation:
        """Apply ``fn`` to every tensor (leading batch dims), keeping the structure."""
        return map_batched(self, fn)

    @staticmethod
    def stack(items: Sequence[Observation]) -> Observation:
        """Stack a list of observations along a new leading dim (time)."""
        return stack_batched(items)

    def where(self, cond: Tensor, other: Observation) -> Observation:
        """Per-env select: ``cond[E]`` True takes ``self``, False takes ``other``.

        An optional field (graph, action mask) missing from either side is None in the
        result; the graph's stored kNN lists are dropped (see :meth:`EntityGraph.where`).
        """
        return where_batched(cond, self, other)


@dataclass
class EnvSpec:
    """Static description of a batched env.

    Attributes:
        n_agents: agents per env (A).
        obs_dim: per-agent flat observation size.
        state_dim: global state size.
        action_type: ``"continuous"``, ``"discrete"`` or ``"mixed"`` (SMACv2: choice, move, target;
            see :mod:`eqmarl.envs.smax`).
        action_dim: continuous: action vector size; discrete: number of actions.
        action_low / action_high: bounds of continuous actions (actions are clipped).
        episode_limit: steps after which an episode is truncated.
        n_nodes: nodes of the entity graph (0 if the env provides no graph).
        node_feat_dim: invariant node feature size of the entity graph.
        move_directions: discrete actions that are moves, as ``[(action_index, dx, dy)]``;
            used by equivariant policies to map a 2-D vector onto a discrete move.
        n_targets: ``action_type='mixed'`` (SMACv2): attack targets per agent; the targets
            are the graph nodes ``n_agents .. n_agents + n_targets - 1``.
    """

    n_agents: int
    obs_dim: int
    state_dim: int
    action_type: str
    action_dim: int
    episode_limit: int
    action_low: float = -1.0
    action_high: float = 1.0
    n_nodes: int = 0
    node_feat_dim: int = 0
    move_directions: list[tuple[int, float, float]] = field(default_factory=list)
    n_targets: int = 0


@dataclass
class StepResult:
    """Result of one batched step (see module docstring for autoreset).

    Attributes:
        obs: next observation (first of a new episode where one ended).
        reward: ``[E, A]`` float reward of this step.
        terminated: ``[E]`` bool, the episode reached a terminal state.
        truncated: ``[E]`` bool, the episode was cut by the time limit.
        final_obs: last observation of the finished episode (== ``obs`` elsewhere).
        episode_return: ``[E]`` team return of episodes that ended at this step (nan elsewhere).
        episode_length: ``[E]`` length of episodes that ended at this step (0 elsewhere).
        info: backend-specific extra per-env metrics (e.g. ``win``, ``score``), ``[E]`` tensors.
    """

    obs: Observation
    reward: Tensor
    terminated: Tensor
    truncated: Tensor
    final_obs: Observation
    episode_return: Tensor
    episode_length: Tensor
    info: dict[str, Tensor] = field(default_factory=dict)

    @property
    def done(self) -> Tensor:
        return self.terminated | self.truncated


class MultiAgentEnv(Protocol):
    """Batched multi-agent env (see module docstring)."""

    spec: EnvSpec
    num_envs: int
    device: torch.device

    def reset(self, seed: int | None = None) -> Observation:
        """Reset every env; with ``seed``, reproducibly."""
        ...

    def step(self, actions: Tensor) -> StepResult:
        """Step all envs. ``actions``: ``[E, A, action_dim]`` float or ``[E, A]`` long."""
        ...

    def close(self) -> None: ...
