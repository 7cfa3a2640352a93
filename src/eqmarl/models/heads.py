"""Heads: encoder features -> action distributions and values.

Invariant features ``h`` drive discrete logits, per-target logits and values;
the equivariant vector ``u`` (from an equivariant encoder) is the mean of a
continuous 2-D action, so the policy rotates with the world.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from eqmarl.models.distributions import DiagGaussian, MaskedCategorical


class ActorFeatures(NamedTuple):
    """What an encoder returns.

    Attributes:
        h: ``[E, A, H]`` invariant features at each agent.
        u: ``[E, A, 2]`` equivariant vector at each agent, or None (non-equivariant encoders).
        h_nodes: ``[E, N, H]`` (or ``[E, A, N, H]``) invariant features of every node, or None.
    """

    h: Tensor
    u: Tensor | None = None
    h_nodes: Tensor | None = None


def _linear(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    lin = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(lin.weight, gain)
    nn.init.zeros_(lin.bias)
    return lin


class GaussianHead(nn.Module):
    """Continuous actions: Gaussian with a learned, state-independent log-std.

    The mean is the encoder's equivariant vector ``u`` when ``equivariant`` (no layer
    after the encoder), else a linear map of ``h``.
    """

    def __init__(self, in_dim: int, action_dim: int, equivariant: bool, init_log_std: float) -> None:
        super().__init__()
        self.equivariant = equivariant
        self.mean = None if equivariant else _linear(in_dim, action_dim, 0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))

    def forward(self, feats: ActorFeatures, action_mask: Tensor | None = None) -> DiagGaussian:
        if self.equivariant:
            if feats.u is None:
                raise ValueError("an equivariant Gaussian head needs an equivariant encoder (u)")
            mean = feats.u
        else:
            mean = self.mean(feats.h)
        return DiagGaussian(mean, self.log_std)


class CategoricalHead(nn.Module):
    """Discrete actions: logits from invariant features, masked by ``action_mask``."""

    def __init__(self, in_dim: int, n_actions: int) -> None:
        super().__init__()
        self.logits = _linear(in_dim, n_actions, 0.01)

    def forward(self, feats: ActorFeatures, action_mask: Tensor | None = None) -> MaskedCategorical:
        return MaskedCategorical(self.logits(feats.h), action_mask)


class ValueHead(nn.Module):
    """``h [E, A, H] -> value [E, A]``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.v = _linear(in_dim, 1, 1.0)

    def forward(self, feats: ActorFeatures) -> Tensor:
        return self.v(feats.h).squeeze(-1)
