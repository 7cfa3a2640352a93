"""MPE tasks (``simple_spread``, ``simple_tag``) behind the batched interface.

Two backends over the one :class:`MpeBackend` of this module (its arguments, counts,
node types, episode statistics and :class:`EnvSpec`):

* ``vmas`` (default, :class:`eqmarl.envs.mpe_vmas.VmasMPE`): VMAS, batched torch
  simulation on CPU or GPU.
* ``mpe2`` (:class:`eqmarl.envs.mpe_mpe2.Mpe2MPE`): the PettingZoo/mpe2 reference
  implementation, one env per worker slot, vectorized over worker processes (see
  :mod:`eqmarl.envs.vector`).

Learners: in ``simple_spread`` every agent; in ``simple_tag`` the adversaries
(predators) learn and the good agents (prey) follow a scripted policy
(``prey_policy``: ``flee`` from the nearest predator, ``random`` or ``still``).

Entity graph (both tasks): nodes are the learning agents first, then the other
entities (prey, landmarks/obstacles); invariant features one-hot the entity type;
equivariant vectors are world-frame positions and velocities (origin at the arena centre).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from eqmarl.core.env import EnvSpec, Observation, StepResult
from eqmarl.core.errors import InvalidOption
from eqmarl.core.footprint import EnvFootprint, MiB
from eqmarl.core.graph import EntityGraph
from eqmarl.core.tracking import EpisodeTracker

SCENARIOS = ("simple_spread", "simple_tag", "simple_spread_large")
BACKENDS = ("vmas", "mpe2")
PREY_POLICIES = ("flee", "random", "still")

# Discrete MPE actions: 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y (mpe2's order; VmasMPE maps
# them onto VMAS's 9-way action index).
MPE_MOVES = [(0, 0.0, 0.0), (1, -1.0, 0.0), (2, 1.0, 0.0), (3, 0.0, -1.0), (4, 0.0, 1.0)]


def scripted_prey_action(
    prey_pos: Tensor,
    pred_pos: Tensor,
    policy: str,
    continuous: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Action of scripted prey.

    Args:
        prey_pos: ``[E, P, 2]`` prey positions.
        pred_pos: ``[E, K, 2]`` predator positions.
        policy: ``flee`` (away from the nearest predator), ``random`` or ``still``.
        continuous: continuous ``[E, P, 2]`` force in [-1, 1], else discrete ``[E, P]``.
        generator: the random stream of ``random`` (None: torch's global one).

    Raises:
        InvalidOption: an unknown ``policy``.
    """
    n_envs, n_prey = prey_pos.shape[:2]
    if policy == "still":
        direction = torch.zeros(n_envs, n_prey, 2, device=prey_pos.device)
    elif policy == "random":
        direction = torch.rand(n_envs, n_prey, 2, device=prey_pos.device, generator=generator) * 2 - 1
    elif policy == "flee":
        diff = prey_pos.unsqueeze(2) - pred_pos.unsqueeze(1)  # [E, P, K, 2]
        dist = diff.norm(dim=-1)
        nearest = dist.argmin(dim=-1)  # [E, P]
        away = torch.gather(diff, 2, nearest[..., None, None].expand(n_envs, n_prey, 1, 2)).squeeze(2)
        # keep away from the walls too: push back toward the centre near the border
        direction = away / away.norm(dim=-1, keepdim=True).clamp_min(1e-6) - 0.5 * prey_pos
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    else:
        raise InvalidOption("env.prey_policy", policy, ", ".join(PREY_POLICIES))
    if continuous:
        return direction.clamp(-1.0, 1.0)
    moves = torch.tensor([[dx, dy] for _, dx, dy in MPE_MOVES], device=direction.device)
    score = direction @ moves.T
    score[..., 0] = torch.where(direction.norm(dim=-1) < 1e-3, 1.0, -1.0)
    return score.argmax(dim=-1)


# Memory, measured (benchmarks/memory_model.py, docs/results/memory_model.json: a process
# that builds E envs, resets and steps them).  VMAS: ~15 MB per batch (its scenario and
# world objects) plus, per env, ~16 B per pair of entities (simple_spread_large's contact
# and distance tensors: 7.7 MB per env at 600 entities, 53 MB at 2,000) and ~200 B per
# entity.  mpe2: ~1.9 MB per env (a PettingZoo env and its world in a worker) and ~10 MB
# of private memory per worker process (forked from a fork server that imported torch).
VMAS_BATCH_BYTES = 15 * MiB
VMAS_BYTES_PER_ENTITY_PAIR = 16
VMAS_BYTES_PER_ENTITY = 200
MPE2_BYTES_PER_ENV = int(1.9 * MiB)
MPE2_BYTES_PER_WORKER = 10 * MiB
# what a graph model keeps for backward per MPE edge, layer and unit of width (scaling.md:
# 306-404 B per edge and layer at width 32, 584-657 B at width 64)
MPE_EDGE_BYTES_PER_HIDDEN = 12


def mpe_footprint(
    scenario: str,
    backend: str,
    n_agents: int,
    n_landmarks: int | None,
    n_prey: int,
    continuous_actions: bool,
    workers: int,
) -> EnvFootprint:
    """The memory model of an MPE config (see the constants above); pure arithmetic, nothing
    is built.  Arguments as :class:`MpeBackend`'s (and ``Mpe2MPE``'s ``workers``)."""
    if scenario == "simple_tag":
        learners, prey, landmarks = n_agents, n_prey, 2 if n_landmarks is None else n_landmarks
        # own velocity and position, obstacles, the other agents, the prey's velocities
        obs_dim = 4 + 2 * landmarks + 2 * (learners + prey - 1) + 2 * prey
    else:
        learners, prey, landmarks = n_agents, 0, n_agents
        if scenario == "simple_spread_large":
            obs_dim = 8
        else:  # own velocity and position, landmarks, other agents (mpe2: and their communication)
            obs_dim = 4 + 2 * landmarks + 2 * (learners - 1) * (2 if backend == "mpe2" else 1)
    nodes = learners + prey + landmarks
    if backend == "mpe2":
        per_env, instance = MPE2_BYTES_PER_ENV, MPE2_BYTES_PER_WORKER * workers
    else:
        per_env = VMAS_BYTES_PER_ENTITY_PAIR * nodes * nodes + VMAS_BYTES_PER_ENTITY * nodes
        instance = VMAS_BATCH_BYTES
    return EnvFootprint(
        agents=learners,
        obs_dim=obs_dim,
        state_dim=obs_dim * learners,
        nodes=nodes,
        node_feats=3 if scenario == "simple_tag" else 2,
        action_size=2 if continuous_actions else 1,
        neighbours=((nodes, nodes - 1),),
        per_env_bytes=per_env,
        instance_bytes=instance,
        edge_bytes_per_hidden=MPE_EDGE_BYTES_PER_HIDDEN,
        keys=("env.n_agents",) if scenario != "simple_tag" else ("env.n_agents", "env.n_prey", "env.n_landmarks"),
        what=f"{backend} {scenario} ({nodes} entities)",
    )


def check_mpe_args(scenario: str, prey_policy: str) -> None:
    """Reject an unknown scenario or prey policy (both backends take the same arguments).

    Raises:
        InvalidOption: naming ``env.scenario`` or ``env.prey_policy`` and the allowed values.
    """
    if scenario not in SCENARIOS:
        raise InvalidOption("env.scenario", scenario, ", ".join(SCENARIOS))
    if prey_policy not in PREY_POLICIES:
        raise InvalidOption("env.prey_policy", prey_policy, ", ".join(PREY_POLICIES))


class MpeBackend:
    """What both MPE backends share: their arguments, the agent/prey/landmark counts, the
    entity graph's node types, the episode statistics and the :class:`EnvSpec` (one place
    for both).

    Args:
        scenario: ``simple_spread`` or ``simple_tag``.
        num_envs: envs in the batch.
        n_agents: learning agents (simple_spread: also the number of landmarks;
            simple_tag: the predators).
        n_landmarks: simple_tag's obstacles (None: 2).
        n_prey: simple_tag's scripted prey.
        continuous_actions: 2-D force in ``[-1, 1]^2`` (else 5 discrete moves).
        episode_limit: truncate after this many steps.
        prey_policy: the scripted prey's policy (``flee``, ``random``, ``still``).
        seed: base seed.
        device: torch device of the returned tensors.
    """

    def __init__(
        self,
        scenario: str,
        num_envs: int,
        n_agents: int = 3,
        n_landmarks: int | None = None,
        n_prey: int = 1,
        continuous_actions: bool = True,
        episode_limit: int = 25,
        prey_policy: str = "flee",
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        check_mpe_args(scenario, prey_policy)
        self.scenario = scenario
        self.num_envs = num_envs
        self.seed = seed
        self.device = torch.device(device)
        self.continuous = continuous_actions
        self.prey_policy = prey_policy
        self.episode_limit = episode_limit
        if scenario in ("simple_spread", "simple_spread_large"):
            self.n_learners, self.n_prey, self.n_landmarks = n_agents, 0, n_agents
        else:
            self.n_learners, self.n_prey = n_agents, n_prey
            self.n_landmarks = 2 if n_landmarks is None else n_landmarks
        self.n_nodes = self.n_learners + self.n_prey + self.n_landmarks
        self.n_types = 3 if scenario == "simple_tag" else 2
        self._node_type = torch.cat(
            [
                torch.zeros(self.n_learners, dtype=torch.long),
                torch.ones(self.n_prey, dtype=torch.long),
                torch.full((self.n_landmarks,), self.n_types - 1, dtype=torch.long),
            ]
        ).to(self.device)
        self._h = torch.nn.functional.one_hot(self._node_type, self.n_types).float()
        self._agent_node = torch.arange(self.n_learners, device=self.device)
        self._episodes = EpisodeTracker(num_envs, self.device)

    def _finish_step(
        self,
        obs: Observation,
        final_obs: Observation,
        reward: Tensor,
        terminated: Tensor,
        truncated: Tensor,
        info: dict[str, Any] | None = None,
    ) -> StepResult:
        """The step's result with the returns and lengths of the episodes that ended (NaN / 0
        elsewhere); their counters start again at zero."""
        episode_return, episode_length = self._episodes.finish(terminated | truncated)
        return StepResult(
            obs=obs,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            episode_return=episode_return,
            episode_length=episode_length,
            info={} if info is None else info,
        )

    def _observation_from(self, obs: Tensor, x: Tensor, v: Tensor, node_mask: Tensor) -> Observation:
        """The observation of flat per-learner ``obs [E, A, D]`` and entity positions and
        velocities ``x``, ``v [E, N, 2]`` (the state: the learners' observations, concatenated)."""
        n_envs, n_nodes = obs.shape[0], x.shape[1]
        graph = EntityGraph(
            h=self._h.expand(n_envs, n_nodes, -1),
            x=x,
            v=v,
            node_mask=node_mask,
            agent_node=self._agent_node,
        )
        return Observation(obs=obs, state=obs.reshape(n_envs, -1), graph=graph)

    def _make_spec(self, obs_dim: int) -> EnvSpec:
        """The spec of both backends, given the flat observation size of this one."""
        return EnvSpec(
            n_agents=self.n_learners,
            obs_dim=obs_dim,
            state_dim=obs_dim * self.n_learners,
            action_type="continuous" if self.continuous else "discrete",
            action_dim=2 if self.continuous else 5,
            episode_limit=self.episode_limit,
            action_low=-1.0,
            action_high=1.0,
            n_nodes=self.n_nodes,
            node_feat_dim=self.n_types,
            move_directions=[] if self.continuous else list(MPE_MOVES),
        )
