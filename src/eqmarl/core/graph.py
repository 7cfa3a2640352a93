"""EntityGraph: the input of graph policies.

A batch of entity graphs with a fixed maximum node count ``N`` (padded, see
``node_mask``).  Leading batch shape ``B`` is ``[E]`` when every agent of an env
reads the same (fully observed) graph, or ``[E, A]`` for per-agent ego graphs.

Features are split by how they transform under the world's symmetry group O(2):

* ``h``  ``[*B, N, F]``  invariant node features (entity type, team, health...);
* ``x``  ``[*B, N, 2]``  equivariant positions, world frame, origin at the arena centre;
* ``v``  ``[*B, N, 2]``  equivariant velocities;
* ``node_mask`` ``[*B, N]`` bool, True for real nodes (padding is False);
* ``agent_node`` ``[A]`` long: the node index of each agent (the same for every graph);
* ``edge_rule``: which pairs exchange messages: ``"full"`` (complete graph without
  self-loops over real nodes), or ``"bipartite"`` (see :func:`adjacency`);
* ``neighbors`` / ``neighbor_valid`` ``[*B, N, k]``: optional stored k-nearest-neighbour
  lists (see :mod:`eqmarl.core.knn`): the senders of each node in a sparse graph,
  attached once when the observation is acted on, so the PPO update reuses exactly
  the rollout's graph.

The batched fields are declared with :mod:`eqmarl.core.batched`'s metadata, so :meth:`map`,
:meth:`stack` and :meth:`where` cover every one of them (a new field too); the others
(``agent_node``, ``edge_rule``) are the same for every batch entry and carried over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from eqmarl.core.batched import BATCHED, DERIVED, map_batched, stack_batched, where_batched


@dataclass
class EntityGraph:
    h: Tensor = field(metadata=BATCHED)
    x: Tensor = field(metadata=BATCHED)
    v: Tensor = field(metadata=BATCHED)
    node_mask: Tensor = field(metadata=BATCHED)
    agent_node: Tensor
    edge_rule: str = "full"
    # Optional per-node group id used by ``bipartite``: edges only between nodes of
    # different groups or both in group 0 (allies fully connected, ally-enemy, no enemy-enemy).
    node_group: Tensor | None = field(default=None, metadata=BATCHED)
    # Optional stored kNN graph (see eqmarl.core.knn.knn_neighbors): sender indices and
    # which of them are real, [*B, N, k]; computed from ``x``, so ``where`` drops them
    neighbors: Tensor | None = field(default=None, metadata=DERIVED)
    neighbor_valid: Tensor | None = field(default=None, metadata=DERIVED)

    @property
    def num_nodes(self) -> int:
        return int(self.h.shape[-2])

    def map(self, fn: Callable[[Tensor], Tensor]) -> EntityGraph:
        """Apply ``fn`` to every batched tensor field (not to ``agent_node``)."""
        return map_batched(self, fn)

    @staticmethod
    def stack(graphs: Sequence[EntityGraph]) -> EntityGraph:
        """Stack graphs along a new leading dim (optional fields as present in the first)."""
        return stack_batched(graphs)

    def where(self, cond: Tensor, other: EntityGraph) -> EntityGraph:
        """Per-graph select: ``cond[E]`` True takes ``self``, False ``other``; the stored kNN
        lists are dropped (the positions changed, so they no longer apply)."""
        return where_batched(cond, self, other)

    def with_knn(self, k: int) -> EntityGraph:
        """This graph with its ``k``-nearest-neighbour lists attached (computed from ``x``
        under the edge rule and node mask; kept if already attached with the same ``k``)."""
        from eqmarl.core.knn import knn_neighbors

        if self.neighbors is not None and self.neighbors.shape[-1] == min(k, self.num_nodes - 1):
            return self
        n = self.num_nodes
        lead = self.node_mask.shape[:-1]
        group = None if self.node_group is None else self.node_group.reshape(-1, n)
        nbr, valid = knn_neighbors(
            self.x.reshape(-1, n, self.x.shape[-1]), self.node_mask.reshape(-1, n), k, self.edge_rule, group
        )
        kk = nbr.shape[-1]
        return replace(self, neighbors=nbr.view(*lead, n, kk), neighbor_valid=valid.view(*lead, n, kk))

    def adjacency(self) -> Tensor:
        """Dense boolean adjacency ``[*B, N, N]`` (``adj[..., i, j]``: j sends to i)."""
        m = self.node_mask
        adj = m.unsqueeze(-1) & m.unsqueeze(-2)
        n = self.num_nodes
        adj = adj & ~torch.eye(n, dtype=torch.bool, device=m.device)
        if self.edge_rule == "bipartite":
            if self.node_group is None:
                raise ValueError("edge_rule='bipartite' needs node_group")
            g = self.node_group
            gi, gj = g.unsqueeze(-1), g.unsqueeze(-2)
            adj = adj & ((gi != gj) | ((gi == 0) & (gj == 0)))
        elif self.edge_rule != "full":
            raise ValueError(f"edge_rule={self.edge_rule!r}; allowed: 'full', 'bipartite'")
        return adj
