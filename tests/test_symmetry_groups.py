"""Finite permutation groups: construction, closure, identity, inverses, composition."""

from __future__ import annotations

import math

import pytest
import torch

from eqmarl.symmetry.groups import (
    GroupError,
    PermutationGroup,
    compose_permutations,
    cyclic_group,
    dihedral_group,
    invert_permutations,
    make_group,
    random_permutations,
    symmetric_group,
)


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    """Small tensors: one thread avoids oversubscription on shared 2-core machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _brute_closed(elements: torch.Tensor) -> bool:
    rows = {tuple(r) for r in elements.tolist()}
    return all(tuple(a[b[i]] for i in range(len(a))) in rows for a in rows for b in rows)


@pytest.mark.parametrize(
    "name, order, degree",
    [
        ("C5", 5, 5),
        ("D10", 10, 5),
        ("S5", 120, 5),
        ("C3", 3, 3),
        ("D6", 6, 3),
        ("S3", 6, 3),
        ("C9", 9, 9),
        ("S4", 24, 4),
    ],
)
def test_orders_and_closure(name: str, order: int, degree: int) -> None:
    g = make_group(name)
    assert (g.order, g.degree) == (order, degree)
    assert g.name == name
    # distinct permutations of 0..k-1, closed under composition (checked independently)
    assert len({tuple(r) for r in g.elements.tolist()}) == order
    assert all(sorted(r) == list(range(degree)) for r in g.elements.tolist())
    assert _brute_closed(g.elements)


@pytest.mark.parametrize("name", ["C5", "D10", "S5", "S3"])
def test_identity_inverse_and_table(name: str) -> None:
    g = make_group(name)
    e = g.elements
    assert torch.equal(e[g.identity], torch.arange(g.degree))
    # a * a^{-1} = identity, both ways
    assert torch.equal(compose_permutations(e, e[g.inverse]), torch.arange(g.degree).expand_as(e))
    assert torch.equal(compose_permutations(e[g.inverse], e), torch.arange(g.degree).expand_as(e))
    table = g.composition_table
    n = g.order
    for a in range(n):
        for b in range(0, n, max(1, n // 12)):
            assert torch.equal(e[table[a, b]], e[a][e[b]])  # (a*b)[i] = a[b[i]]
    # group axioms through the table: identity row/column, inverse, associativity
    ident = g.identity
    assert torch.equal(table[ident], torch.arange(n))
    assert torch.equal(table[:, ident], torch.arange(n))
    assert bool((table[torch.arange(n), g.inverse] == ident).all())
    idx = torch.randint(n, (3, 200), generator=torch.Generator().manual_seed(0))
    a, b, c = idx
    assert torch.equal(table[table[a, b], c], table[a, table[b, c]])
    # Latin square: each row and column is a permutation of the elements
    assert bool((table.sort(1).values == torch.arange(n)).all())
    assert bool((table.sort(0).values == torch.arange(n).unsqueeze(1)).all())


def test_s5_is_all_permutations_and_subgroups() -> None:
    s5 = symmetric_group(5)
    assert s5.order == math.factorial(5)
    assert bool((s5.index_of(cyclic_group(5).elements) >= 0).all())
    assert bool((s5.index_of(dihedral_group(5).elements) >= 0).all())
    assert s5.identity == 0


def test_dihedral_is_abelian_only_for_rotations() -> None:
    d10 = dihedral_group(5)
    t = d10.composition_table
    assert not torch.equal(t, t.T)  # D10 is not abelian
    c5 = cyclic_group(5)
    assert torch.equal(c5.composition_table, c5.composition_table.T)


def test_non_group_rejected() -> None:
    # a transposition and a 3-cycle (plus identity) do not form a group
    perms = torch.tensor([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [1, 2, 0, 3, 4], [2, 0, 1, 3, 4]])
    with pytest.raises(GroupError, match="not closed"):
        PermutationGroup(perms, name="bad")
    # random set of permutations that contains identity and inverses but is not closed
    with pytest.raises(GroupError, match="not closed under composition"):
        PermutationGroup(torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3], [0, 1, 3, 2], [0, 2, 1, 3]]))
    with pytest.raises(GroupError, match="identity"):
        PermutationGroup(torch.tensor([[1, 2, 0], [2, 0, 1]]))
    with pytest.raises(GroupError, match="more than once"):
        PermutationGroup(torch.tensor([[0, 1], [1, 0], [1, 0]]))
    with pytest.raises(GroupError, match="not a permutation"):
        PermutationGroup(torch.tensor([[0, 1, 1]]))
    with pytest.raises(GroupError):
        make_group("X5")
    with pytest.raises(GroupError, match="even"):
        make_group("D5")
    with pytest.raises(GroupError, match="points"):
        make_group("C5", degree=3)


def test_generated_by() -> None:
    rot = torch.tensor([[1, 2, 3, 4, 0]])
    assert PermutationGroup.generated_by(rot).order == 5
    refl = torch.tensor([[0, 4, 3, 2, 1]])
    assert PermutationGroup.generated_by(torch.cat([rot, refl])).order == 10
    swap = torch.tensor([[1, 0, 2, 3, 4]])
    assert PermutationGroup.generated_by(torch.cat([rot, swap])).order == 120


def test_large_group_and_sampling() -> None:
    s9 = symmetric_group(9)
    assert s9.order == 362_880
    assert torch.equal(s9.elements[s9.compose(5, s9.inverse[5])], torch.arange(9))
    with pytest.raises(GroupError, match="composition table"):
        _ = s9.composition_table
    idx = s9.sample(7, torch.Generator().manual_seed(0))
    assert idx.shape == (7,) and bool((idx < s9.order).all())
    p = random_permutations(12, 4, torch.Generator().manual_seed(0))
    assert bool((p.sort(1).values == torch.arange(12)).all())
    inv = invert_permutations(p)
    assert torch.equal(compose_permutations(p, inv), torch.arange(12).expand(4, 12))


@pytest.mark.parametrize("name", ["C5", "D10", "S5", "S3", "C1"])
def test_generating_set_generates(name: str) -> None:
    g = make_group(name)
    gens = g.generating_set()
    assert gens.numel() <= 4
    assert bool((gens != g.identity).all())
    if gens.numel():
        assert PermutationGroup.generated_by(g.elements[gens]).order == g.order
