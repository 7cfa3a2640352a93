"""Minimal action distributions with explicit formulas (no torch.distributions overhead).

Shapes: batch ``[*B]`` (e.g. ``[E, A]``); Gaussian events ``[*B, D]``; categorical
logits ``[*B, K]``.  ``log_prob`` and ``entropy`` return ``[*B]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class DiagGaussian:
    """Diagonal Gaussian; log-probs and entropy summed over the action dims."""

    def __init__(self, mean: Tensor, log_std: Tensor) -> None:
        self.mean = mean
        self.log_std = log_std.expand_as(mean)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, device=self.mean.device, dtype=self.mean.dtype, generator=generator)
        return self.mean + noise * self.log_std.exp()

    def mode(self) -> Tensor:
        return self.mean

    def log_prob(self, action: Tensor) -> Tensor:
        z = (action - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z * z - self.log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self) -> Tensor:
        return (0.5 + _LOG_SQRT_2PI + self.log_std).sum(-1)


class MaskedCategorical:
    """Categorical over logits; actions where ``mask`` is False get probability 0."""

    def __init__(self, logits: Tensor, mask: Tensor | None = None) -> None:
        if mask is not None:
            logits = logits.masked_fill(~mask, -1e9)
        self.logits = logits - logits.logsumexp(-1, keepdim=True)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        probs = self.logits.exp().reshape(-1, self.logits.shape[-1])
        return torch.multinomial(probs, 1, generator=generator).view(self.logits.shape[:-1])

    def mode(self) -> Tensor:
        return self.logits.argmax(-1)

    def log_prob(self, action: Tensor) -> Tensor:
        return self.logits.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        p = self.logits.exp()
        return -(p * self.logits).sum(-1)
