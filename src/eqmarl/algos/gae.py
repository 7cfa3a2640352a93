"""Generalized advantage estimation (pure function)."""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    reward: Tensor,
    value: Tensor,
    next_value: Tensor,
    terminated: Tensor,
    done: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Advantages and returns with termination and truncation treated separately.

    ``delta_t = r_t + gamma * V(s'_t) * (1 - terminated_t) - V(s_t)`` where ``s'_t`` is the
    state reached by step ``t`` (for an episode cut by the time limit, its final state: the
    value is bootstrapped; for a terminated one, nothing follows), and
    ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}`` (no credit flows across an
    episode boundary, whichever way it ended).

    Args:
        reward: ``[T, E, ...]`` rewards.
        value: ``[T, E, ...]`` values of the states acted in.
        next_value: ``[T, E, ...]`` values of the states reached (the final state of an
            episode that ended at ``t``; else the next state).
        terminated: ``[T, E]`` bool, episode reached a terminal state at ``t``.
        done: ``[T, E]`` bool, terminated or truncated at ``t``.
        gamma: discount.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, both shaped like ``reward``; ``returns = adv + value``.
    """
    extra = reward.dim() - terminated.dim()
    not_term = (~terminated).to(reward.dtype).view(terminated.shape + (1,) * extra)
    not_done = (~done).to(reward.dtype).view(done.shape + (1,) * extra)
    delta = reward + gamma * next_value * not_term - value
    adv = torch.empty_like(reward)
    last = torch.zeros_like(reward[0])
    for t in range(reward.shape[0] - 1, -1, -1):
        last = delta[t] + gamma * lam * not_done[t] * last
        adv[t] = last
    return adv, adv + value
