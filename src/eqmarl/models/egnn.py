"""EGNN encoder (Satorras et al. 2021), O(2)-equivariant, with several vector channels.

See :class:`EGNNLayer` for the update equations.  The encoder's equivariant output at
each agent node (the position channel after the last layer) is the mean of the
continuous 2-D action; its invariant output ``h`` drives discrete logits and values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from eqmarl.core.env import EnvSpec
from eqmarl.models.message_passing import GraphEncoder, MessagePassingLayer, build_graph_encoder, small_linear
from eqmarl.models.mlp import make_mlp

if TYPE_CHECKING:
    from eqmarl.models.params import ModelParams

__all__ = ["EGNNLayer", "build_egnn"]


class EGNNLayer(MessagePassingLayer):
    """E(n)-equivariant layer with ``K`` vector channels ``u^k`` (position, velocity).

    For node ``i`` and its neighbours ``j`` (``C = 1/(M-1)``, ``M`` real nodes)::

        d_ij^k  = u_i^k - u_j^k
        m_ij    = phi_e(h_i, h_j, <d_ij^k, d_ij^l> for k <= l)      edge_model
        m_i     = sum_j m_ij
        u_i^k'  = u_i^k + C * sum_j sum_l d_ij^l * phi_u(m_ij)^{kl}  coord_model
        h_i'    = h_i + phi_h(h_i, m_i)                              node_model

    With one channel this is Satorras' layer (``||u_i - u_j||^2`` is the only
    invariant).  Channels mix only through scalar weights ``phi_u(m_ij)^{kl}``, so every
    channel stays O(2)-equivariant (and translation-equivariant for positions, as the
    velocity channel is translation-invariant).  ``phi_u``'s last layer starts with tiny
    weights (Satorras' init), so at initialization ``u' ~ u``: the "exploration bias"
    that :class:`~eqmarl.models.e2gn2.E2GN2Layer` removes.

    Args:
        hidden: width ``H``.
        activation: one of ``tanh, relu, silu, elu``.
        n_channels: number ``K >= 1`` of vector channels.
        update_h: compute ``h'`` (see :class:`~eqmarl.models.message_passing.MessagePassingLayer`).
        update_u: compute ``u'`` (else no ``phi_u``).
    """

    _triu: Tensor  # [2, K(K+1)/2] upper-triangle indices of the Gram matrix

    def __init__(
        self, hidden: int, activation: str, n_channels: int, update_h: bool = True, update_u: bool = True
    ) -> None:
        if n_channels < 1:
            raise ValueError("an equivariant layer needs at least one vector channel")
        super().__init__(hidden, activation, n_channels, update_h=update_h, update_u=update_u)
        iu = torch.triu_indices(n_channels, n_channels)
        self.register_buffer("_triu", iu, persistent=False)
        # phi_u: m_ij -> H -> K*K channel-mixing scalars
        self.coord_mlp = (
            nn.Sequential(make_mlp([hidden, hidden], activation), small_linear(hidden, n_channels * n_channels))
            if update_u
            else None
        )

    @property
    def n_edge_invariants(self) -> int:
        k = self.n_channels
        return k * (k + 1) // 2

    def edge_invariants(self, d: Tensor) -> Tensor:
        """Gram matrix entries ``<d^k, d^l>`` (``k <= l``): ``[..., K, 2] -> [..., K(K+1)/2]``."""
        # elementwise: a batched 2x2 matmul is slower on CPU for millions of edges
        return (d.index_select(-2, self._triu[0]) * d.index_select(-2, self._triu[1])).sum(-1)

    def coord_message(self, m: Tensor, d: Tensor) -> Tensor:
        """``sum_l d_ij^l * phi_u(m_ij)^{kl}``: ``m [..., H], d [..., K, 2] -> [..., K, 2]``."""
        if self.coord_mlp is None:
            raise ValueError("this layer was built with update_u=False")
        k = self.n_channels
        w = self.coord_mlp(m).unflatten(-1, (k, k))
        return w @ d

    def coord_model(self, u: Tensor, agg: Tensor | None, m_i: Tensor, coef: Tensor) -> Tensor:
        """``u_i' = u_i + C * agg_i``; ``u, agg: [..., K, 2]``, ``coef`` broadcastable."""
        if agg is None:
            raise ValueError("EGNNLayer.coord_model needs the aggregated vector messages")
        return u + coef * agg


def build_egnn(cfg: ModelParams, spec: EnvSpec, role: str, centralized: bool) -> GraphEncoder:
    """``model.name=egnn`` (actor: ``u`` is the action mean; critic: value from ``h``;
    the graph is global, so a centralized critic is the same network)."""
    return build_graph_encoder("egnn", EGNNLayer, cfg, spec, role, equivariant=True)
