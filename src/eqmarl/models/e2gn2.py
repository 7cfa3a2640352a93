"""E2GN2 encoder (McClellan et al. 2024): EGNN without the early exploration bias.

Only the coordinate update changes (see :class:`E2GN2Layer`); the layer keeps O(2)
equivariance and gives up translation equivariance (the world frame has its origin at
the arena centre, so nothing is lost for MARL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from eqmarl.core.env import EnvSpec
from eqmarl.models.egnn import EGNNLayer
from eqmarl.models.message_passing import GraphEncoder, build_graph_encoder
from eqmarl.models.mlp import make_mlp

if TYPE_CHECKING:
    from eqmarl.models.params import ModelParams

__all__ = ["E2GN2Layer", "build_e2gn2"]

# Xavier gain of phi_u2's last linear map in the inner layers (an O(1), zero-mean gate).
GATE_GAIN = 1.0
# ... and in the last layer (the initial action mean ~ GATE_GAIN_LAST * |u|, near zero).
GATE_GAIN_LAST = 0.01


class E2GN2Layer(EGNNLayer):
    """EGNN layer whose own-vector term is gated by a learned invariant scalar.

    Same edge and node steps as :class:`~eqmarl.models.egnn.EGNNLayer`; the coordinate
    update of channel ``k`` becomes::

        u_i^k' = u_i^k * phi_u2(m_i)^k + C * sum_j sum_l d_ij^l * phi_u(m_ij)^{kl}

    ``phi_u2`` (``H -> H -> K``) ends in a linear map with zero-mean weights and zero
    bias, so its output has zero mean over initializations and ``E[u'] ~ 0`` (the
    paper's Theorem 2): a Gaussian policy whose mean is the agent's ``u^L`` starts
    unbiased instead of pushing every agent away from the origin.  The scale of that
    last map is ``gate_gain``: :func:`build_e2gn2` uses :data:`GATE_GAIN` (an O(1) random
    gate) in the inner layers, which keeps the intermediate vectors at the scale of the
    input, and :data:`GATE_GAIN_LAST` in the last layer, so the initial action mean is
    close to zero in every state, not only on average (as an MLP policy's small last
    layer does).

    Args:
        hidden: width ``H``.
        activation: one of ``tanh, relu, silu, elu``.
        n_channels: number ``K >= 1`` of vector channels.
        update_h: compute ``h'`` (see :class:`~eqmarl.models.message_passing.MessagePassingLayer`).
        update_u: compute ``u'`` (else no ``phi_u`` and no ``phi_u2``).
        gate_gain: xavier gain of ``phi_u2``'s last linear map.
    """

    def __init__(
        self,
        hidden: int,
        activation: str,
        n_channels: int,
        update_h: bool = True,
        update_u: bool = True,
        gate_gain: float = GATE_GAIN,
    ) -> None:
        super().__init__(hidden, activation, n_channels, update_h=update_h, update_u=update_u)
        # phi_u2: m_i -> H -> one scalar per channel
        self.gate_mlp = (
            nn.Sequential(make_mlp([hidden, hidden], activation), nn.Linear(hidden, n_channels)) if update_u else None
        )
        self.reset_gate(gate_gain)

    def reset_gate(self, gain: float) -> None:
        """Re-draw ``phi_u2``'s last linear map: xavier-uniform weights of ``gain``, zero bias."""
        if self.gate_mlp is None:
            return
        out = self.gate_mlp[-1]
        assert isinstance(out, nn.Linear)
        nn.init.xavier_uniform_(out.weight, gain=gain)
        nn.init.zeros_(out.bias)

    def coord_model(self, u: Tensor, agg: Tensor | None, m_i: Tensor, coef: Tensor) -> Tensor:
        """``u_i' = u_i * phi_u2(m_i) + C * agg_i``; ``u, agg: [..., K, 2]``, ``m_i: [..., H]``."""
        if agg is None:
            raise ValueError("E2GN2Layer.coord_model needs the aggregated vector messages")
        if self.gate_mlp is None:
            raise ValueError("this layer was built with update_u=False")
        gate = self.gate_mlp(m_i).unsqueeze(-1)  # [..., K, 1]
        return u * gate + coef * agg


def build_e2gn2(cfg: ModelParams, spec: EnvSpec, role: str, centralized: bool) -> GraphEncoder:
    """``model.name=e2gn2`` (actor: ``u`` is the action mean; critic: value from ``h``;
    the graph is global, so a centralized critic is the same network)."""
    encoder = build_graph_encoder("e2gn2", E2GN2Layer, cfg, spec, role, equivariant=True)
    last = encoder.layers[-1]
    if isinstance(last, E2GN2Layer):
        last.reset_gate(GATE_GAIN_LAST)
    return encoder
