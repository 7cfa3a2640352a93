"""Observation and EntityGraph: map/stack/where go through every batched field."""

from __future__ import annotations

import dataclasses
import typing

import torch

from eqmarl.core.batched import BATCHED, DERIVED
from eqmarl.core.env import Observation
from eqmarl.core.graph import EntityGraph

# tensor fields that are the same for every batch entry (carried over, never mapped)
UNBATCHED_TENSORS = {(EntityGraph, "agent_node")}


def test_every_tensor_field_is_declared() -> None:
    """A new tensor field must say whether it is batched: else map/stack/where would skip it."""
    for cls in (Observation, EntityGraph):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            holds_tensor = "Tensor" in str(hints[f.name]) or "EntityGraph" in str(hints[f.name])
            declared = f.metadata in (BATCHED, DERIVED)
            assert declared or not holds_tensor or (cls, f.name) in UNBATCHED_TENSORS, (cls.__name__, f.name)


def _obs(seed: int, knn: bool = True, mask: bool = True) -> Observation:
    gen = torch.Generator().manual_seed(seed)
    graph = EntityGraph(
        h=torch.rand(4, 5, 2, generator=gen),
        x=torch.rand(4, 5, 2, generator=gen),
        v=torch.rand(4, 5, 2, generator=gen),
        node_mask=torch.rand(4, 5, generator=gen) > 0.3,
        agent_node=torch.arange(2),
        edge_rule="bipartite",
        node_group=torch.randint(0, 2, (4, 5), generator=gen),
    )
    if knn:
        graph = graph.with_knn(2)
    return Observation(
        obs=torch.rand(4, 2, 3, generator=gen),
        state=torch.rand(4, 6, generator=gen),
        graph=graph,
        action_mask=torch.rand(4, 2, 3, generator=gen) > 0.5 if mask else None,
    )


def test_map_and_stack_cover_every_batched_field() -> None:
    first, second = _obs(0), _obs(1)
    mapped = first.map(lambda t: t[:2])
    stacked = Observation.stack([first, second])
    assert mapped.graph is not None and stacked.graph is not None and first.graph is not None
    for name in ("h", "x", "v", "node_mask", "node_group", "neighbors", "neighbor_valid"):
        assert getattr(mapped.graph, name).shape[0] == 2, name
        assert torch.equal(getattr(stacked.graph, name)[1], getattr(second.graph, name)), name
    assert mapped.action_mask is not None and mapped.action_mask.shape[0] == 2
    assert stacked.obs.shape == (2, 4, 2, 3)
    # the unbatched fields are carried over
    assert mapped.graph.agent_node is first.graph.agent_node and stacked.graph.edge_rule == "bipartite"


def test_where_selects_per_env_and_drops_derived_fields() -> None:
    first, second = _obs(0), _obs(1, mask=False)
    cond = torch.tensor([True, False, True, False])
    mixed = first.where(cond, second)
    assert mixed.graph is not None and first.graph is not None and second.graph is not None
    assert torch.equal(mixed.graph.x[0], first.graph.x[0]) and torch.equal(mixed.graph.x[1], second.graph.x[1])
    assert torch.equal(mixed.obs[3], second.obs[3]) and torch.equal(mixed.state[2], first.state[2])
    assert mixed.graph.neighbors is None and mixed.graph.neighbor_valid is None  # positions changed
    assert mixed.action_mask is None  # absent on one side
    assert mixed.graph.node_group is not None
