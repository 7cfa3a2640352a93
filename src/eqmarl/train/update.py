"""The PPO update: ``algo.epochs`` passes of ``algo.num_minibatches`` optimizer steps over a rollout.

:class:`PPOUpdate` runs the phases JaxMARL's MAPPO names:

* ``_update_epoch``: a fresh permutation of the ``N = T * E`` frames, cut into
  minibatches; after each epoch the last minibatch's approximate KL, averaged over
  ranks, stops the update early when it exceeds ``algo.target_kl``.
* ``_update_minibatch``: advantages normalized over the whole minibatch, then the
  learner's equal micro-batches (``learner.micro_batches``) accumulate their gradients
  into one optimizer step.  The :class:`~eqmarl.train.nonfinite.NonFiniteGuard` judges
  each step (skip, roll back, stop) and, at the end, the last step's parameters.
* ``_micro_batch_loss``: CleanRL's PPO loss terms on one micro-batch (``algos/ppo.py``).

A :class:`LossMeter` averages the loss terms and gradient norm over the applied steps.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from eqmarl.algos.ppo import normalize_advantages, ppo_loss
from eqmarl.core import Observation
from eqmarl.train.compiled import CompiledPhase

if TYPE_CHECKING:
    from eqmarl.config import AlgoConfig
    from eqmarl.train.learners import Learner
    from eqmarl.train.nonfinite import NonFiniteGuard
    from eqmarl.train.rollout import Rollout

# the loss terms logged each iteration (means over the applied optimizer steps)
LOSS_KEYS = ("loss", "pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac")


def _take(x: Tensor, index: Tensor) -> Tensor:
    return x[index]


@dataclasses.dataclass
class Batch:
    """A rollout's frames flattened to ``[N, ...]`` (``N = T * E``); see :class:`Rollout`."""

    obs: Observation
    action: Tensor
    logprob: Tensor
    value: Tensor
    advantages: Tensor
    returns: Tensor
    # 0 for transitions of a crashed game or a padding agent; None when there are none
    weights: Tensor | None

    @classmethod
    def from_rollout(cls, rollout: Rollout, frames: int) -> Batch:
        """``rollout`` with its ``[T, E]`` leading dims merged into ``frames = T * E``."""

        def flat(x: Tensor) -> Tensor:
            return x.reshape((frames, *x.shape[2:]))

        return cls(
            obs=rollout.obs.map(flat),
            action=flat(rollout.action),
            logprob=flat(rollout.logprob),
            value=flat(rollout.value),
            advantages=flat(rollout.advantages),
            returns=flat(rollout.returns),
            weights=None if rollout.valid is None else flat(rollout.valid),
        )

    def observations(self, index: Tensor) -> Observation:
        """The observations of the frames ``index``."""
        return self.obs.map(functools.partial(_take, index=index))


class LossMeter:
    """Sums the loss terms and gradient norm of the applied steps; counts the skipped ones.

    Args:
        device: where the sums live (read once, at the end of the update).
    """

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(len(LOSS_KEYS) + 1, device=device)
        self.steps = 0
        self.skips = 0

    def add(self, terms: Tensor, grad_norm: Tensor) -> None:
        """An applied step: its mean loss terms (``LOSS_KEYS`` order) and gradient norm."""
        self.sums += torch.cat([terms, grad_norm.detach().reshape(1).to(terms)])
        self.steps += 1

    def means(self) -> dict[str, float]:
        """``LOSS_KEYS`` and ``grad_norm`` averaged over the applied steps (NaN without any)."""
        means = (self.sums / self.steps).tolist() if self.steps else [float("nan")] * (len(LOSS_KEYS) + 1)
        return dict(zip((*LOSS_KEYS, "grad_norm"), means))


class PPOUpdate:
    """The update of one iteration (CleanRL's ppo.py: epochs, minibatches, clipped losses, KL stop).

    Args:
        algo: the ``algo`` config (epochs, minibatches, loss coefficients, ``target_kl``).
        learner: the learner strategy (forward, micro-batched backward, optimizer step, collectives).
        guard: what a non-finite step does (skip, roll back, stop).
        frames: frames per rollout on this rank (``N = T * E``).
        device: where the loss sums live.
        compile_mode: ``train.compile``: the micro-batch loss (forward and, through
            AOTAutograd, its backward) compiled with this ``torch.compile`` mode, or
            ``none`` (see :mod:`eqmarl.train.compiled`).
    """

    def __init__(
        self,
        algo: AlgoConfig,
        learner: Learner,
        guard: NonFiniteGuard,
        frames: int,
        device: torch.device,
        compile_mode: str = "none",
    ) -> None:
        self.algo = algo
        self.learner = learner
        self.guard = guard
        self.frames = frames
        self.device = device
        self.minibatch_size = frames // algo.num_minibatches
        self.loss = CompiledPhase(self._loss_terms, compile_mode)

    def __call__(self, rollout: Rollout, iteration: int) -> dict[str, float]:
        """Train on ``rollout``.

        Args:
            rollout: this iteration's data.
            iteration: the iteration being trained (1-based), for the non-finite messages.

        Returns:
            the means of ``LOSS_KEYS`` and ``grad_norm`` over the applied steps,
            ``explained_var`` and ``nonfinite_skips``.
        """
        batch = Batch.from_rollout(rollout, self.frames)
        meter = LossMeter(self.device)
        for _ in range(self.algo.epochs):
            terms, last_index = self._update_epoch(batch, meter, iteration)
            if self._kl_exceeded(terms):
                break
        if self.guard.confirm_last_step(  # a forward pass on the last minibatch, only while a step is unconfirmed
            iteration, lambda: self.learner.forward(batch.observations(last_index), batch.action[last_index])
        ):
            meter.skips += 1
        metrics = meter.means()
        metrics["explained_var"] = rollout.explained_var
        metrics["nonfinite_skips"] = float(meter.skips)
        return metrics

    def _update_epoch(self, batch: Batch, meter: LossMeter, iteration: int) -> tuple[Tensor, Tensor]:
        """One pass over the frames in random minibatches, one optimizer step each.

        Returns:
            the last minibatch's loss terms (``LOSS_KEYS`` order, averaged over its
            micro-batches) and its frame indices.
        """
        permutation = torch.randperm(self.frames, device=self.device)
        size = self.minibatch_size
        for i in range(self.algo.num_minibatches):
            index = permutation[i * size : (i + 1) * size]
            terms = self._update_minibatch(batch, index, meter, iteration)
        return terms, index

    def _update_minibatch(self, batch: Batch, index: Tensor, meter: LossMeter, iteration: int) -> Tensor:
        """One optimizer step on the frames ``index``, accumulated over equal micro-batches.

        Returns:
            the minibatch's loss terms (``LOSS_KEYS`` order), averaged over its micro-batches.
        """
        learner = self.learner
        advantages = batch.advantages[index]
        if self.algo.norm_adv:  # over the whole minibatch, before it is split
            advantages = normalize_advantages(advantages, None if batch.weights is None else batch.weights[index])
        learner.zero_grad()
        micro_batches = learner.micro_batches
        micro_size = self.minibatch_size // micro_batches
        terms = torch.zeros(len(LOSS_KEYS), device=self.device)
        for j in range(micro_batches):
            window = slice(j * micro_size, (j + 1) * micro_size)
            loss_terms = self._micro_batch_loss(batch, index[window], advantages[window])
            self.loss.backward(functools.partial(learner.backward, loss_terms["loss"]))
            terms += torch.stack([loss_terms[k].detach() for k in LOSS_KEYS])
        grad_norm = learner.optimizer_step(bool(torch.isfinite(terms[0])))
        terms /= micro_batches
        if self.guard.after_step(iteration):  # skipped (the guard rolls back, warns or stops)
            meter.skips += 1
        else:
            meter.add(terms, grad_norm)
        return terms

    def _micro_batch_loss(self, batch: Batch, index: Tensor, advantages: Tensor) -> dict[str, Tensor]:
        """The PPO loss terms of the frames ``index`` (``advantages``: theirs, normalized)."""
        return self.loss(
            batch.observations(index),
            batch.action[index],
            batch.logprob[index],
            advantages,
            batch.value[index],
            batch.returns[index],
            None if batch.weights is None else batch.weights[index],
        )

    def _loss_terms(
        self,
        obs: Observation,
        action: Tensor,
        logprob: Tensor,
        advantages: Tensor,
        value: Tensor,
        returns: Tensor,
        weights: Tensor | None,
    ) -> dict[str, Tensor]:
        """CleanRL's PPO loss terms of one micro-batch (the phase ``train.compile`` compiles)."""
        algo = self.algo
        new_logprob, entropy, new_value = self.learner.forward(obs, action)
        return ppo_loss(
            new_logprob,
            logprob,
            advantages,
            new_value,
            value,
            returns,
            entropy,
            clip_coef=algo.clip_coef,
            vf_coef=algo.vf_coef,
            ent_coef=algo.ent_coef,
            clip_vloss=algo.clip_vloss,
            norm_adv=False,
            weights=weights,
        )

    def _kl_exceeded(self, terms: Tensor) -> bool:
        """``algo.target_kl``: whether the last minibatch's approximate KL (mean over ranks) exceeds it."""
        target_kl = self.algo.target_kl
        approx_kl = terms[LOSS_KEYS.index("approx_kl")]
        return target_kl is not None and float(self.learner.all_reduce_mean(approx_kl)) > target_kl
