"""The lever coordination game: EQC's idealized example of a zero-shot coordination failure.

``n_agents`` agents (default 2) each pull one of ``n_levers`` levers (default 10) at the
same time; if all pick the same lever, each receives its payoff, otherwise 0.  Nine
levers pay 1.0 and one pays 0.9 (by default the last, index 9).  Episodes last one
step; every step ends an episode and the env auto-resets.

Observations carry no information: every agent sees the same constant vector
(``obs_dim = 1``, value 1.0), the global state is the same constant, and every action
is always allowed (``action_mask`` all True).

Symmetry: relabelling the levers that pay the same leaves the game unchanged.  The
group acts on the ``n_high`` 1.0-levers only (``K_g``; observations unchanged, ``L_g`` =
identity); see :func:`lever_symmetry`.  The full group is ``S_9`` (362,880 elements,
fine for Other-Play sampling, far too many copies for EQC); its cyclic subgroup ``C_9``
already acts transitively on the nine 1.0-levers, so a ``C_9``-equivariant policy is
``S_9``-equivariant too (it must give all nine the same probability).  Tests and EQC
use ``C9``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from eqmarl.core.env import EnvSpec, Observation, StepResult
from eqmarl.core.errors import InvalidOption
from eqmarl.core.footprint import EnvFootprint
from eqmarl.symmetry.actions import GroupAction
from eqmarl.symmetry.groups import GroupError, PermutationGroup, make_group

DEFAULT_PAYOFFS = (1.0,) * 9 + (0.9,)


def check_options(n_agents: int, payoffs: tuple[float, ...] | list[float]) -> None:
    """Refuse a game that is no coordination game: fewer than 2 players or 2 levers.

    Raises:
        InvalidOption: naming ``env.n_agents`` or ``env.payoffs``.
    """
    if n_agents < 2:
        raise InvalidOption("env.n_agents", n_agents, "an integer >= 2 (a coordination game)")
    if len(payoffs) < 2:
        raise InvalidOption("env.payoffs", payoffs, "a list of at least 2 payoffs (one per lever)")


def lever_footprint(n_agents: int, n_levers: int) -> EnvFootprint:
    """The memory model of the lever game: a constant observation per agent, one-step
    episodes, nothing simulated (pure arithmetic)."""
    return EnvFootprint(
        agents=n_agents, obs_dim=1, state_dim=1, per_env_bytes=4 * n_agents * (2 + n_levers), what="lever game"
    )


class LeverGame:
    """Batched lever game (see module docstring).

    Args:
        num_envs: parallel games ``E``.
        n_agents: players ``A`` (payout only if all pick the same lever).
        payoffs: payoff of each lever (length = number of actions).
        seed: unused (the game is deterministic); accepted for the common interface.
        device: torch device of the returned tensors.
    """

    def __init__(
        self,
        num_envs: int,
        n_agents: int = 2,
        payoffs: tuple[float, ...] | list[float] = DEFAULT_PAYOFFS,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs}; allowed: >= 1")
        check_options(n_agents, payoffs)
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.payoffs = torch.tensor([float(p) for p in payoffs], device=self.device)
        self.n_levers = len(payoffs)
        self.spec = EnvSpec(
            n_agents=n_agents,
            obs_dim=1,
            state_dim=1,
            action_type="discrete",
            action_dim=self.n_levers,
            episode_limit=1,
        )
        self._obs = Observation(
            obs=torch.ones(num_envs, n_agents, 1, device=self.device),
            state=torch.ones(num_envs, 1, device=self.device),
            action_mask=torch.ones(num_envs, n_agents, self.n_levers, dtype=torch.bool, device=self.device),
        )

    def reset(self, seed: int | None = None) -> Observation:
        """The (constant) first observation: obs ``[E, A, 1]``, state ``[E, 1]``, mask ``[E, A, 10]``."""
        return self._obs

    def step(self, actions: Tensor) -> StepResult:
        """Pull levers: ``actions [E, A]`` long; every episode ends here.

        Returns:
            reward ``[E, A]`` (the payoff of the common lever, 0 on a mismatch),
            ``terminated`` all True, ``info['coordinated']`` ``[E]`` float (1.0 if all agreed).
        """
        a = actions.to(self.device).long()
        if a.shape != (self.num_envs, self.spec.n_agents):
            raise ValueError(f"actions must be [E, A] = {(self.num_envs, self.spec.n_agents)}, got {tuple(a.shape)}")
        if bool(((a < 0) | (a >= self.n_levers)).any()):
            raise ValueError(f"lever actions must be in 0..{self.n_levers - 1}")
        agree = (a == a[:, :1]).all(dim=1)  # [E]
        pay = torch.where(agree, self.payoffs[a[:, 0]], torch.zeros((), device=self.device))
        reward = pay.unsqueeze(1).expand(-1, self.spec.n_agents).contiguous()
        done = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        return StepResult(
            obs=self._obs,
            reward=reward,
            terminated=done,
            truncated=torch.zeros_like(done),
            final_obs=self._obs,
            episode_return=pay,
            episode_length=torch.ones(self.num_envs, dtype=torch.long, device=self.device),
            info={"coordinated": agree.float()},
        )

    def state_dict(self) -> dict[str, Any]:
        """Nothing to save: the game is deterministic and every episode is one step."""
        return {}

    def load_state_dict(self, st: dict[str, Any]) -> Observation:
        """Restore :meth:`state_dict`; returns the (constant) current observation."""
        return self._obs

    def close(self) -> None:
        pass

    def symmetry(self, group: str | PermutationGroup = "C9") -> GroupAction:
        """The relabelling symmetry of this game's equal-payoff levers (see :func:`lever_symmetry`)."""
        return lever_symmetry(self.payoffs.tolist(), group)


def lever_symmetry(
    payoffs: tuple[float, ...] | list[float] = DEFAULT_PAYOFFS, group: str | PermutationGroup = "C9"
) -> GroupAction:
    """Group action that permutes the levers paying the most (the 1.0-levers).

    Args:
        payoffs: payoff of each lever.
        group: a name (``C9``, ``D18``, ``S9``: on the ``n_high`` top levers) or a
            :class:`PermutationGroup` of that degree.  ``S9`` is built without the
            homomorphism check (it holds by construction).

    Returns:
        :class:`GroupAction` with ``L_g`` = identity on the 1-dim observation and state,
        and ``K_g`` permuting the top levers among themselves (other levers fixed).
    """
    pay = torch.tensor([float(p) for p in payoffs])
    high = (pay == pay.max()).nonzero().flatten()  # [n_high]
    n_high = int(high.numel())
    grp = make_group(group, degree=n_high) if isinstance(group, str) else group
    if grp.degree != n_high:
        raise GroupError(f"the lever group must act on the {n_high} top levers, got degree {grp.degree}")
    n_act = len(payoffs)
    action_perm = torch.arange(n_act).repeat(grp.order, 1)
    action_perm[:, high] = high[grp.elements]
    ident = torch.zeros(grp.order, 1, dtype=torch.long)
    return GroupAction(grp, ident, action_perm, state_perm=ident, check=grp.order <= 5040)
