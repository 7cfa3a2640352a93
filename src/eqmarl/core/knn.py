"""k-nearest-neighbour graphs over entity positions, in pure torch.

``model.knn=k`` replaces the complete graph (``N (N - 1)`` edges per graph) by one in
which every node receives messages from its ``k`` nearest nodes (``N k`` edges), among
the nodes the env's edge rule and node mask allow.  torch-geometric's ``knn_graph``
needs pyg-lib (not installable here), so the graph is built with:

* exact pairwise differences ``|x_i - x_j|^2 = dx^2 + dy^2`` (no ``|a|^2 + |b|^2 - 2ab``
  matrix-product form, which is not translation-invariant in float arithmetic);
* an exact integer key per pair, (float32 distance bits, node index), so ties at the
  k-th distance go to the lower node index, the same on every call, batch size and
  chunking (``torch.topk`` on the distances alone gives no such guarantee);
* chunks over graphs and receiver rows, so building it never holds more than
  ``chunk_elems`` pairwise distances at once (never the ``B x N x N`` matrix of a
  large batch).

Each pair's squared distance is computed by the same elementwise ops whatever the
chunking or batch, so a minibatch of stored observations gets bitwise the graph its
rollout step got; the trainer also stores the rollout's neighbour lists with the
observations (``EntityGraph.neighbors``) so the update never rebuilds them.
"""

from __future__ import annotations

import torch
from torch import Tensor

# pairwise distances held at once while building a graph (float32: 64 MiB)
DEFAULT_CHUNK_ELEMS = 1 << 24
_INDEX_MASK = (1 << 32) - 1
_INF_BITS = 0x7F800000  # float32 +inf


def _order_key(d2: Tensor) -> Tensor:
    """``[..., N]`` int64 keys ordering pairs by (squared distance, sender index) exactly.

    Squared distances are rounded to float32 (both rollout and update use the same
    rounding) and read as their bit patterns, which order non-negative floats like the
    floats themselves; the sender index fills the low 32 bits.
    """
    bits = d2.float().contiguous().view(torch.int32).to(torch.int64)
    idx = torch.arange(d2.shape[-1], device=d2.device, dtype=torch.int64)
    return (bits << 32) | idx


def allowed_pairs(node_mask: Tensor, rows: Tensor, edge_rule: str = "full", node_group: Tensor | None = None) -> Tensor:
    """``[B, R, N]`` bool: may node ``j`` send to receiver ``rows[r]``?

    The rule of :meth:`eqmarl.core.graph.EntityGraph.adjacency` for a block of receivers:
    both nodes real, no self-loops, and for ``bipartite`` no edge between two nodes of
    the same non-zero group.

    Args:
        node_mask: ``[B, N]`` bool, True for real nodes.
        rows: ``[R]`` long receiver indices.
        edge_rule: ``full`` or ``bipartite``.
        node_group: ``[B, N]`` group ids (``bipartite`` only).
    """
    n = node_mask.shape[-1]
    mi = node_mask.index_select(1, rows).unsqueeze(-1)
    ok = mi & node_mask.unsqueeze(1)
    ok = ok & (rows.unsqueeze(1) != torch.arange(n, device=rows.device)).unsqueeze(0)
    if edge_rule == "bipartite":
        if node_group is None:
            raise ValueError("edge_rule='bipartite' needs node_group")
        gi = node_group.index_select(1, rows).unsqueeze(-1)
        gj = node_group.unsqueeze(1)
        ok = ok & ((gi != gj) | ((gi == 0) & (gj == 0)))
    elif edge_rule != "full":
        raise ValueError(f"edge_rule={edge_rule!r}; allowed: 'full', 'bipartite'")
    return ok


def squared_distances(x: Tensor, rows: Tensor) -> Tensor:
    """``[B, R, N]`` exact ``|x_i - x_j|^2`` for receivers ``i in rows`` (``x: [B, N, D]``)."""
    diff = x.index_select(1, rows).unsqueeze(2) - x.unsqueeze(1)  # [B, R, N, D]
    d2 = diff[..., 0] * diff[..., 0]
    for c in range(1, x.shape[-1]):
        d2 = d2 + diff[..., c] * diff[..., c]
    return d2


@torch.no_grad()
def knn_neighbors(
    x: Tensor,
    node_mask: Tensor,
    k: int,
    edge_rule: str = "full",
    node_group: Tensor | None = None,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest allowed senders of every node.

    Args:
        x: ``[B, N, D]`` positions.
        node_mask: ``[B, N]`` bool, True for real nodes.
        k: neighbours per node (``>= 1``); at most ``N - 1`` are kept.
        edge_rule: ``full`` or ``bipartite`` (see :func:`allowed_pairs`).
        node_group: ``[B, N]`` group ids for ``bipartite``.
        chunk_elems: most pairwise distances computed at once.

    Returns:
        ``(nbr, valid)``: ``nbr [B, N, k']`` long sender indices ordered by (distance,
        index), ``k' = min(k, N - 1)``; ``valid [B, N, k']`` bool, False where a node has
        fewer than ``k'`` allowed senders (and for every slot of a padded node).
    """
    if k < 1:
        raise ValueError(f"model.knn={k}; a kNN graph needs k >= 1 (0 means the complete graph)")
    bsz, n = node_mask.shape
    kk = min(k, n - 1)
    device = x.device
    nbr = torch.zeros(bsz, n, kk, dtype=torch.long, device=device)
    valid = torch.zeros(bsz, n, kk, dtype=torch.bool, device=device)
    if kk == 0:
        return nbr, valid
    rows_per = max(1, min(n, chunk_elems // max(n, 1)))
    graphs_per = max(1, chunk_elems // max(rows_per * n, 1))
    for b0 in range(0, bsz, graphs_per):
        b1 = min(bsz, b0 + graphs_per)
        xb, mb = x[b0:b1], node_mask[b0:b1]
        gb = None if node_group is None else node_group[b0:b1]
        for r0 in range(0, n, rows_per):
            rows = torch.arange(r0, min(n, r0 + rows_per), device=device)
            d2 = squared_distances(xb, rows)
            ok = allowed_pairs(mb, rows, edge_rule, gb)
            d2 = torch.where(ok, d2, torch.full_like(d2, float("inf")))
            # ties go to the lower sender index: one exact integer key per pair,
            # (distance bits, index), so the k smallest keys are unique (no tie for topk)
            key = _order_key(d2)
            top = torch.topk(key, kk, dim=-1, largest=False, sorted=True).values
            nbr[b0:b1, rows] = top & _INDEX_MASK
            valid[b0:b1, rows] = (top >> 32) < _INF_BITS
    nbr = torch.where(valid, nbr, torch.zeros_like(nbr))
    return nbr, valid


def knn_edge_index(nbr: Tensor, valid: Tensor) -> Tensor:
    """``[2, n_edges]`` (source, target) over the ``B * N`` flattened nodes of a kNN graph."""
    bsz, n, kk = nbr.shape
    base = (torch.arange(bsz, device=nbr.device) * n).view(bsz, 1, 1)
    src = (nbr + base).expand(bsz, n, kk)
    dst = (torch.arange(n, device=nbr.device).view(1, n, 1) + base).expand(bsz, n, kk)
    return torch.stack([src[valid], dst[valid]])


def brute_force_knn(x: Tensor, adj: Tensor, k: int) -> list[list[list[int]]]:
    """Reference: per graph and node, the ``k`` nearest allowed senders by a Python sort on
    ``(squared distance, index)`` (float64).  For tests: ``O(B N^2 log N)`` Python.

    Args:
        x: ``[B, N, D]`` positions.
        adj: ``[B, N, N]`` bool, ``adj[b, i, j]``: j may send to i.
        k: neighbours per node.
    """
    out = []
    xd = x.double().tolist()
    for b in range(x.shape[0]):
        graph = []
        for i in range(x.shape[1]):
            cand = [
                (sum((xd[b][i][c] - xd[b][j][c]) ** 2 for c in range(x.shape[2])), j)
                for j in range(x.shape[1])
                if bool(adj[b, i, j])
            ]
            graph.append([j for _, j in sorted(cand)[:k]])
        out.append(graph)
    return out
