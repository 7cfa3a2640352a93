"""PPO: clipped surrogate, (optionally clipped) value loss, entropy bonus; value norm.

IPPO and MAPPO share this loss; they differ only in what the critic sees (the
policy's critic encoder), which is the model's business, not the loss's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def normalize_advantages(adv: Tensor, weights: Tensor | None = None) -> Tensor:
    """``(adv - mean) / (std + 1e-8)``; with ``weights`` (0/1) the statistics cover the
    weight-1 samples only (unbiased std, as ``Tensor.std``)."""
    if weights is None:
        return (adv - adv.mean()) / (adv.std() + 1e-8)
    w = weights.to(adv.dtype)
    n = w.sum().clamp_min(2.0)
    mean = (adv * w).sum() / n
    std = (((adv - mean) ** 2 * w).sum() / (n - 1)).sqrt()
    return (adv - mean) / (std + 1e-8)


def ppo_loss(
    logprob: Tensor,
    old_logprob: Tensor,
    advantages: Tensor,
    value: Tensor,
    old_value: Tensor,
    returns: Tensor,
    entropy: Tensor,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
    clip_vloss: bool = False,
    norm_adv: bool = True,
    weights: Tensor | None = None,
) -> dict[str, Tensor]:
    """PPO loss terms (names as in CleanRL's ppo.py).

    All inputs have the same shape (e.g. ``[M, A]``: minibatch x agents); ``value``,
    ``old_value`` and ``returns`` are on the critic's (normalized) scale.

    ``weights`` (same shape, 0 or 1; None: all 1) drops samples from every term, e.g. the
    transitions of a crashed game that must not be learned from.

    Returns:
        dict with ``loss`` (to minimize), ``pg_loss``, ``v_loss``, ``entropy``,
        ``approx_kl`` (the ``(ratio - 1) - log ratio`` estimator), ``clipfrac``.
    """

    def mean(x: Tensor) -> Tensor:
        if weights is None:
            return x.mean()
        w = weights.to(x.dtype)
        return (x * w).sum() / w.sum().clamp_min(1.0)

    if norm_adv:
        advantages = normalize_advantages(advantages, weights)
    logratio = logprob - old_logprob
    ratio = logratio.exp()
    pg_loss = mean(torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)))
    if clip_vloss:
        v_clipped = old_value + (value - old_value).clamp(-clip_coef, clip_coef)
        v_loss = 0.5 * mean(torch.max((value - returns) ** 2, (v_clipped - returns) ** 2))
    else:
        v_loss = 0.5 * mean((value - returns) ** 2)
    ent = mean(entropy)
    loss = pg_loss - ent_coef * ent + vf_coef * v_loss
    with torch.no_grad():
        approx_kl = mean((ratio - 1) - logratio)
        clipfrac = mean(((ratio - 1.0).abs() > clip_coef).float())
    return {
        "loss": loss,
        "pg_loss": pg_loss,
        "v_loss": v_loss,
        "entropy": ent,
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
    }


class ValueNorm(nn.Module):
    """Running mean/variance of value targets (exact, Chan's parallel update, float64).

    The critic predicts ``(return - mean) / std``; :meth:`denormalize` maps back.
    State lives in buffers, so it is saved with ``state_dict``.
    """

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, enabled: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.enabled = enabled
        self.eps = eps
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("var", torch.ones((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        if not self.enabled:
            return
        x = x.detach().double().flatten()
        n = float(x.numel())
        b_mean, b_var = x.mean(), x.var(unbiased=False)
        tot = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta**2 * self.count * n / tot
        self.mean.copy_(self.mean + delta * n / tot)
        self.var.copy_(m2 / tot)
        self.count.copy_(tot)

    def _std(self) -> Tensor:
        return (self.var + self.eps).sqrt()

    def normalize(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        return ((x - self.mean) / self._std()).to(x.dtype)

    def denormalize(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        return (x * self._std() + self.mean).to(x.dtype)
