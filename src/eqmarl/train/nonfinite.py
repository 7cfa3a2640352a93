"""What a training run does with non-finite numbers (NaN, inf).

:class:`NonFiniteGuard` owns the whole decision:

* An optimizer step whose loss or gradient norm is not finite on any rank is skipped on
  every rank (the strategy decides it with one collective, so data-parallel ranks stay
  identical), with a warning; ``nonfinite_skips`` counts the skips of each iteration.
* A step is *confirmed* by the next finite loss computed with its parameters.  When the
  next loss is not finite instead, the unconfirmed step is rolled back as well: a step
  that leaves finite but useless parameters (e.g. 1e30 after a huge learning rate) must
  not survive into the next rollout.  The last step of an update is confirmed by one
  forward pass (:meth:`NonFiniteGuard.confirm_last_step`).
* After ``train.max_nonfinite_updates`` skipped steps in a row (with no confirmed step in
  between) the run stops with :class:`NonFiniteError`: what happened, the likely causes
  and the last good checkpoint.
* It guards every checkpoint (:meth:`NonFiniteGuard.checkpoint_allowed`): a state with a
  non-finite tensor is never written, so ``resume=`` always finds the last finite one.
* The streak is part of the checkpoint (:meth:`NonFiniteGuard.state_dict`): a resumed run
  stops after the same number of skipped steps in a row as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

from eqmarl.core.log import get_logger

log = get_logger("train")


class GuardedLearner(Protocol):
    """What the guard needs of a learner strategy (``train/strategy.py`` imports this module)."""

    @property
    def skipped(self) -> bool:
        """The last optimizer step was skipped (a non-finite loss or gradient norm on some rank)."""
        ...

    @property
    def is_main(self) -> bool: ...

    def rollback(self) -> None: ...

    def any_rank(self, flag: bool) -> bool: ...


class NonFiniteError(RuntimeError):
    """The run stopped: too many consecutive updates with a non-finite loss or gradient."""


class NonFiniteGuard:
    """Skips, rolls back, warns about and stops on non-finite optimizer steps; refuses
    non-finite checkpoints.

    Without a ``learner`` it is the bare counter (:meth:`record`, :meth:`confirm`,
    :attr:`exhausted`); the trainer gives it the learner strategy whose steps it judges.

    Args:
        max_consecutive: ``train.max_nonfinite_updates``.
        learner: the learner strategy (its ``skipped`` flag, ``rollback``, ``any_rank``).
        lr: ``algo.lr``, named in the stop message.
        max_grad_norm: ``algo.max_grad_norm``, named in the stop message.
        run_dir: the run dir, where the last good checkpoint is looked up.
    """

    def __init__(
        self,
        max_consecutive: int,
        learner: GuardedLearner | None = None,
        *,
        lr: float = float("nan"),
        max_grad_norm: float = float("nan"),
        run_dir: Path | None = None,
    ) -> None:
        self.max_consecutive = max_consecutive
        self.learner = learner
        self.lr = lr
        self.max_grad_norm = max_grad_norm
        self.run_dir = run_dir
        self.streak = 0  # skipped steps since the last confirmed one
        self.pending = False  # a step was applied and no loss has confirmed it yet

    # -- the decision --------------------------------------------------------------------
    def record(self, skipped: bool) -> bool:
        """Record one step (applied, or skipped for a non-finite loss/gradient).

        Returns:
            True when the previous, unconfirmed step must be rolled back (this step's
            loss, computed with its parameters, was not finite).
        """
        if not skipped:
            if self.pending:  # this finite loss came from the previous step's parameters
                self.streak = 0
            self.pending = True
            return False
        rollback, self.pending = self.pending, False
        self.streak += 1
        return rollback

    def confirm(self, finite: bool) -> bool:
        """The end of an update: whether the last applied step's parameters give finite
        outputs (a forward pass).  Returns True when that step must be rolled back."""
        if not self.pending:
            return False
        if finite:
            self.streak, self.pending = 0, False
            return False
        return self.record(skipped=True)

    @property
    def exhausted(self) -> bool:
        return self.streak >= self.max_consecutive

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The counters a resumed run continues from: ``streak`` and ``pending``."""
        return {"streak": self.streak, "pending": self.pending}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Continue from :meth:`state_dict`'s output (None, from a checkpoint written before
        the streak was saved: no skipped steps in a row)."""
        state = state or {}
        self.streak = int(state.get("streak", 0))
        self.pending = bool(state.get("pending", False))

    # -- the actions ---------------------------------------------------------------------
    def after_step(self, iteration: int) -> bool:
        """Judge the optimizer step the learner just took (or skipped: ``learner.skipped``).

        A skipped step rolls back the unconfirmed one before it, warns, and stops the run
        after ``max_consecutive`` in a row.

        Args:
            iteration: the iteration being trained (1-based), for the messages.

        Returns:
            True when the step was skipped.
        """
        if not self._learner().skipped:
            self.record(skipped=False)
            return False
        self._skipped(iteration, rollback=self.record(skipped=True))
        return True

    def confirm_last_step(self, iteration: int, forward: Callable[[], Any]) -> bool:
        """The end of an update: the last applied step's parameters must give finite outputs.

        Args:
            iteration: the iteration being trained (1-based), for the messages.
            forward: one forward pass with the current parameters (run without gradients,
                only while a step is unconfirmed); every rank calls it.

        Returns:
            True when the outputs were not finite on some rank: the step counts as
            skipped and is rolled back.
        """
        if not self.pending:
            return False
        with torch.no_grad():
            outputs = forward()
        finite = not self._learner().any_rank(not all_finite(outputs))
        rollback = self.confirm(finite)
        if not finite:
            self._skipped(iteration, rollback)
        return not finite

    def checkpoint_allowed(self, iteration: int, *states: Any) -> bool:
        """Whether a checkpoint of ``states`` may be written: every floating-point tensor in
        them is finite on every rank.  Warns (rank 0) when not.

        Args:
            iteration: the checkpoint's iteration, for the message.
            states: the parameters, optimizer state, ... (nested dicts and lists of tensors).
        """
        learner = self._learner()
        if not learner.any_rank(not state_is_finite(*states)):
            return True
        if learner.is_main:  # a checkpoint never holds NaN/inf: resume finds the last finite one
            log.warning(
                f"checkpoint of iteration {iteration} not written: the parameters or "
                f"optimizer state hold non-finite values; the last good checkpoint is "
                f"{self.last_checkpoint() or '(none yet)'}"
            )
        return False

    def last_checkpoint(self) -> str | None:
        """The run's newest checkpoint (None before the first one)."""
        from eqmarl.train.checkpoint import resolve_checkpoint

        if self.run_dir is None:
            return None
        try:
            return str(resolve_checkpoint(self.run_dir))
        except (FileNotFoundError, OSError, ValueError):
            return None

    def _skipped(self, iteration: int, rollback: bool) -> None:
        """A skipped optimizer step: roll back the unconfirmed step before it, warn, and stop
        the run after ``max_consecutive`` in a row."""
        learner = self._learner()
        if rollback:
            learner.rollback()
        if learner.is_main:
            log.warning(
                f"iteration {iteration}: non-finite loss or gradient norm, optimizer step "
                f"skipped{' and the one before rolled back' if rollback else ''} ({self.streak} in a row; the run "
                f"stops at train.max_nonfinite_updates={self.max_consecutive})"
            )
        if self.exhausted:
            raise NonFiniteError(self._stop_message(iteration))

    def _stop_message(self, iteration: int) -> str:
        """Why the run stopped, the likely causes and where the last good checkpoint is."""
        streak, max_grad_norm, last_checkpoint = self.streak, self.max_grad_norm, self.last_checkpoint()
        clip = f"algo.max_grad_norm={max_grad_norm:g}" + (" (clipping off)" if max_grad_norm <= 0 else "")
        where = (
            f"the last good checkpoint is {last_checkpoint}"
            if last_checkpoint
            else "no checkpoint was written before (every checkpoint holds finite values only)"
        )
        return (
            f"training stopped at iteration {iteration}: {streak} optimizer steps in a row had a non-finite loss or "
            f"gradient norm and were skipped (train.max_nonfinite_updates={streak}). Likely causes: a learning rate "
            f"too high (algo.lr={self.lr:g}) or gradient clipping off or too loose ({clip}); start a new run with a "
            f"lower algo.lr and algo.max_grad_norm > 0 (e.g. 0.5). {where[0].upper()}{where[1:]}."
        )

    def _learner(self) -> GuardedLearner:
        if self.learner is None:
            raise RuntimeError("NonFiniteGuard without a learner only counts (record/confirm)")
        return self.learner


def all_finite(tensors: Iterable[Any]) -> bool:
    """True when every floating-point tensor in ``tensors`` is finite (one sync per device)."""
    flags: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            flags.setdefault(t.device, []).append(torch.isfinite(t).all())
    return all(bool(torch.stack(f).all()) for f in flags.values())


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def state_is_finite(*states: Any) -> bool:
    """True when every floating-point tensor nested in ``states`` (dicts, lists) is finite."""
    return all_finite(t for s in states for t in _tensors(s))
