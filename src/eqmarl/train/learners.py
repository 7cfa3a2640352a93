"""The learner contract and the learners by name (``learner.name``).

A *learner* turns PPO losses into parameter updates and owns everything that differs
between one process, data-parallel ranks and DeepSpeed: micro-batching, gradient
reduction and clipping, undoing a non-finite step, the checkpoint format of the
optimizer, and the collectives the trainer needs to keep ranks in agreement.
:class:`Learner` lists what the trainer (``train/trainer.py``), its checkpoints and the
launcher (``launch/job.py``) call; nothing else about a learner is visible to them.

Learners are registered by name (:func:`register_learner`); :func:`make_learner` builds
the one ``learner.name`` names.  The built-in ones:

* ``single``: :class:`~eqmarl.train.strategy.SingleStrategy`, one process;
* ``ddp``: :class:`~eqmarl.train.strategy.DdpStrategy`, gradients averaged over the
  ranks of a ``torch.distributed`` process group;
* ``deepspeed``: :class:`~eqmarl.train.deepspeed_strategy.DeepSpeedStrategy`, its module
  imported only when built, so DeepSpeed stays an optional dependency (a missing one
  raises an ImportError that says what to install).

mypy checks each built-in learner against :class:`Learner`: every builder is typed to
return one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from eqmarl.config import LearnerConfig
from eqmarl.core.env import Observation
from eqmarl.core.errors import InvalidOption
from eqmarl.train.strategy import DdpStrategy, SingleStrategy


class Learner(Protocol):
    """What the trainer, the checkpoint code and the launcher call on a learner.

    One optimizer step over a PPO minibatch of ``micro_batches`` equal micro-batches::

        learner.zero_grad()
        for each micro-batch:
            logp, entropy, value = learner.forward(obs, action)
            learner.backward(micro_batch_mean_loss)
        grad_norm = learner.optimizer_step(loss_finite)
        if learner.skipped: ...  # nothing was applied, on any rank

    Settings (clip norm, micro-batches, whether to keep a copy for :meth:`rollback`, the
    ``learner`` config) are constructor arguments; nothing is set after construction.
    The collectives are identities for one process, so the trainer calls them
    unconditionally; every rank must call them (and the checkpoint hooks marked so) in
    the same order.
    """

    @property
    def rank(self) -> int:
        """This process's rank (0 for one process)."""
        ...

    @property
    def world_size(self) -> int:
        """Number of ranks (1 for one process)."""
        ...

    @property
    def is_main(self) -> bool:
        """Rank 0: the rank that logs and writes the trainer's checkpoint file."""
        ...

    @property
    def micro_batches(self) -> int:
        """Equal micro-batches per optimizer step (``learner.micro_batches``)."""
        ...

    @property
    def skipped(self) -> bool:
        """Whether the last :meth:`optimizer_step` was skipped (non-finite loss or gradients)."""
        ...

    # -- the update ----------------------------------------------------------------
    def forward(self, obs: Observation, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The policy's ``evaluate(obs, action)``: float32 log-prob, entropy and value."""
        ...

    def zero_grad(self) -> None:
        """Start accumulating the gradient of a new optimizer step."""
        ...

    def backward(self, loss: Tensor) -> None:
        """Accumulate the gradient of one micro-batch's mean loss (scaled by ``1 / micro_batches``)."""
        ...

    def optimizer_step(self, loss_finite: bool = True) -> Tensor:
        """Reduce over ranks, clip and apply the accumulated gradient.

        Args:
            loss_finite: this rank's loss terms were finite; False on any rank skips the
                step on every rank (:attr:`skipped`), as does a non-finite gradient norm.

        Returns:
            The global gradient norm before clipping.
        """
        ...

    def rollback(self) -> None:
        """Undo the last applied step (its parameters gave non-finite outputs); raises
        ``NonFiniteError`` where the learner cannot, which stops the run."""
        ...

    def set_lr(self, lr: float) -> None:
        """The learning rate of the following steps."""
        ...

    def inference(self) -> contextlib.AbstractContextManager[Any]:
        """The context rollouts and evaluations run the policy in (autocast for 16-bit weights)."""
        ...

    # -- checkpoints ---------------------------------------------------------------
    def plain_state_dict(self) -> dict[str, Tensor]:
        """The full policy parameters as a plain state dict (every rank calls it)."""
        ...

    def optimizer_state(self) -> dict[str, Any] | None:
        """The optimizer state for the trainer's checkpoint file (None: in :meth:`save_sharded`'s files)."""
        ...

    def load_optimizer_state(self, state: dict[str, Any] | None, ckpt_dir: Path, tag: str | None) -> None:
        """Restore the optimizer from :meth:`optimizer_state` or from the sharded files ``ckpt_dir``/``tag``."""
        ...

    def save_sharded(self, ckpt_dir: Path, iteration: int, keep: int) -> str | None:
        """Write the learner's own checkpoint files (every rank calls it); their tag, or None."""
        ...

    # -- collectives ---------------------------------------------------------------
    def all_reduce_sum(self, x: Tensor) -> Tensor:
        """Sum of ``x`` over ranks."""
        ...

    def all_reduce_mean(self, x: Tensor) -> Tensor:
        """Mean of ``x`` over ranks."""
        ...

    def all_gather_cat(self, x: Tensor) -> Tensor:
        """Every rank's ``x`` (same shape on all) concatenated along dim 0, in rank order."""
        ...

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one."""
        ...

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's picklable ``obj`` as a list on rank 0 (None on the other ranks)."""
        ...


class LearnerBuilder(Protocol):
    """Builds a learner from the policy, its optimizer and the settings (a registry entry)."""

    def __call__(
        self,
        cfg: LearnerConfig,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        max_grad_norm: float,
        keep_snapshots: bool,
    ) -> Learner:
        """Build the learner.

        Args:
            cfg: the ``learner`` config.
            module: the policy.
            optimizer: its optimizer.
            max_grad_norm: global gradient-norm clip (<= 0: off).
            keep_snapshots: keep a copy before each step for :meth:`Learner.rollback`.
        """
        ...


LEARNERS: dict[str, LearnerBuilder] = {}


def register_learner(name: str) -> Callable[[LearnerBuilder], LearnerBuilder]:
    """Decorator: register a builder under ``learner.name=name``.

    Args:
        name: the ``learner.name`` it answers to (also needs ``configs/learner/<name>.yaml``
            and the name among ``validate``'s ``learner.name`` choices).

    Raises:
        ValueError: ``name`` is registered already.
    """

    def add(builder: LearnerBuilder) -> LearnerBuilder:
        if name in LEARNERS:
            raise ValueError(f"learner {name!r} is registered already")
        LEARNERS[name] = builder
        return builder

    return add


def make_learner(
    cfg: LearnerConfig,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    max_grad_norm: float,
    keep_snapshots: bool = True,
) -> Learner:
    """Build the learner named by ``cfg.name``.

    Args:
        cfg: the ``learner`` config (name, micro-batches, DeepSpeed's settings).
        module: the policy (``forward`` = ``evaluate``).
        optimizer: its optimizer (DeepSpeed wraps it).
        max_grad_norm: global gradient-norm clip (``algo.max_grad_norm``; <= 0: off).
        keep_snapshots: keep the parameters and optimizer state before each step so a
            step can be rolled back (``train.rollback_nonfinite``).

    Raises:
        InvalidOption: no learner is registered under ``cfg.name``.
    """
    builder = LEARNERS.get(cfg.name)
    if builder is None:
        raise InvalidOption("learner.name", cfg.name, ", ".join(LEARNERS))
    return builder(cfg, module, optimizer, max_grad_norm=max_grad_norm, keep_snapshots=keep_snapshots)


@register_learner("single")
def _single(
    cfg: LearnerConfig,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    max_grad_norm: float,
    keep_snapshots: bool,
) -> Learner:
    return SingleStrategy(
        module, optimizer, max_grad_norm, micro_batches=cfg.micro_batches, keep_snapshots=keep_snapshots
    )


@register_learner("ddp")
def _ddp(
    cfg: LearnerConfig,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    max_grad_norm: float,
    keep_snapshots: bool,
) -> Learner:
    return DdpStrategy(module, optimizer, max_grad_norm, micro_batches=cfg.micro_batches, keep_snapshots=keep_snapshots)


@register_learner("deepspeed")
def _deepspeed(
    cfg: LearnerConfig,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    max_grad_norm: float,
    keep_snapshots: bool,
) -> Learner:
    # imported here: the module itself needs no DeepSpeed, its constructor does (and says
    # what to install when it is missing)
    from eqmarl.train.deepspeed_strategy import DeepSpeedStrategy

    return DeepSpeedStrategy(module, optimizer, max_grad_norm, cfg, keep_snapshots=keep_snapshots)
