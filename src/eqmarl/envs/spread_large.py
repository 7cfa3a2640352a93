"""``simple_spread_large``: MPE simple_spread for hundreds to thousands of agents on VMAS.

VMAS's own ``simple_spread`` cannot go there: its reward loops over agents x landmarks
x agents in Python (``O(N^3)`` tensor ops per step), its observation concatenates the
relative position of every landmark and every other agent (``O(N^2)`` ops and floats),
and VMAS's ``World`` builds the list of colliding pairs with a Python double loop over
all entities every substep (``O(N^2)``, about 4 million iterations at 1,000 agents and
1,000 landmarks).  This scenario keeps VMAS's physics (``World.step``: action forces,
drag, integration; collisions with VMAS's own soft-contact force law) and replaces the
three quadratic Python parts by batched tensor ops:

* :class:`VectorizedWorld` computes the agent-agent contact forces from all pairs at
  once (the force law of ``World._get_constraint_forces``, so the dynamics equal
  ``simple_spread``'s);
* the reward is computed once per step for all agents: the team reward
  ``-(mean over landmarks of the distance to the nearest agent) - (colliding agent
  pairs) / N``, the same for every agent, where VMAS's ``simple_spread`` gives
  ``-N * (sum over landmarks of that distance) - (colliding ordered pairs)``: its
  distance term divided by ``N^2`` and its collision term by ``N``, so returns stay on
  one scale at any ``N`` (a per-agent measure);
* each agent observes its position, velocity and the relative positions of its
  nearest landmark and nearest other agent (8 floats at any ``N``; graph policies read
  the entity graph instead).

Python work left per step is ``O(N)`` (VMAS loops over entities to apply forces and
integrate), so agent-steps/s stay roughly constant in ``N`` on one core.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from vmas.simulator.core import Agent, Landmark, Sphere, World
from vmas.simulator.scenario import BaseScenario
from vmas.simulator.utils import Color

AGENT_RADIUS = 0.15


class VectorizedWorld(World):
    """VMAS World whose agent-agent contact forces are computed over all pairs at once."""

    steps_taken = 0  # counts step() calls (the scenario's per-step cache key)

    def step(self) -> None:
        self.steps_taken += 1
        super().step()

    def _apply_vectorized_enviornment_force(self) -> None:
        agents = self.agents
        pos = torch.stack([a.state.pos for a in agents], dim=1)  # [B, N, 2]
        delta = pos.unsqueeze(2) - pos.unsqueeze(1)  # [B, N, N, 2]: p_i - p_j
        dist = torch.linalg.vector_norm(delta, dim=-1)
        dist_min = 2 * AGENT_RADIUS
        k = self._contact_margin
        pen = torch.logaddexp(torch.zeros((), device=self.device), (dist_min - dist) / k) * k
        force = self._collision_force * delta / torch.where(dist > 0, dist, 1e-8).unsqueeze(-1) * pen.unsqueeze(-1)
        off = (dist < 1e-6) | (dist > dist_min)  # also removes i == j
        force = torch.where(off.unsqueeze(-1), 0.0, force).sum(2)  # [B, N, 2]
        for i, a in enumerate(agents):
            self.forces_dict[a] = self.forces_dict[a] + force[:, i]


class Scenario(BaseScenario):
    def make_world(self, batch_dim: int, device: torch.device, **kwargs: Any) -> Any:
        n = int(kwargs.pop("n_agents", 3))
        world = VectorizedWorld(batch_dim=batch_dim, device=device)
        for i in range(n):
            agent = Agent(name=f"agent_{i}", collide=True, shape=Sphere(radius=AGENT_RADIUS), color=Color.BLUE)
            agent._eqmarl_index = i
            world.add_agent(agent)
        for i in range(n):
            world.add_landmark(Landmark(name=f"landmark {i}", collide=False, color=Color.BLACK))
        self.n = n
        self._resets = 0
        self._key: tuple[int, ...] | None = None
        return world

    def reset_world_at(self, env_index: int | None = None) -> None:
        w = self.world
        shape = (1, w.dim_p) if env_index is not None else (w.batch_dim, w.dim_p)
        for ent in w.agents + w.landmarks:
            ent.set_pos(torch.zeros(shape, device=w.device).uniform_(-1.0, 1.0), batch_index=env_index)
        self._resets += 1

    def _compute(self) -> None:
        """Reward and observations of every agent at once, once per step (VMAS asks for the
        reward and the observation of agent 0 first; states loaded from outside replace the
        state tensors, which changes the key)."""
        w = self.world
        a0 = w.agents[0].state
        key = (w.steps_taken, self._resets, id(a0.pos), id(a0.vel))
        if key == self._key:
            return
        self._key = key
        pos = torch.stack([a.state.pos for a in w.agents], dim=1)  # [B, N, 2]
        land = torch.stack([lm.state.pos for lm in w.landmarks], dim=1)  # [B, L, 2]
        vel = torch.stack([a.state.vel for a in w.agents], dim=1)
        d_la = torch.cdist(land, pos, compute_mode="donot_use_mm_for_euclid_dist")  # [B, L, N]
        cover = d_la.min(-1).values.mean(-1)  # [B]
        d_aa = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")  # [B, N, N]
        eye = torch.eye(self.n, dtype=torch.bool, device=w.device)
        overlap = (d_aa < 2 * AGENT_RADIUS) & ~eye
        self.collisions = overlap.sum(-1).float()  # [B, N] other agents touching each agent
        self.cover = cover
        self.rew = -cover - self.collisions.sum(-1) / self.n
        nl = d_la.argmin(1)  # [B, N] nearest landmark of each agent
        na = d_aa.masked_fill(eye, float("inf")).argmin(-1)  # [B, N] nearest other agent
        rel_l = torch.gather(land, 1, nl.unsqueeze(-1).expand(-1, -1, 2)) - pos
        rel_a = torch.gather(pos, 1, na.unsqueeze(-1).expand(-1, -1, 2)) - pos
        self.obs_all = torch.cat([pos, vel, rel_l, rel_a], dim=-1)  # [B, N, 8]

    def reward(self, agent: Any) -> Tensor:
        if agent._eqmarl_index == 0:  # a new step: recompute for everyone
            self._compute()
        return self.rew

    def observation(self, agent: Any) -> Tensor:
        if agent._eqmarl_index == 0:
            self._compute()
        return self.obs_all[:, agent._eqmarl_index]

    def info(self, agent: Any) -> dict[str, Tensor]:
        return {}


def make_scenario() -> Any:
    """A fresh VMAS scenario object for ``vmas.make_env(scenario=...)``."""
    return Scenario()
