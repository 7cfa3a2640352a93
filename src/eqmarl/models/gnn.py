"""``model.name=gnn``: the invariant graph baseline.

Positions and velocities enter only as plain node features (concatenated to ``h`` by
:class:`~eqmarl.models.message_passing.GraphEncoder`), and messages are computed from
node features alone, so the network is permutation-equivariant but not
rotation-equivariant.  Its layer is :class:`~eqmarl.models.message_passing.MessagePassingLayer`
with no vector channels and no coordinate update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eqmarl.core.env import EnvSpec
from eqmarl.models.message_passing import GraphEncoder, MessagePassingLayer, build_graph_encoder

if TYPE_CHECKING:
    from eqmarl.models.params import ModelParams


class GNNLayer(MessagePassingLayer):
    """The baseline's layer: invariant message passing (all hooks at their defaults)."""


def build_gnn(cfg: ModelParams, spec: EnvSpec, role: str, centralized: bool) -> GraphEncoder:
    """``model.name=gnn``: the invariant baseline (actor and critic; the graph is global,
    so a centralized critic is the same network)."""
    return build_graph_encoder("gnn", GNNLayer, cfg, spec, role, equivariant=False)
