"""Other-Play (Hu et al., ICML 2020): train against a randomly relabelled partner.

Each agent of each env gets an independent, uniformly random element ``g`` of a
symmetry group of the game, drawn when an episode starts and kept for the whole
episode.  The agent acts in its own relabelled world: it sees ``L_g o`` (and the mask
``K_g m``), picks an action ``a'`` there, and the env receives ``K_g^{-1}(a')``.  Since
every agent is relabelled independently, a policy cannot rely on arbitrary
conventions (e.g. "hint red means play") that break under relabelling; restricting
``g`` to a subgroup gives G-OP.

The trainer stores the relabelled observations and the actions ``a'`` (with their
log-probabilities), so the PPO update sees exactly what the policy saw.  The global
state stays in the env's own labelling: the game's value is invariant under its
symmetries, so a centralized critic needs no relabelling.
"""

from __future__ import annotations

import torch
from torch import Tensor

from eqmarl.core.env import Observation
from eqmarl.symmetry.actions import GroupAction


class OtherPlay:
    """Per-agent, per-episode random relabelling of observations and actions.

    Args:
        action: the group and how it acts on observations and actions.
        num_envs: ``E``.
        n_agents: ``A``.
        generator: random stream for the draws (default: torch's global one).

    Attributes:
        g: ``[E, A]`` long, index of each agent's current group element.
    """

    def __init__(
        self, action: GroupAction, num_envs: int, n_agents: int, generator: torch.Generator | None = None
    ) -> None:
        self.action = action
        self.generator = generator
        self.g: Tensor = self._draw(num_envs * n_agents).view(num_envs, n_agents)

    def _draw(self, n: int) -> Tensor:
        return torch.randint(self.action.order, (n,), generator=self.generator).to(self.action.action_perm.device)

    def observation(self, obs: Observation) -> Observation:
        """Each agent's relabelled view: ``obs [E, A, D] -> [E, A, D]`` (mask too; state unchanged)."""
        return Observation(
            obs=self.action.obs(obs.obs, self.g),
            state=obs.state,
            graph=None,
            action_mask=None if obs.action_mask is None else self.action.mask(obs.action_mask, self.g),
            agent_mask=obs.agent_mask,
        )

    def env_action(self, action: Tensor) -> Tensor:
        """Map actions chosen in the relabelled worlds back to the env: ``[E, A]`` long -> ``[E, A]``."""
        return self.action.action(action, self.action.group.inverse.to(self.g.device)[self.g])

    def new_episodes(self, done: Tensor) -> None:
        """Draw fresh elements for the agents of envs whose episode ended (``done [E]`` bool)."""
        n = int(done.sum())
        if n:
            self.g[done] = self._draw(n * self.g.shape[1]).view(n, -1)

    def state_dict(self) -> dict[str, Tensor]:
        return {"g": self.g.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.g = state["g"].to(self.g.device).clone()
