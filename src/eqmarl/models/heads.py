"""Heads: encoder features -> action distributions and values.

Invariant features ``h`` drive discrete logits, per-target logits and values;
the equivariant vector ``u`` (from an equivariant encoder) is the mean of a
continuous 2-D action, so the policy rotates with the world.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

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


@runtime_checkable
class ExternalParameters(Protocol):
    """A module whose forward reads parameters outside the forward of the module owning them.

    A learner that shards parameters (DeepSpeed ZeRO-3) gathers a module's parameters
    only while that module runs, so such parameters must be registered with the module
    that reads them.  Models declare them here; the learner calls
    :meth:`zero3_external_parameters` on every submodule that has it and needs no
    knowledge of attribute names.  A parameter read by a module that owns it, inside its
    own forward, needs no declaration.
    """

    def zero3_external_parameters(self) -> list[nn.Parameter]:
        """The parameters this module's forward reads outside their owner's forward."""
        ...


@runtime_checkable
class ActionHead(Protocol):
    """An action head (``features, action_mask -> distribution``), as far as a policy
    must know it besides calling it."""

    def distribution_parameters(self) -> list[nn.Parameter]:
        """Parameters the returned distribution reads after the head's forward returned."""
        ...


class Encoder(nn.Module):
    """Base of every encoder: ``Observation -> ActorFeatures``.

    Attributes:
        out_dim: width of ``h``.
        equivariant: ``u`` is an O(2)-equivariant vector (the continuous action mean).
    """

    out_dim: int
    equivariant: bool = False


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
        self.mean: nn.Linear | None = None if equivariant else _linear(in_dim, action_dim, 0.01)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))

    def forward(self, feats: ActorFeatures, action_mask: Tensor | None = None) -> DiagGaussian:
        if self.equivariant:
            if feats.u is None:
                raise ValueError("an equivariant Gaussian head needs an equivariant encoder (u)")
            mean = feats.u
        else:
            assert self.mean is not None  # built when not equivariant
            mean = self.mean(feats.h)
        return DiagGaussian(mean, self.log_std)

    def distribution_parameters(self) -> list[nn.Parameter]:
        """Parameters the returned distribution reads after :meth:`forward` returned (the
        log-std); the module that uses the distribution declares them
        (:class:`ExternalParameters`)."""
        return [self.log_std]


class CategoricalHead(nn.Module):
    """Discrete actions: logits from invariant features, masked by ``action_mask``."""

    def __init__(self, in_dim: int, n_actions: int) -> None:
        super().__init__()
        self.logits = _linear(in_dim, n_actions, 0.01)

    def forward(self, feats: ActorFeatures, action_mask: Tensor | None = None) -> MaskedCategorical:
        return MaskedCategorical(self.logits(feats.h), action_mask)

    def distribution_parameters(self) -> list[nn.Parameter]:
        """None: the distribution holds only the logits computed in :meth:`forward`."""
        return []


class ValueHead(nn.Module):
    """``h [E, A, H] -> value [E, A]``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.v = _linear(in_dim, 1, 1.0)

    def forward(self, feats: ActorFeatures) -> Tensor:
        return self.v(feats.h).squeeze(-1)


class TargetLogitsHead(nn.Module):
    """Per-target logits read from the target nodes' invariant features.

    ``logit[e, a, t] = w . h_nodes[e, target_nodes[t]] + b`` (SMACv2 attacks: one logit
    per enemy node).  With a shared graph (``h_nodes [E, N, H]``) every agent reads the
    same logits; with per-agent graphs (``h_nodes [E, A, N, H]``) each agent reads its own.
    Invariant (logits are functions of invariant features) and permutation-equivariant
    in the targets.

    Args:
        in_dim: width ``H`` of ``h_nodes``.
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.logit = _linear(in_dim, 1, 0.01)

    def forward(self, feats: ActorFeatures, target_nodes: Tensor, n_agents: int | None = None) -> Tensor:
        """Logits ``[E, A, T]``.

        Args:
            feats: encoder output with ``h_nodes`` ``[E, N, H]`` or ``[E, A, N, H]``.
            target_nodes: ``[T]`` long node indices of the targets.
            n_agents: ``A`` (default: ``feats.h.shape[-2]``), for shared graphs.
        """
        if feats.h_nodes is None:
            raise ValueError("per-target logits need an encoder that returns h_nodes (a graph encoder)")
        logits = self.logit(feats.h_nodes.index_select(-2, target_nodes)).squeeze(-1)  # [E, (A,) T]
        if feats.h_nodes.dim() == 3:
            a = feats.h.shape[-2] if n_agents is None else n_agents
            logits = logits.unsqueeze(1).expand(-1, a, -1)
        return logits


class MoveDirectionMap(nn.Module):
    """Equivariant map from a 2-D vector to the nearest of K discrete move directions.

    The chosen move is the one whose unit direction has the largest dot product with the
    vector; when the vector's norm is below ``threshold`` the no-op move (direction
    ``(0, 0)``) is chosen, if the move set has one.  For any symmetry ``g`` of the move
    set (e.g. 90-degree rotations and reflections of the four compass moves), mapping
    ``g v`` picks ``g`` applied to the move picked for ``v`` (away from ties).

    Args:
        move_directions: ``[(action_index, dx, dy)]`` as in ``EnvSpec.move_directions``.
        threshold: vectors shorter than this map to the no-op.
    """

    action_index: Tensor
    directions: Tensor

    def __init__(self, move_directions: list[tuple[int, float, float]], threshold: float = 0.1) -> None:
        super().__init__()
        if not move_directions:
            raise ValueError("MoveDirectionMap needs move_directions (this env's EnvSpec.move_directions is empty)")
        idx = torch.tensor([int(m[0]) for m in move_directions], dtype=torch.long)
        d = torch.tensor([[float(m[1]), float(m[2])] for m in move_directions], dtype=torch.float64)
        norm = d.norm(dim=-1, keepdim=True)
        is_noop = norm.squeeze(-1) == 0
        if int(is_noop.sum()) > 1:
            raise ValueError("move_directions has more than one no-op (0, 0) entry")
        self.threshold = float(threshold)
        self.register_buffer("action_index", idx[~is_noop], persistent=False)
        self.register_buffer("directions", d[~is_noop] / norm[~is_noop], persistent=False)
        self.noop: int | None = int(idx[is_noop][0]) if bool(is_noop.any()) else None

    def forward(self, vec: Tensor) -> Tensor:
        """``vec [*B, 2] -> action index [*B]`` (long)."""
        score = vec @ self.directions.to(vec.dtype).T  # [*B, K]
        action = self.action_index[score.argmax(dim=-1)]
        if self.noop is not None:
            action = torch.where(vec.norm(dim=-1) < self.threshold, self.noop, action)
        return action
