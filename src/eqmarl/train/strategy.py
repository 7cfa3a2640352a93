"""Learner strategies: how a loss becomes a parameter update.

``single`` is one process.  Distributed strategies (ddp, deepspeed) plug in behind the
same three calls; only this module and ``eqmarl.launch`` touch torch.distributed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SingleStrategy:
    """One process: backward, clip the global grad norm, Adam step."""

    rank = 0
    world_size = 1

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer, max_grad_norm: float) -> None:
        self.module = module
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self._params = [p for p in module.parameters() if p.requires_grad]

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def step(self, loss: Tensor) -> Tensor:
        """Apply one update; returns the gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.reduce_gradients()
        if self.max_grad_norm > 0:
            gn = nn.utils.clip_grad_norm_(self._params, self.max_grad_norm, foreach=True)
        else:
            gn = torch.zeros(())
        self.optimizer.step()
        return gn

    def reduce_gradients(self) -> None:
        """Hook for distributed strategies (all-reduce); nothing to do for one process."""

    def all_reduce_sum(self, x: Tensor) -> Tensor:
        """Sum a tensor over ranks (identity here)."""
        return x


def make_strategy(name: str, module: nn.Module, optimizer: torch.optim.Optimizer, max_grad_norm: float):
    """Build the learner strategy named by ``learner.name``."""
    if name == "single":
        return SingleStrategy(module, optimizer, max_grad_norm)
    raise NotImplementedError(
        f"learner.name={name!r} is not available in this build; allowed here: single"
    )
