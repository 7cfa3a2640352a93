"""What a training run does with non-finite numbers (NaN, inf).

* An optimizer step whose loss or gradient norm is not finite on any rank is skipped on
  every rank (the strategy decides it with one collective, so data-parallel ranks stay
  identical), with a warning; ``nonfinite_skips`` counts the skips of each iteration.
* A step is *confirmed* by the next finite loss computed with its parameters.  When the
  next loss is not finite instead, the unconfirmed step is rolled back as well: a step
  that leaves finite but useless parameters (e.g. 1e30 after a huge learning rate) must
  not survive into the next rollout.
* After ``train.max_nonfinite_updates`` skipped steps in a row (with no confirmed step in
  between) the run stops with :class:`NonFiniteError`: what happened, the likely causes
  and the last good checkpoint.
* :func:`state_is_finite` guards every checkpoint: a state with a non-finite tensor is
  never written, so ``resume=`` always finds the last finite one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class NonFiniteError(RuntimeError):
    """The run stopped: too many consecutive updates with a non-finite loss or gradient."""


class NonFiniteGuard:
    """Counts skipped steps and says when an unconfirmed step must be rolled back.

    Args:
        max_consecutive: ``train.max_nonfinite_updates``.
    """

    def __init__(self, max_consecutive: int) -> None:
        self.max_consecutive = max_consecutive
        self.streak = 0  # skipped steps since the last confirmed one
        self.pending = False  # a step was applied and no loss has confirmed it yet

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


def stop_message(streak: int, iteration: int, lr: float, max_grad_norm: float, last_checkpoint: str | None) -> str:
    """Why the run stopped, the likely causes and where the last good checkpoint is."""
    clip = f"algo.max_grad_norm={max_grad_norm:g}" + (" (clipping off)" if max_grad_norm <= 0 else "")
    where = (
        f"the last good checkpoint is {last_checkpoint}"
        if last_checkpoint
        else "no checkpoint was written before (every checkpoint holds finite values only)"
    )
    return (
        f"training stopped at iteration {iteration}: {streak} optimizer steps in a row had a non-finite loss or "
        f"gradient norm and were skipped (train.max_nonfinite_updates={streak}). Likely causes: a learning rate "
        f"too high (algo.lr={lr:g}) or gradient clipping off or too loose ({clip}); start a new run with a lower "
        f"algo.lr and algo.max_grad_norm > 0 (e.g. 0.5). {where[0].upper()}{where[1:]}."
    )
