"""Episode statistics of a batched env: the running return and length of every env's
current episode, reported in :class:`~eqmarl.core.env.StepResult` when the episode ends.

One helper for every backend that accumulates rewards itself (the envs whose return is
something else, such as Hanabi's final score, report that instead)::

    self._episodes = EpisodeTracker(num_envs, device)
    ...
    self._episodes.add(team_reward)              # after the simulator stepped
    truncated = self._episodes.length >= limit   # the step count includes this step
    episode_return, episode_length = self._episodes.finish(done)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class EpisodeTracker:
    """Per-env running return and length of the current episodes.

    Args:
        num_envs: envs in the batch (E).
        device: device of the counters (the env's reward device).

    Attributes:
        returns: ``[E]`` float, the summed team reward of each current episode.
        length: ``[E]`` long, the steps taken in each current episode.
    """

    def __init__(self, num_envs: int, device: torch.device | str | None = None) -> None:
        self.returns = torch.zeros(num_envs, device=device)
        self.length = torch.zeros(num_envs, dtype=torch.long, device=device)

    def reset(self) -> None:
        """Start a new episode in every env (counters to zero)."""
        self.returns.zero_()
        self.length.zero_()

    def add(self, reward: Tensor, steps: Tensor | int = 1) -> None:
        """Count one step of every env.

        Args:
            reward: ``[E]`` team reward of this step.
            steps: steps to add to each length: 1, or a ``[E]`` long tensor (0 where an env
                did not really step, e.g. a restarted worker's).
        """
        self.length += steps
        self.returns += reward

    def finish(self, done: Tensor, report: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """End the episodes where ``done``: their statistics, and counters back to zero there.

        Args:
            done: ``[E]`` bool, the episode ended at this step (terminated or truncated).
            report: ``[E]`` bool, which ended episodes are reported (None: all); the others
                (e.g. cut by a crashed game) end without statistics.

        Returns:
            ``episode_return [E]`` (NaN where no reported episode ended) and
            ``episode_length [E]`` (0 there), as :class:`~eqmarl.core.env.StepResult` wants them.
        """
        reported = done if report is None else done & report
        episode_return = torch.where(reported, self.returns, torch.full_like(self.returns, float("nan")))
        episode_length = torch.where(reported, self.length, torch.zeros_like(self.length))
        self.length = torch.where(done, torch.zeros_like(self.length), self.length)
        self.returns = torch.where(done, torch.zeros_like(self.returns), self.returns)
        return episode_return, episode_length

    def state_dict(self) -> dict[str, Any]:
        """The counters, under the keys the env checkpoints have always used (``t``, ``ret``)."""
        return {"t": self.length.clone(), "ret": self.returns.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (in place: the counters keep their device)."""
        self.length.copy_(state["t"])
        self.returns.copy_(state["ret"])
