"""Message passing on entity graphs: the layer and the encoder shared by every graph model.

A graph encoder maps an :class:`~eqmarl.core.graph.EntityGraph` to per-agent features
(:class:`~eqmarl.models.heads.ActorFeatures`).  The pieces shared by ``gnn``
(:mod:`eqmarl.models.gnn`), ``egnn`` (:mod:`eqmarl.models.egnn`) and ``e2gn2``
(:mod:`eqmarl.models.e2gn2`) live here:

* :class:`GraphBatch`: an entity graph with its batch dims flattened to ``[B]``, its
  equivariant vectors stacked as channels ``u [B, N, K, 2]`` and its adjacency;
* :class:`MessagePassingLayer`: one message-passing layer with two interchangeable
  implementations (``dense`` batched ``[B, N, N, ...]`` tensors, or ``pyg``:
  torch-geometric ``MessagePassing`` over an edge list), split Satorras-style into
  ``edge_model``, ``coord_model`` and ``node_model``, with hooks that the equivariant
  layers override;
* :class:`GraphEncoder`: input embedding, a stack of layers, and the read-out at the
  agent nodes; :func:`build_graph_encoder` builds it from ``model.*``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from eqmarl.core.env import EnvSpec, Observation
from eqmarl.core.graph import EntityGraph
from eqmarl.models.heads import ActorFeatures, Encoder
from eqmarl.models.mlp import ACTIVATIONS, make_mlp

if TYPE_CHECKING:
    from eqmarl.models.params import ModelParams

GRAPH_BACKENDS = ("dense", "pyg")


# ----------------------------------------------------------------------------- inputs
@dataclass
class GraphBatch:
    """An entity graph flattened to ``B`` graphs, as the layers consume it.

    Attributes:
        h: ``[B, N, F]`` invariant node features (padding rows zeroed).
        u: ``[B, N, K, 2]`` equivariant vector channels (positions, velocities; padding
            rows zeroed); ``K`` may be 0.
        node_mask: ``[B, N]`` bool, True for real nodes.
        adj: ``[B, N, N]`` bool, ``adj[b, i, j]``: node j sends to node i (None for a
            kNN graph, which is given by ``nbr`` instead).
        coef: ``[B]`` the coordinate-update constant ``C = 1 / (M - 1)`` with ``M`` the
            number of real nodes of each graph (``C = 1`` when ``M <= 1``); for a kNN
            graph ``[B, N]``: one over each node's number of senders.
        batch_shape: the graph's original batch shape, ``[E]`` or ``[E, A]``.
        agent_node: ``[A]`` node index of each agent.
        complete: every node is real and every pair of distinct nodes is an edge, so
            the dense path may skip the adjacency masks (a fast path; results equal).
        nbr: ``[B, N, k]`` long, the senders of each node in a kNN graph (None: ``adj``).
        nbr_valid: ``[B, N, k]`` bool, which ``nbr`` entries are edges (None: all).
    """

    h: Tensor
    u: Tensor
    node_mask: Tensor
    adj: Tensor | None
    coef: Tensor
    batch_shape: torch.Size
    agent_node: Tensor
    complete: bool = False
    nbr: Tensor | None = None
    nbr_valid: Tensor | None = None
    _edge_index: Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return int(self.h.shape[1])

    def edge_index(self) -> Tensor:
        """``[2, n_edges]`` (source, target) over the ``B * N`` flattened nodes."""
        if self._edge_index is None:
            if self.nbr is not None:
                from eqmarl.core.knn import knn_edge_index

                valid = self.nbr_valid if self.nbr_valid is not None else torch.ones_like(self.nbr, dtype=torch.bool)
                self._edge_index = knn_edge_index(self.nbr, valid)
            else:
                assert self.adj is not None
                b, i, j = self.adj.nonzero(as_tuple=True)
                n = self.num_nodes
                self._edge_index = torch.stack([b * n + j, b * n + i])
        return self._edge_index

    def coef_at(self, receivers: Tensor | None) -> Tensor:
        """``C`` broadcastable against ``[B, R, K, 2]`` vectors at the receivers."""
        if self.coef.dim() == 1:
            return self.coef.view(-1, 1, 1, 1)
        c = self.coef if receivers is None else self.coef.index_select(1, receivers)
        return c.view(c.shape[0], c.shape[1], 1, 1)

    def node_coef(self) -> Tensor:
        """``C`` per flattened node, ``[B * N, 1, 1]``."""
        if self.coef.dim() == 1:
            return self.coef.repeat_interleave(self.num_nodes).view(-1, 1, 1)
        return self.coef.reshape(-1, 1, 1)


def graph_batch(graph: EntityGraph, use_velocity: bool, dtype: torch.dtype, knn: int = 0) -> GraphBatch:
    """Flatten ``graph`` (batch ``[E]`` or ``[E, A]``) into a :class:`GraphBatch`.

    Args:
        graph: the entity graph.
        use_velocity: stack velocities as a second vector channel after positions.
        dtype: float dtype of the model (features are cast to it).
        knn: ``k > 0``: every node receives from its ``k`` nearest allowed nodes (the
            graph's stored ``neighbors`` when attached, else built here; see
            :mod:`eqmarl.core.knn`); ``0`` or ``k >= N - 1``: the edge rule's full graph.

    Returns:
        The flattened batch; padded nodes' features and vectors are set to zero so that
        garbage (even NaN) in padding cannot leak into real nodes.
    """
    batch_shape = graph.node_mask.shape[:-1]
    if len(batch_shape) not in (1, 2):
        raise ValueError(
            f"EntityGraph batch shape must be [E] or [E, A]; got node_mask of shape {tuple(graph.node_mask.shape)}"
        )
    if len(batch_shape) == 2 and batch_shape[1] != graph.agent_node.shape[0]:
        raise ValueError(
            f"per-agent graphs of batch shape [E, A]={list(batch_shape)} need one agent node "
            f"per agent; agent_node has {graph.agent_node.shape[0]}"
        )
    n = graph.num_nodes
    mask = graph.node_mask.reshape(-1, n)
    keep = mask.unsqueeze(-1)
    h = torch.where(keep, graph.h.reshape(-1, n, graph.h.shape[-1]).to(dtype), 0.0)
    chans = [graph.x] + ([graph.v] if use_velocity else [])
    u = torch.stack([c.reshape(-1, n, 2).to(dtype) for c in chans], dim=2)
    u = torch.where(keep.unsqueeze(-1), u, 0.0)
    if 0 < knn < n - 1:
        graph = graph.with_knn(knn)
        assert graph.neighbors is not None and graph.neighbor_valid is not None
        kk = graph.neighbors.shape[-1]
        nbr, valid = graph.neighbors.reshape(-1, n, kk), graph.neighbor_valid.reshape(-1, n, kk)
        deg = valid.sum(-1).to(dtype)
        coef = 1.0 / deg.clamp_min(1.0)
        all_valid = _all_true(valid)
        return GraphBatch(
            h, u, mask, None, coef, batch_shape, graph.agent_node, False, nbr, None if all_valid else valid
        )
    adj = graph.adjacency().reshape(-1, n, n)
    m = mask.sum(-1).to(dtype)
    coef = 1.0 / (m - 1.0).clamp_min(1.0)
    complete = graph.edge_rule == "full" and _all_true(mask)
    return GraphBatch(h, u, mask, adj, coef, batch_shape, graph.agent_node, complete)


def _all_true(mask: Tensor) -> bool:
    """Whether every entry of ``mask`` is True, for the fast paths that skip masks.

    Under ``torch.compile`` this says False without looking (reading the tensor would be
    a host sync and a graph break): the masked path then runs, whose results are the
    same, as the masks multiply by exactly 1 where every entry is True.
    """
    if torch.compiler.is_compiling():
        return False
    return bool(mask.all())


def observation_graph(obs: Observation) -> EntityGraph:
    """The entity graph of ``obs``; a clear error if the env provides none."""
    if obs.graph is None:
        raise ValueError("graph models need an env that provides an entity graph (Observation.graph is None)")
    return obs.graph


# ----------------------------------------------------------------------------- layers
def small_linear(in_dim: int, out_dim: int, gain: float = 0.001) -> nn.Linear:
    """A bias-free linear layer with tiny weights (Satorras' init of the coordinate MLP)."""
    lin = nn.Linear(in_dim, out_dim, bias=False)
    nn.init.xavier_uniform_(lin.weight, gain=gain)
    return lin


def _sender_index(n: int, receivers: Tensor | None, device: torch.device) -> Tensor:
    """``[R, N - 1]``: for each receiver, every other node (ascending), its senders in a
    complete graph without self-loops.

    Args:
        n: nodes per graph.
        receivers: ``[R]`` receiving node indices (None: all ``n`` nodes).
        device: where the index lives.
    """
    recv = torch.arange(n, device=device) if receivers is None else receivers.to(device)
    j = torch.arange(n - 1, device=device)
    # the nodes after the receiver move up by one: no boolean mask, so no data-dependent shape
    return j + (j >= recv.unsqueeze(1)).to(j.dtype)


class MessagePassingLayer(MessagePassing):
    """Invariant message passing; the base of the ``gnn``, ``egnn`` and ``e2gn2`` layers.

    Update, for node ``i`` and its neighbours ``j`` (``adj[i, j]``)::

        m_ij = phi_e(h_i, h_j [, inv_ij])       edge_model
        m_i  = sum_j m_ij
        u_i' = coord_model(...)                 (identity here; see EGNNLayer)
        h_i' = h_i + phi_h(h_i, m_i)            node_model

    ``phi_e``'s first linear map is applied per node (``W_a h_i + W_b h_j``) before
    broadcasting over edges, which is exact and saves one ``[edges, 2H]`` tensor.

    Two implementations share the parameters: :meth:`forward_dense` (batched
    ``[B, N, N - 1, H]`` edge tensors, fast for small complete graphs) and
    :meth:`forward_pyg` (torch-geometric message passing over ``GraphBatch.edge_index()``).
    Both can restrict the receivers (``forward(..., receivers=)``) when only some nodes'
    outputs are read.

    The last layer of an encoder may skip an update whose result nobody reads
    (``update_h=False`` in a continuous actor whose action mean is ``u``;
    ``update_u=False`` in a critic): the skipped step has no parameters, so every
    parameter receives a gradient (as DDP expects) and no work is wasted.

    Args:
        hidden: width ``H`` of ``h`` and of the messages.
        activation: one of ``tanh, relu, silu, elu``.
        n_channels: number ``K`` of equivariant vector channels (0 for the baseline).
        update_h: compute ``h'`` (else ``h`` passes through).
        update_u: compute ``u'`` (else ``u`` passes through; no effect without channels).
    """

    def __init__(
        self, hidden: int, activation: str, n_channels: int = 0, update_h: bool = True, update_u: bool = True
    ) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.hidden = hidden
        self.n_channels = n_channels
        self.update_h = update_h
        self.update_u = update_u and n_channels > 0
        n_inv = self.n_edge_invariants
        # phi_e: [h_i, h_j, inv_ij] -> H -> H, activation after both layers
        self.edge_in = nn.Linear(2 * hidden + n_inv, hidden)
        self.edge_out = make_mlp([hidden, hidden], activation)
        self.edge_act = ACTIVATIONS[activation]()
        # phi_h: [h_i, m_i] -> H -> H (residual)
        self.node_mlp = make_mlp([2 * hidden, hidden, hidden], activation, last_activation=False) if update_h else None

    def zero3_external_parameters(self) -> list[nn.Parameter]:
        """``phi_e``'s first linear map: :meth:`node_projections` and :meth:`edge_mlp` read
        ``edge_in``'s weight and bias directly, never calling it
        (:class:`~eqmarl.models.heads.ExternalParameters`)."""
        return list(self.edge_in.parameters())

    # -- hooks the equivariant layers override -----------------------------------------
    @property
    def n_edge_invariants(self) -> int:
        """Number of invariant edge scalars fed to ``phi_e`` (none for the baseline)."""
        return 0

    def edge_invariants(self, d: Tensor) -> Tensor | None:
        """Invariant scalars of the relative vectors ``d [..., K, 2]`` -> ``[..., n_inv]``."""
        return None

    def coord_message(self, m: Tensor, d: Tensor) -> Tensor | None:
        """Per-edge vector message ``[..., K, 2]`` (None: no coordinate update)."""
        return None

    def coord_model(self, u: Tensor, agg: Tensor | None, m_i: Tensor, coef: Tensor) -> Tensor:
        """New vectors ``u' [..., K, 2]`` (identity here)."""
        return u

    # -- the shared steps -------------------------------------------------------------
    def node_projections(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``phi_e``'s first layer on the receiver part (with the bias) and the sender part.

        Returns:
            ``(a, b)``, each ``[..., H]``: ``a = W_a h + bias``, ``b = W_b h``.
        """
        w = self.edge_in.weight
        hd = self.hidden
        return nn.functional.linear(h, w[:, :hd], self.edge_in.bias), nn.functional.linear(h, w[:, hd : 2 * hd])

    def edge_model(self, a_i: Tensor, b_j: Tensor, d: Tensor | None) -> Tensor:
        """``m_ij = phi_e(h_i, h_j, inv(d_ij))``.

        Args:
            a_i: ``[..., H]`` receiver projection with bias (broadcastable).
            b_j: ``[..., H]`` sender projection (broadcastable).
            d: ``[..., K, 2]`` relative vectors ``u_i - u_j`` or None.

        Returns:
            ``[..., H]`` messages.
        """
        return self.edge_mlp(a_i + b_j, d)

    def edge_mlp(self, pre: Tensor, d: Tensor | None) -> Tensor:
        """The rest of ``phi_e`` after its node projections: ``pre [..., H] = a_i + b_j``."""
        inv = None if d is None else self.edge_invariants(d)
        if inv is not None:
            # pre + inv @ W_inv^T in one pass over the edge tensor
            w_inv = self.edge_in.weight[:, 2 * self.hidden :]
            flat = torch.addmm(pre.reshape(-1, self.hidden), inv.reshape(-1, inv.shape[-1]), w_inv.T)
            pre = flat.view(pre.shape)
        return self.edge_out(self.edge_act(pre))

    def node_model(self, h: Tensor, m_i: Tensor) -> Tensor:
        """``h_i' = h_i + phi_h(h_i, m_i)``; ``h, m_i: [..., H]`` (``h`` if not ``update_h``)."""
        if self.node_mlp is None:
            return h
        return h + self.node_mlp(torch.cat([h, m_i], dim=-1))

    # -- implementations --------------------------------------------------------------
    def forward(
        self, h: Tensor, u: Tensor, g: GraphBatch, backend: str = "dense", receivers: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One layer.

        Args:
            h: ``[B, N, H]`` invariant features.
            u: ``[B, N, K, 2]`` vector channels.
            g: the graph batch (mask, adjacency, C).
            backend: ``dense`` or ``pyg``.
            receivers: ``[R]`` node indices whose outputs are wanted (the same in every
                graph; None: all nodes).  Messages are computed only towards these
                nodes, e.g. the agents in the last layer of an actor.

        Returns:
            ``(h', u')`` at the receivers: ``[B, R, H]`` and ``[B, R, K, 2]`` (``R = N``
            when ``receivers`` is None).
        """
        if backend == "dense":
            return self.forward_dense(h, u, g, receivers)
        if backend == "pyg":
            return self.forward_pyg(h, u, g, receivers)
        raise ValueError(f"model.graph_backend={backend!r}; allowed: {', '.join(GRAPH_BACKENDS)}")

    def forward_dense(
        self, h: Tensor, u: Tensor, g: GraphBatch, receivers: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Dense batched implementation (see :meth:`forward`).

        Edges are laid out as ``[B, R, N - 1]``: for each receiver every other node, so no
        work is spent on self pairs; the adjacency masks are skipped for complete graphs
        (``g.complete``).  ``phi_e``'s first layer is applied per node, then gathered.
        """
        bsz, n, hd = h.shape
        k = self.n_channels
        a, b = self.node_projections(h)  # [B, N, H]
        h_r, u_r, a_r = h, u, a
        if receivers is not None:
            h_r, u_r, a_r = h.index_select(1, receivers), u.index_select(1, receivers), a.index_select(1, receivers)
        r = h_r.shape[1]
        adj = None
        if g.nbr is None:
            senders = _sender_index(n, receivers, h.device)  # [R, N - 1]
            s = n - 1
            flat_senders = senders.flatten()

            def gather(t: Tensor) -> Tensor:  # [B, N, ...] -> the senders' rows [B, R, S, ...]
                return t.index_select(1, flat_senders).view(bsz, r, s, *t.shape[2:])

            if not g.complete:
                assert g.adj is not None
                adj_r = g.adj if receivers is None else g.adj.index_select(1, receivers)
                adj = adj_r.gather(2, senders.expand(bsz, r, n - 1)).to(h.dtype).view(bsz, -1, 1)  # [B, P, 1]
        else:  # kNN: per-graph senders [B, R, k], gathered from the flattened nodes
            nbr = g.nbr if receivers is None else g.nbr.index_select(1, receivers)
            s = nbr.shape[2]
            flat_idx = (nbr + (torch.arange(bsz, device=h.device) * n).view(bsz, 1, 1)).flatten()

            def gather(t: Tensor) -> Tensor:
                return t.reshape(bsz * n, *t.shape[2:]).index_select(0, flat_idx).view(bsz, r, s, *t.shape[2:])

            if g.nbr_valid is not None:
                valid = g.nbr_valid if receivers is None else g.nbr_valid.index_select(1, receivers)
                adj = valid.to(h.dtype).view(bsz, -1, 1)
        # pre_ij = a_i + b_j over the P = R S pairs: [B, R, S, H] viewed as [B, P, H]
        pre = (gather(b) + a_r.unsqueeze(2)).view(bsz, -1, hd)
        d = None
        if k:
            d = (u_r.unsqueeze(2) - gather(u)).view(bsz, -1, k, 2)  # [B, P, K, 2]
        m = self.edge_mlp(pre, d)  # [B, P, H]
        if adj is not None:
            m = m * adj
        m_i = m.view(bsz, r, s, hd).sum(2)
        u_new = u_r
        if self.update_u and d is not None:
            cm = self.coord_message(m, d)
            agg = None
            if cm is not None:
                if adj is not None:
                    cm = cm * adj.unsqueeze(-1)
                agg = cm.view(bsz, r, s, k, 2).sum(2)  # [B, R, K, 2]
            u_new = self.coord_model(u_r, agg, m_i, g.coef_at(receivers))
        return self.node_model(h_r, m_i), u_new

    def forward_pyg(
        self, h: Tensor, u: Tensor, g: GraphBatch, receivers: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """torch-geometric implementation over ``g.edge_index()`` (see :meth:`forward`)."""
        bsz, n, hd = h.shape
        k = self.n_channels
        hf = h.reshape(bsz * n, hd)
        uf = u.reshape(bsz * n, k, 2)
        a, b = self.node_projections(hf)
        edge_index = g.edge_index()
        if receivers is not None:
            edge_index = edge_index[:, torch.isin(edge_index[1] % n, receivers)]
        out = self.propagate(edge_index, a=a, b=b, u=uf, size=(bsz * n, bsz * n))
        m_i = out[:, :hd]
        u_new = uf
        if self.update_u:
            agg = out[:, hd:].reshape(bsz * n, k, 2) if out.shape[1] > hd else None
            u_new = self.coord_model(uf, agg, m_i, g.node_coef())
        h_new = self.node_model(hf, m_i).view(bsz, n, hd)
        u_new = u_new.reshape(bsz, n, k, 2)
        if receivers is not None:
            h_new, u_new = h_new.index_select(1, receivers), u_new.index_select(1, receivers)
        return h_new, u_new

    def message(self, a_i: Tensor, b_j: Tensor, u_i: Tensor, u_j: Tensor) -> Tensor:
        """PyG message: ``[n_edges, H (+ K*2)]``: ``m_ij`` and the vector message."""
        d = u_i - u_j if self.n_channels else None
        m = self.edge_model(a_i, b_j, d)
        if d is None or not self.update_u:
            return m
        cm = self.coord_message(m, d)
        if cm is None:
            return m
        return torch.cat([m, cm.flatten(1)], dim=1)


# (hidden, activation, n_channels, update_h=..., update_u=...) -> layer
LayerFactory = Callable[..., MessagePassingLayer]


# ---------------------------------------------------------------------------- encoder
class GraphEncoder(Encoder):
    """``Observation -> ActorFeatures`` through a stack of message-passing layers.

    ``h^0 = W_in h`` (equivariant models) or ``W_in [h, x, v]`` (the ``gnn`` baseline:
    vectors as plain features); ``u^0 = (x, v)`` channels; then ``layers`` layers;
    read-out at the agent nodes.  No layer follows the last message-passing layer, so
    one network serves any number of agents and entities.

    Args:
        layer_factory: ``(hidden, activation, n_channels, update_h=, update_u=) -> layer``.
        node_feat_dim: invariant node feature size ``F`` of the graph.
        hidden: width ``H``.
        layers: number of message-passing layers.
        activation: one of ``tanh, relu, silu, elu``.
        backend: ``dense`` or ``pyg``.
        use_velocity: velocities as a second vector channel (or feature, for ``gnn``).
        equivariant: the layers carry equivariant channels; ``u`` is returned (the first
            channel, positions, at the agent nodes after the last layer).
        readout: what the last layer computes: ``both``, ``h`` (no final vector update,
            ``u`` is None), ``h_agents`` (critics: as ``h``, but with a shared graph the
            last layer sends messages to the agent nodes only and ``h_nodes`` is None)
            or ``u`` (continuous equivariant actors: no final ``h`` update; ``h`` is
            then the previous layer's).
        knn: ``k > 0``: sparse graphs, each node receiving from its ``k`` nearest
            allowed nodes (``model.knn``); 0: the edge rule's full graph.
        activation_checkpointing: keep only each layer's inputs for backward and
            recompute its edge activations (``model.activation_checkpointing``).
    """

    def __init__(
        self,
        layer_factory: LayerFactory,
        node_feat_dim: int,
        hidden: int,
        layers: int,
        activation: str,
        backend: str,
        use_velocity: bool,
        equivariant: bool,
        readout: str = "both",
        knn: int = 0,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if knn < 0:
            raise ValueError(f"model.knn={knn}; allowed: 0 (complete graph) or k >= 1")
        self.knn = knn
        self.activation_checkpointing = activation_checkpointing
        if readout not in ("both", "h", "h_agents", "u"):
            raise ValueError(f"readout={readout!r}; allowed: both, h, h_agents, u")
        if readout == "u" and not equivariant:
            raise ValueError("readout='u' needs an equivariant encoder")
        if backend not in GRAPH_BACKENDS:
            raise ValueError(f"model.graph_backend={backend!r}; allowed: {', '.join(GRAPH_BACKENDS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        if layers < 1:
            raise ValueError(f"model.layers={layers}; graph models need at least 1 layer")
        self.backend = backend
        self.use_velocity = use_velocity
        self.equivariant = equivariant
        self.out_dim = hidden
        n_vec = 2 if use_velocity else 1
        self.n_channels = n_vec if equivariant else 0
        in_dim = node_feat_dim if equivariant else node_feat_dim + 2 * n_vec
        self.embed = nn.Linear(in_dim, hidden)
        self.returns_u = equivariant and readout in ("both", "u")
        self.readout = readout
        self.layers = nn.ModuleList(
            [
                layer_factory(
                    hidden,
                    activation,
                    self.n_channels,
                    update_h=i < layers - 1 or readout != "u",
                    update_u=i < layers - 1 or readout in ("both", "u"),
                )
                for i in range(layers)
            ]
        )

    def forward(self, obs: Observation) -> ActorFeatures:
        """Encode ``obs.graph``.

        Returns:
            ``ActorFeatures(h [*B', A, H], u [*B', A, 2] or None, h_nodes [*B, N, H])``
            where ``B`` is the graph's batch shape (``[E]`` or ``[E, A]``) and ``B'`` is
            ``[E]`` in both cases.
        """
        graph = observation_graph(obs)
        dtype = self.embed.weight.dtype
        g = graph_batch(graph, self.use_velocity, dtype, self.knn)
        if self.equivariant:
            h = self.embed(g.h)
            u = g.u
        else:
            feats = torch.cat([g.h, g.u.flatten(2)], dim=-1)
            h = self.embed(feats)
            u = g.u[:, :, :0]
        agent = g.agent_node
        shared = len(g.batch_shape) == 1
        u_at_agents = None  # [E, A, 2] when the last layer computed u only at the agents
        h_at_agents = None  # [E, A, H] when the last layer computed h only at the agents
        ckpt = self.activation_checkpointing and torch.is_grad_enabled() and self.training

        def run(layer: nn.Module, h: Tensor, u: Tensor, receivers: Tensor | None = None) -> tuple[Tensor, Tensor]:
            if ckpt:  # non-reentrant: safe with ZeRO and with parameters used more than once
                from torch.utils.checkpoint import checkpoint

                return checkpoint(layer, h, u, g, self.backend, receivers, use_reentrant=False)
            return layer(h, u, g, self.backend, receivers)

        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            if last and shared and self.returns_u and not layer.update_h:
                # only the agents' vectors are read and h is not updated: send messages
                # to the agent nodes only (e.g. 3 of 6 receivers in simple_spread)
                _, u_last = run(layer, h, u, agent)
                u_at_agents = u_last[:, :, 0]
            elif last and shared and self.readout == "h_agents":
                # a critic reads h at the agents only: the same saving for h
                h_at_agents, _ = run(layer, h, u, agent)
            else:
                h, u = run(layer, h, u)
        if h_at_agents is not None:
            return ActorFeatures(h=h_at_agents, u=None, h_nodes=None)
        keep = g.node_mask.unsqueeze(-1)
        h = torch.where(keep, h, 0.0)
        n, hd = g.num_nodes, h.shape[-1]
        h_nodes = h.view(*g.batch_shape, n, hd)
        pos = u[:, :, 0] if self.returns_u and u_at_agents is None else None  # [B, N, 2]
        if shared:
            h_agent = h_nodes[:, agent]
            u_agent = u_at_agents if pos is None else pos[:, agent]
        else:
            e, a = g.batch_shape
            ar = torch.arange(a, device=h.device)
            h_agent = h_nodes[:, ar, agent]
            u_agent = None if pos is None else pos.view(e, a, n, 2)[:, ar, agent]
        return ActorFeatures(h=h_agent, u=u_agent, h_nodes=h_nodes)


def graph_readout(spec: EnvSpec, role: str, equivariant: bool) -> str:
    """What the last layer must compute for :class:`~eqmarl.models.policy.Policy`'s heads.

    ``u`` for continuous equivariant actors (the Gaussian mean is ``u``), ``h_agents``
    for critics (value from ``h`` at the agent nodes), else ``h`` (discrete actors:
    logits from ``h``; per-target logits read ``h`` at every node).  A head that reads
    both (e.g. a move vector mapped by
    :class:`~eqmarl.models.heads.MoveDirectionMap` plus attack logits) needs ``both``.
    """
    if role == "actor" and equivariant and spec.action_type == "continuous":
        return "u"
    if role == "actor" and equivariant and spec.action_type == "mixed":
        return "both"  # SMACv2: move mean from u, choice from h, target logits from every node's h
    return "h_agents" if role == "critic" else "h"


def check_graph_spec(name: str, spec: EnvSpec, role: str, equivariant: bool) -> None:
    """Errors for specs a graph model cannot serve (no graph; non-2-D continuous actions)."""
    if spec.node_feat_dim <= 0:
        raise ValueError(
            f"model.name={name} needs an env that provides an entity graph "
            f"(this env's spec has node_feat_dim=0); use model.name=mlp"
        )
    if role not in ("actor", "critic"):
        raise ValueError(f"role={role!r}; allowed: actor, critic")
    if equivariant and role == "actor" and spec.action_type == "continuous" and spec.action_dim != 2:
        raise ValueError(
            f"model.name={name}: the equivariant action mean is a 2-D vector; this env has "
            f"continuous action_dim={spec.action_dim}"
        )


def build_graph_encoder(
    name: str, layer_factory: LayerFactory, cfg: ModelParams, spec: EnvSpec, role: str, equivariant: bool
) -> GraphEncoder:
    """The encoder of ``model.name=<name>`` for ``role`` from ``model.*`` (width, depth,
    activation, backend, velocity channel), checked against the env's spec."""
    check_graph_spec(name, spec, role, equivariant=equivariant)
    return GraphEncoder(
        layer_factory,
        spec.node_feat_dim,
        cfg.hidden,
        cfg.layers,
        cfg.activation,
        cfg.graph_backend,
        cfg.use_velocity,
        equivariant=equivariant,
        readout=graph_readout(spec, role, equivariant=equivariant),
        knn=cfg.knn,
        activation_checkpointing=cfg.activation_checkpointing,
    )
