"""One iteration's data: ``T`` steps of every training env, then advantages and value targets.

:meth:`RolloutCollector.collect` runs the phases JaxMARL's MAPPO names:

* ``_env_step``: act (the policy samples; Other-Play relabels each agent's world), step
  the envs, store the transition.  Where an episode was truncated (time limit), the
  value of its final observation is computed here for the bootstrap.
* ``_next_values``: ``V(s_{t+1})`` of every step, the final observation's value where an
  episode was truncated rather than the value of the reset that followed it.
* ``_calculate_gae``: advantages and returns on the raw scale (``algos/gae.py``), the
  explained variance, the value normalizer's statistics, the value targets on the
  critic's scale.
* :func:`crash_mask`: transitions of a crashed game (``info['crashed']``) get weight 0;
  :func:`with_agent_mask`: so do those of padding agents (``Observation.agent_mask``,
  SMACv2's team sizes drawn per episode).

Everything is tensor ops over ``[T, E, A, ...]`` on the device: no Python loop over envs
or agents.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from eqmarl.algos.gae import gae
from eqmarl.core import Observation
from eqmarl.models.policy import ActOutput, over_env_chunks
from eqmarl.train.compiled import CompiledPhase

if TYPE_CHECKING:
    from eqmarl.algos.ppo import ValueNorm
    from eqmarl.config import AlgoConfig
    from eqmarl.core import MultiAgentEnv, StepResult
    from eqmarl.models import Policy
    from eqmarl.train.learners import Learner
    from eqmarl.wrappers.eqc import EQC
    from eqmarl.wrappers.other_play import OtherPlay


@dataclasses.dataclass
class Rollout:
    """One iteration's data, ``[T, E, ...]`` (``value``/``returns`` on the critic's scale)."""

    obs: Observation
    action: Tensor
    logprob: Tensor
    value: Tensor
    advantages: Tensor
    returns: Tensor
    episode_returns: Tensor
    explained_var: float
    # win flags (1/0) of the episodes that ended, where the env reports info['win'] (SMACv2)
    episode_wins: Tensor | None = None
    # [T, E, A] 0 for transitions of a crashed game (info['crashed'], the StarCraft II
    # backend) and of padding agents (Observation.agent_mask False), which the update must
    # not learn from; None when no game crashed and no observation has an agent mask
    valid: Tensor | None = None
    # games or env worker processes restarted after a crash or a hang during this rollout
    env_restarts: float = 0.0
    # of those, workers killed for not answering in time
    env_timeouts: float = 0.0


def as_float32(x: Tensor) -> Tensor:
    """Float tensors as float32 (16-bit weights give 16-bit outputs); others unchanged."""
    return x.float() if x.is_floating_point() else x


def worker_counts(env: MultiAgentEnv) -> tuple[int, int]:
    """The env's (worker restarts, worker timeouts) so far (0, 0 without workers)."""
    return getattr(env, "worker_restarts", 0), getattr(env, "worker_timeouts", 0)


def crash_mask(crashed: list[Tensor | None], num_envs: int, like: Tensor) -> Tensor | None:
    """Weights ``[T, E, A]`` (shaped as ``like``): 0 where a game crashed, 1 elsewhere.

    Args:
        crashed: each step's ``info['crashed']`` (``[E]``, nonzero for a crashed game) or None.
        num_envs: ``E``.
        like: a ``[T, E, A]`` tensor whose shape the mask takes.

    Returns:
        None when no game crashed in the rollout.
    """
    if not any(flags is not None and bool(flags.any()) for flags in crashed):
        return None
    zeros = torch.zeros(num_envs, device=like.device)
    stacked = torch.stack([zeros if flags is None else flags.to(zeros) for flags in crashed])  # [T, E]
    return (stacked == 0).float().unsqueeze(-1).expand_as(like).contiguous()


def with_agent_mask(valid: Tensor | None, agent_masks: list[Tensor | None], like: Tensor) -> Tensor | None:
    """``valid`` (or 1) times each step's agent mask: 0 for the transitions of agents that
    are not in their episode (padding; ``Observation.agent_mask`` False).

    Args:
        valid: ``[T, E, A]`` weights so far (:func:`crash_mask`), or None.
        agent_masks: each step's ``[E, A]`` bool agent mask, or None (every agent plays).
        like: a ``[T, E, A]`` float tensor whose shape, dtype and device the weights take.

    Returns:
        None when ``valid`` is None and no step has an agent mask.
    """
    if all(m is None for m in agent_masks):
        return valid
    present = torch.stack([torch.ones_like(like[0]) if m is None else m.to(like) for m in agent_masks])
    return present if valid is None else valid * present


@dataclasses.dataclass
class _Steps:
    """The per-step tensors of one rollout, stacked to ``[T, ...]`` at its end."""

    # games restarted after a crash (StarCraft II), summed on the device; read once per rollout
    restarts: Tensor
    obs: list[Observation] = dataclasses.field(default_factory=list)
    action: list[Tensor] = dataclasses.field(default_factory=list)
    logprob: list[Tensor] = dataclasses.field(default_factory=list)
    value: list[Tensor] = dataclasses.field(default_factory=list)
    reward: list[Tensor] = dataclasses.field(default_factory=list)
    terminated: list[Tensor] = dataclasses.field(default_factory=list)
    done: list[Tensor] = dataclasses.field(default_factory=list)
    # (step, [E] truncated flags, [E, A] value of the episode's final observation)
    truncations: list[tuple[int, Tensor, Tensor]] = dataclasses.field(default_factory=list)
    episode_returns: list[Tensor] = dataclasses.field(default_factory=list)
    wins: list[Tensor] = dataclasses.field(default_factory=list)
    crashed: list[Tensor | None] = dataclasses.field(default_factory=list)

    def store(self, obs: Observation, act: ActOutput, result: StepResult) -> None:
        """The transition of one step: what the policy saw and did, what the env answered."""
        self.obs.append(obs)
        self.action.append(act.action)
        self.logprob.append(act.logprob)
        self.value.append(act.value)
        self.reward.append(result.reward)
        self.terminated.append(result.terminated)
        self.done.append(result.done)


class RolloutCollector:
    """Plays the policy in the training envs and turns ``algo.rollout_steps`` steps into a :class:`Rollout`.

    Args:
        env: the training envs (``E = env.num_envs``).
        policy: the policy trained (EQC-wrapped where ``model.eqc`` is set).
        learner: the learner strategy (its inference context, ``all_gather_cat``).
        value_norm: the critic's value normalizer (its statistics are updated here).
        other_play: Other-Play's relabelling (``algo.other_play``), or None.
        algo: the ``algo`` config (``rollout_steps``, ``gamma``, ``gae_lambda``).
        chunk: ``train.inference_chunk_envs`` (envs per inference slice; <= 0: all).
        knn: neighbours stored with each graph observation (0: none), so the update reuses them.
        keep_graph: store graph observations (graph models); otherwise only the flat ones.
        device: where the rollout's tensors live.
        compile_mode: ``train.compile`` (the policy step through ``torch.compile``, or ``none``).
    """

    def __init__(
        self,
        env: MultiAgentEnv,
        policy: Policy | EQC,
        learner: Learner,
        value_norm: ValueNorm,
        other_play: OtherPlay | None,
        *,
        algo: AlgoConfig,
        chunk: int,
        knn: int,
        keep_graph: bool,
        device: torch.device,
        compile_mode: str = "none",
    ) -> None:
        self.env = env
        self.policy = policy
        self.learner = learner
        self.value_norm = value_norm
        self.other_play = other_play
        self.algo = algo
        self.chunk = chunk
        self.knn = knn
        self.keep_graph = keep_graph
        self.device = device
        # train.compile: the policy step (see eqmarl.train.compiled)
        self.policy_step = CompiledPhase(self._policy_act, compile_mode)
        # env worker processes (mpe2) restarted after a crash or a hang are counted by the
        # env; a rollout reports those since the last one (a hang met while checkpointing
        # counts in the next one)
        self.worker_counts = worker_counts(env)

    @torch.no_grad()
    def collect(self, obs: Observation) -> tuple[Rollout, Observation]:
        """Collect ``T`` steps from every env; compute advantages and value targets.

        Args:
            obs: the envs' current observation (where the last rollout stopped).

        Returns:
            the rollout, and the observation the next one starts from.
        """
        steps = _Steps(restarts=torch.zeros((), device=self.device))
        workers_before, timeouts_before = self.worker_counts
        for t in range(self.algo.rollout_steps):
            obs = self._env_step(t, obs, steps)
        value = torch.stack(steps.value)
        next_value = self._next_values(value, obs, steps.truncations)
        advantages, returns, explained_var = self._calculate_gae(steps, value, next_value)
        episode_returns = torch.stack(steps.episode_returns).flatten()
        wins = torch.stack(steps.wins).flatten() if steps.wins else None
        logprob = torch.stack(steps.logprob)
        valid = crash_mask(steps.crashed, self.env.num_envs, logprob)
        valid = with_agent_mask(valid, [o.agent_mask for o in steps.obs], logprob)
        self.worker_counts = worker_counts(self.env)
        rollout = Rollout(
            obs=Observation.stack(steps.obs),
            action=torch.stack(steps.action),
            logprob=logprob,
            value=value,
            advantages=advantages,
            returns=returns,
            episode_returns=episode_returns[~torch.isnan(episode_returns)],
            explained_var=explained_var,
            episode_wins=None if wins is None else wins[~torch.isnan(wins)],
            valid=valid,
            env_restarts=float(steps.restarts) + self.worker_counts[0] - workers_before,
            env_timeouts=float(self.worker_counts[1] - timeouts_before),
        )
        return rollout, obs

    def _act(self, obs: Observation) -> ActOutput:
        """The policy's action, log-prob and value (float32 whatever the learner's weights)."""
        with self.learner.inference():
            out = self.policy_step(obs)
        return ActOutput(as_float32(out.action), out.logprob.float(), out.value.float())

    def _policy_act(self, obs: Observation) -> ActOutput:
        """The policy step (the phase ``train.compile`` compiles)."""
        return self.policy.act(obs, chunk=self.chunk)

    def _value(self, obs: Observation) -> Tensor:
        """The critic's value of ``obs`` (float32), ``[E, A]``."""
        with self.learner.inference():
            return over_env_chunks(self.policy.value, obs, self.chunk).float()

    def _env_step(self, t: int, obs: Observation, steps: _Steps) -> Observation:
        """Step ``t``: act on ``obs``, step the envs, store the transition in ``steps``.

        Returns:
            the next observation (the first of a new episode where one ended).
        """
        other_play = self.other_play
        if other_play is not None:  # act (and store) in each agent's relabelled world
            obs = other_play.observation(obs)
        if self.knn and obs.graph is not None:  # the update reuses this exact graph
            obs = dataclasses.replace(obs, graph=obs.graph.with_knn(self.knn))
        act = self._act(obs)
        result = self.env.step(act.action if other_play is None else other_play.env_action(act.action))
        steps.store(obs if self.keep_graph else dataclasses.replace(obs, graph=None), act, result)
        if bool(result.truncated.any()):
            final = result.final_obs if other_play is None else other_play.observation(result.final_obs)
            steps.truncations.append((t, result.truncated, self._value(final)))
        steps.episode_returns.append(result.episode_return)
        if "win" in result.info:
            steps.wins.append(result.info["win"])
        steps.crashed.append(result.info.get("crashed"))
        if "restarts" in result.info:  # games restarted (StarCraft II)
            steps.restarts += result.info["restarts"].float().sum()
        if other_play is not None:
            other_play.new_episodes(result.done)
        return result.obs

    def _next_values(
        self, value: Tensor, last_obs: Observation, truncations: list[tuple[int, Tensor, Tensor]]
    ) -> Tensor:
        """``V(s_{t+1})`` for every step ``[T, E, A]``, on the critic's scale.

        Args:
            value: ``V(s_t)`` of every step, ``[T, E, A]``.
            last_obs: the observation after the last step.
            truncations: where episodes were truncated, with their final observations' values.
        """
        if self.other_play is not None:
            last_obs = self.other_play.observation(last_obs)
        next_value = torch.cat([value[1:], self._value(last_obs).unsqueeze(0)])
        for t, truncated, final_value in truncations:
            next_value[t] = torch.where(truncated.unsqueeze(-1), final_value, next_value[t])
        return next_value

    def _calculate_gae(self, steps: _Steps, value: Tensor, next_value: Tensor) -> tuple[Tensor, Tensor, float]:
        """Advantages, value targets and the explained variance; updates the value normalizer.

        Args:
            steps: the rollout's transitions.
            value: ``V(s_t)``, ``[T, E, A]``, on the critic's scale.
            next_value: ``V(s_{t+1})``, the same.

        Returns:
            advantages (raw scale), value targets on the critic's scale (after the
            normalizer took this rollout's returns in), explained variance.
        """
        value_norm = self.value_norm
        raw_value, raw_next_value = value_norm.denormalize(value), value_norm.denormalize(next_value)
        advantages, returns = gae(
            torch.stack(steps.reward),
            raw_value,
            raw_next_value,
            torch.stack(steps.terminated),
            torch.stack(steps.done),
            self.algo.gamma,
            self.algo.gae_lambda,
        )
        var_y = returns.var()
        explained_var = float(1 - (returns - raw_value).var() / var_y) if var_y > 0 else float("nan")
        value_norm.update(self.learner.all_gather_cat(returns))  # same statistics on every rank
        return advantages, value_norm.normalize(returns), explained_var
