"""One episode in each env of a batch: the loop every evaluation shares.

:func:`run_episodes` resets a batched env with a seed, asks ``act`` for the actions of
every env at each step, records the first episode that ends in each env (its team
return, length and, where the env reports ``info['win']``, its win flag) and stops when
every env has finished one or after ``spec.episode_limit`` steps.  It runs under a
forked CPU random stream, so an evaluation never perturbs the caller's draws.

Who acts is the caller's business: the trainer's deterministic policy, a checkpoint's
policy, one policy per seat (cross-play).  A per-step hook sees every step (``eqmarl
render`` draws its frames there).  :class:`EpisodeStats` holds the per-env results and
the summary the trainer logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from eqmarl.core.env import MultiAgentEnv, Observation, StepResult

# act(obs) -> actions of every env: [E, A] long (discrete) or [E, A, action_dim] float
ActFn = Callable[[Observation], Tensor]
# on_step(t, obs, action, result): called after step t with what was observed and done
StepHook = Callable[[int, Observation, Tensor, StepResult], None]


def _mean_se(x: Tensor) -> tuple[float, float]:
    """Mean and standard error of a 1-D tensor (nan mean for none, nan error for fewer than 2)."""
    se = float(x.std() / math.sqrt(x.numel())) if x.numel() > 1 else float("nan")
    return float(x.mean()), se


@dataclass
class EpisodeStats:
    """The first finished episode of each of ``E`` envs.

    Attributes:
        returns: ``[E]`` team return of the env's first finished episode (nan where none
            finished).
        lengths: ``[E]`` float length of that episode (0 where none finished).
        wins: ``[E]`` 1/0 win flag of that episode (nan where none finished), or None
            when the env reports no ``info['win']``.
    """

    returns: Tensor
    lengths: Tensor
    wins: Tensor | None = None

    @property
    def finished(self) -> Tensor:
        """``[E]`` bool: the env finished an episode."""
        return ~torch.isnan(self.returns)

    def summary(self) -> dict[str, float]:
        """What the trainer logs of an evaluation.

        Returns:
            ``eval_return`` and ``eval_return_se`` (mean and standard error over the
            finished episodes), ``eval_length`` (mean over all envs, 0 for an unfinished
            one) and, where the env reports wins, ``eval_win_rate`` and
            ``eval_win_rate_se`` (over the finished episodes).
        """
        mean, se = _mean_se(self.returns[self.finished])
        out = {"eval_return": mean, "eval_return_se": se, "eval_length": float(self.lengths.mean())}
        if self.wins is not None:
            win = self.wins[~torch.isnan(self.wins)]
            if win.numel():
                out["eval_win_rate"], out["eval_win_rate_se"] = _mean_se(win)
        return out


@torch.no_grad()
def run_episodes(
    env: MultiAgentEnv,
    act: ActFn,
    seed: int,
    max_steps: int | None = None,
    on_step: StepHook | None = None,
) -> EpisodeStats:
    """Play until every env of ``env`` has finished one episode (see module docstring).

    Args:
        env: the batch (``E = env.num_envs`` envs; autoreset).
        act: the actions of every env for an observation of the batch.
        seed: ``env.reset`` seed.
        max_steps: stop after this many steps even if some env has not finished
            (default: ``env.spec.episode_limit``, at least 1).
        on_step: called after each step as ``on_step(t, obs, action, result)``.

    Returns:
        the per-env results; envs still running when the steps ran out count as unfinished.
    """
    steps = max(1, env.spec.episode_limit)
    if max_steps is not None:
        steps = min(steps, max_steps)
    n, device = env.num_envs, env.device
    with torch.random.fork_rng(devices=[]):
        obs = env.reset(seed=seed)
        ret = torch.full((n,), float("nan"), device=device)
        win = torch.full((n,), float("nan"), device=device)
        length = torch.zeros(n, device=device)
        reports_win = False
        for t in range(steps):
            action = act(obs)
            res = env.step(action)
            if on_step is not None:
                on_step(t, obs, action, res)
            new = res.done & torch.isnan(ret)
            ret = torch.where(new, res.episode_return, ret)
            if "win" in res.info:
                reports_win = True
                win = torch.where(new, res.info["win"], win)
            length = torch.where(new, res.episode_length.float(), length)
            if not bool(torch.isnan(ret).any()):
                break
            obs = res.obs
    return EpisodeStats(returns=ret, lengths=length, wins=win if reports_win else None)
