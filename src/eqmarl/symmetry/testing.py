"""Equivariance as a test: one helper for every model and wrapper (e3nn-style).

:func:`assert_equivariant` draws a random element ``g`` of O(2) (a rotation, and with
probability 1/2 or on request a reflection), applies it to the equivariant inputs of an
:class:`~eqmarl.core.env.Observation` (the entity graph's positions ``x`` and
velocities ``v``; optionally the flat observation, read as consecutive 2-D vectors),
runs the function on both observations and checks that

* ``"equivariant"`` outputs (last dim 2) rotate: ``f(g . obs) = f(obs) @ g.T``;
* ``"invariant"`` outputs are unchanged: ``f(g . obs) = f(obs)``.

:func:`assert_permutation_equivariant` does the same for a random relabelling of the
graph's nodes that maps agents to agents and the other entities among themselves:
agent-indexed outputs are permuted like the agents, node-indexed outputs like the
nodes, invariant outputs are unchanged.

Both return the measured errors when the check passes and raise
:class:`EquivarianceError` when it fails, so the same helper shows that a model is
*not* equivariant (``pytest.raises(EquivarianceError)``).  The error of an output is
``max |actual - expected| / max(1, max |expected|)``; defaults: 1e-9 in float64,
1e-4 in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

import torch
from torch import Tensor

from eqmarl.core.env import Observation
from eqmarl.core.graph import EntityGraph

OutputFn = Callable[[Observation], Mapping[str, Tensor]]
ObsTransform = Callable[[Observation, Tensor], Observation]

ROTATION_KINDS = ("equivariant", "invariant")
PERMUTATION_KINDS = ("agent", "node", "invariant")


class EquivarianceError(AssertionError):
    """An output does not transform as declared (the message names it and the error)."""


def default_tolerance(dtype: torch.dtype) -> float:
    """1e-9 for float64, 1e-4 for float32 (and 1e-2 for half types)."""
    if dtype == torch.float64:
        return 1e-9
    if dtype == torch.float32:
        return 1e-4
    return 1e-2


def random_o2(
    reflection: bool | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """A random element of O(2) as a ``[2, 2]`` orthogonal matrix.

    Args:
        reflection: True: a reflection (det -1); False: a rotation; None: either, with
            probability 1/2.
        generator: random generator (angle and coin).
        dtype: float dtype of the matrix.
        device: device of the matrix.

    Returns:
        ``g [2, 2]``; a vector ``p`` (row) maps to ``p @ g.T``.
    """
    angle = float(torch.rand((), generator=generator, dtype=torch.float64)) * 2 * math.pi
    if reflection is None:
        reflection = bool(torch.rand((), generator=generator) < 0.5)
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    if reflection:
        rot = rot @ torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    return rot.to(dtype=dtype, device=device)


def _apply(vectors: Tensor, g: Tensor) -> Tensor:
    """``[..., 2] -> [..., 2]``: every row vector transformed by ``g``."""
    return vectors @ g.to(vectors.dtype).T


def rotate_graph(graph: EntityGraph, g: Tensor) -> EntityGraph:
    """The graph with positions ``x`` and velocities ``v`` transformed by ``g [2, 2]``."""
    return replace(graph, x=_apply(graph.x, g), v=_apply(graph.v, g))


def rotate_observation(obs: Observation, g: Tensor, flat_vectors: bool = False) -> Observation:
    """``obs`` transformed by ``g``: the graph's ``x, v``, and with ``flat_vectors`` the
    flat ``obs`` and ``state`` read as consecutive 2-D vectors (true of VMAS MPE, whose
    observation concatenates positions and velocities).

    Args:
        obs: the observation.
        g: ``[2, 2]`` orthogonal matrix.
        flat_vectors: also transform ``obs.obs`` and ``obs.state`` pairwise.
    """
    graph = None if obs.graph is None else rotate_graph(obs.graph, g)
    flat, state = obs.obs, obs.state
    if flat_vectors:
        for t in (flat, state):
            if t.shape[-1] % 2:
                raise ValueError(f"flat_vectors needs an even feature size; got {t.shape[-1]}")
        flat = _apply(flat.unflatten(-1, (-1, 2)), g).flatten(-2)
        state = _apply(state.unflatten(-1, (-1, 2)), g).flatten(-2)
    return Observation(obs=flat, state=state, graph=graph, action_mask=obs.action_mask, agent_mask=obs.agent_mask)


def _error(actual: Tensor, expected: Tensor) -> float:
    actual, expected = actual.detach(), expected.detach()
    if actual.shape != expected.shape:
        raise EquivarianceError(f"output shape changed: {tuple(expected.shape)} -> {tuple(actual.shape)}")
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    return float((actual - expected).abs().max()) / scale if expected.numel() else 0.0


def _check(errors: dict[str, float], atol: float, what: str) -> dict[str, float]:
    bad = {k: e for k, e in errors.items() if not e <= atol}
    if bad:
        detail = ", ".join(f"{k}: {e:.3g}" for k, e in bad.items())
        raise EquivarianceError(f"not {what} within {atol:g}: {detail}")
    return errors


def _float_dtype(obs: Observation) -> torch.dtype:
    src = obs.graph.x if obs.graph is not None else obs.obs
    return src.dtype


def assert_equivariant(
    fn: OutputFn,
    obs: Observation,
    kinds: Mapping[str, str],
    g: Tensor | None = None,
    transform: ObsTransform = rotate_observation,
    atol: float | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Check ``fn``'s outputs under a random (or given) O(2) element.

    Args:
        fn: ``Observation -> {name: tensor}``.
        obs: the input observation.
        kinds: for each output name to check, ``"equivariant"`` (last dim 2, rotates)
            or ``"invariant"`` (unchanged).
        g: ``[2, 2]`` group element; default :func:`random_o2` (reflection with
            probability 1/2).
        transform: ``(obs, g) -> g . obs``; default :func:`rotate_observation` (graph only).
        atol: tolerance of the scaled error; default :func:`default_tolerance` of the
            inputs' dtype.
        generator: random generator for ``g``.

    Returns:
        ``{name: error}`` for every checked output.

    Raises:
        EquivarianceError: an output does not transform as declared.
    """
    for name, kind in kinds.items():
        if kind not in ROTATION_KINDS:
            raise ValueError(f"kinds[{name!r}]={kind!r}; allowed: {', '.join(ROTATION_KINDS)}")
    dtype = _float_dtype(obs)
    tol = default_tolerance(dtype) if atol is None else atol
    if g is None:
        g = random_o2(generator=generator, dtype=dtype)
    out = fn(obs)
    out_g = fn(transform(obs, g))
    errors: dict[str, float] = {}
    for name, kind in kinds.items():
        ref = out[name]
        expected = _apply(ref, g) if kind == "equivariant" else ref
        errors[name] = _error(out_g[name], expected)
    return _check(errors, tol, "O(2)-equivariant")


def random_node_permutation(graph: EntityGraph, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A random relabelling of the nodes that maps agent nodes to agent nodes.

    Returns:
        ``(perm [N], agent_perm [A])``: new node ``n`` is old node ``perm[n]``; the
        agent at ``agent_node[a]`` in the new graph is the old agent ``agent_perm[a]``.
    """
    n = graph.num_nodes
    agent_node = graph.agent_node.cpu()
    a = agent_node.shape[0]
    agent_perm = torch.randperm(a, generator=generator)
    is_agent = torch.zeros(n, dtype=torch.bool)
    is_agent[agent_node] = True
    others = (~is_agent).nonzero().flatten()
    perm = torch.arange(n)
    perm[agent_node] = agent_node[agent_perm]
    perm[others] = others[torch.randperm(others.numel(), generator=generator)]
    return perm.to(graph.x.device), agent_perm.to(graph.x.device)


def permute_observation(obs: Observation, perm: Tensor, agent_perm: Tensor) -> Observation:
    """``obs`` with its graph's nodes relabelled (``new[n] = old[perm[n]]``) and its
    per-agent tensors (``obs``, ``action_mask``) reordered by ``agent_perm``.

    The global ``state`` is left as is (its layout is env-specific); graph models do not
    read it.  Only graphs of batch shape ``[E]`` are supported.
    """
    if obs.graph is None:
        raise ValueError("a permutation check needs an observation with an entity graph")
    graph = obs.graph
    if graph.node_mask.dim() != 2:
        raise ValueError("permute_observation supports graphs of batch shape [E] only")

    def nodes(t: Tensor) -> Tensor:
        return t.index_select(1, perm)

    # stored kNN lists hold node indices: drop them (the model rebuilds them from x)
    new_graph = replace(graph.map(nodes), neighbors=None, neighbor_valid=None)
    return Observation(
        obs=obs.obs.index_select(1, agent_perm),
        state=obs.state,
        graph=new_graph,
        action_mask=None if obs.action_mask is None else obs.action_mask.index_select(1, agent_perm),
        agent_mask=None if obs.agent_mask is None else obs.agent_mask.index_select(1, agent_perm),
    )


def assert_permutation_equivariant(
    fn: OutputFn,
    obs: Observation,
    kinds: Mapping[str, str],
    perm: tuple[Tensor, Tensor] | None = None,
    atol: float | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Check ``fn``'s outputs under a random relabelling of the graph's nodes.

    Args:
        fn: ``Observation -> {name: tensor}``.
        obs: the input observation (graph batch shape ``[E]``).
        kinds: for each output name, ``"agent"`` (dim 1 indexes agents),
            ``"node"`` (dim 1 indexes nodes) or ``"invariant"``.
        perm: ``(perm [N], agent_perm [A])`` as from :func:`random_node_permutation`
            (default: a random one).
        atol: tolerance; default :func:`default_tolerance` of the inputs' dtype.
        generator: random generator for the permutation.

    Returns:
        ``{name: error}``.

    Raises:
        EquivarianceError: an output does not permute as declared.
    """
    for name, kind in kinds.items():
        if kind not in PERMUTATION_KINDS:
            raise ValueError(f"kinds[{name!r}]={kind!r}; allowed: {', '.join(PERMUTATION_KINDS)}")
    if obs.graph is None:
        raise ValueError("a permutation check needs an observation with an entity graph")
    tol = default_tolerance(_float_dtype(obs)) if atol is None else atol
    node_perm, agent_perm = random_node_permutation(obs.graph, generator) if perm is None else perm
    out = fn(obs)
    out_p = fn(permute_observation(obs, node_perm, agent_perm))
    errors: dict[str, float] = {}
    for name, kind in kinds.items():
        ref = out[name]
        if kind == "agent":
            expected = ref.index_select(1, agent_perm)
        elif kind == "node":
            expected = ref.index_select(1, node_perm)
        else:
            expected = ref
        errors[name] = _error(out_p[name], expected)
    return _check(errors, tol, "permutation-equivariant")
