"""Finite permutation groups: cyclic ``C_k``, dihedral ``D_2k`` and symmetric ``S_k``.

A group element on ``k`` points is a permutation stored as a row ``p`` of a long
tensor, meaning point ``i`` is sent to point ``p[i]``.  A group of order ``n`` is the
tensor ``elements [n, k]`` plus its identity index, inverse table and (for groups small
enough) its composition table.

Conventions (used throughout :mod:`eqmarl.symmetry`):

* Composition ``a * b`` means "apply ``b`` first, then ``a``":
  ``(a * b)[i] = a[b[i]]``.
* A permutation ``p`` moves the entries of a vector ``x`` indexed by points:
  ``(p . x)[p[i]] = x[i]``, i.e. ``p . x = x[p^{-1}]`` as a gather.  With this,
  ``(a * b) . x = a . (b . x)``: the action is a left action (a homomorphism).

Names: ``C5`` (cyclic, order 5), ``D10`` (dihedral on 5 points, order 10: the
symmetries of a pentagon), ``S5`` (all 120 permutations).  :func:`make_group` parses
such a name; the number after ``D`` is the group's order ``2k``, as in the EQC paper.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import torch
from torch import Tensor

# Groups with more elements than this get no eager composition table / closure check
# (|G|^2 * k work); they are built from known-correct constructions instead.
MAX_TABLE_ORDER = 5040
# S_k is enumerated explicitly; 9! = 362,880 rows is the most we allow.
MAX_SYMMETRIC_DEGREE = 9


class GroupError(ValueError):
    """A set of permutations is not a valid permutation group (message says why)."""


def perm_to_str(p: Tensor) -> str:
    """Short text form of one permutation ``[k]``, e.g. ``[1, 2, 0]``."""
    return "[" + ", ".join(str(int(v)) for v in p.tolist()) + "]"


def invert_permutations(perms: Tensor) -> Tensor:
    """Inverse of each permutation.

    Args:
        perms: ``[n, k]`` long, each row a permutation of ``0..k-1``.

    Returns:
        ``[n, k]`` long with ``inv[j, perms[j, i]] = i``.
    """
    n, k = perms.shape
    inv = torch.empty_like(perms)
    inv.scatter_(1, perms, torch.arange(k, device=perms.device).expand(n, k).contiguous())
    return inv


def compose_permutations(a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` (``b`` first, then ``a``), batched.

    Args:
        a: ``[..., k]`` long permutations.
        b: ``[..., k]`` long permutations (broadcast against ``a``).

    Returns:
        ``[..., k]`` with ``out[..., i] = a[..., b[..., i]]``.
    """
    a, b = torch.broadcast_tensors(a, b)
    return torch.gather(a, -1, b)


def _check_permutations(perms: Tensor) -> None:
    if perms.dim() != 2 or perms.shape[0] == 0 or perms.shape[1] == 0:
        raise GroupError(f"expected a non-empty [n, k] tensor of permutations, got shape {tuple(perms.shape)}")
    k = perms.shape[1]
    if perms.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise GroupError(f"permutations must be an integer tensor, got dtype {perms.dtype}")
    sorted_rows = perms.sort(dim=1).values
    ok = (sorted_rows == torch.arange(k, device=perms.device)).all(dim=1)
    if not bool(ok.all()):
        bad = int((~ok).nonzero()[0, 0])
        raise GroupError(f"row {bad} = {perm_to_str(perms[bad])} is not a permutation of 0..{k - 1}")


def _row_keys(perms: Tensor) -> Tensor:
    """One int64 key per row (base-k digits); exact for k**k < 2**63 (k <= 15)."""
    k = perms.shape[-1]
    if k > 15:
        raise GroupError(f"permutations of more than 15 points are not supported (got k={k})")
    weights = torch.tensor([k**i for i in range(k)], dtype=torch.int64, device=perms.device)
    return (perms.long() * weights).sum(-1)


class PermutationGroup:
    """A finite group of permutations of ``k`` points.

    Args:
        elements: ``[n, k]`` integer tensor, each row a permutation (see module docstring).
        name: display name (e.g. ``"C5"``).
        check: verify that the rows are distinct permutations and that the set is
            closed under composition (hence a group: a finite, non-empty subset of
            ``S_k`` closed under composition contains the identity and all inverses).
            Raises :class:`GroupError` naming the offending elements otherwise.
            Only possible for groups of order <= ``MAX_TABLE_ORDER``.

    Attributes:
        elements: ``[n, k]`` long.
        identity: index of the identity element.
        inverse: ``[n]`` long; ``elements[inverse[j]]`` is the inverse of ``elements[j]``.
        inverse_elements: ``[n, k]`` long, ``elements[inverse]``.
    """

    def __init__(self, elements: Tensor, name: str = "G", check: bool = True) -> None:
        elements = torch.as_tensor(elements)
        _check_permutations(elements)
        self.elements: Tensor = elements.long().cpu().contiguous()
        self.name = name
        self._keys = _row_keys(self.elements)
        order = self.elements.shape[0]
        sorted_keys, self._key_order = self._keys.sort()
        self._sorted_keys = sorted_keys
        if bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
            dup = int((sorted_keys[1:] == sorted_keys[:-1]).nonzero()[0, 0])
            row = int(self._key_order[dup])
            raise GroupError(f"{name}: element {perm_to_str(self.elements[row])} appears more than once")
        ident = torch.arange(self.degree)
        id_idx = self.index_of(ident.unsqueeze(0))
        if int(id_idx[0]) < 0:
            raise GroupError(f"{name}: the identity {perm_to_str(ident)} is not in the set")
        self.identity: int = int(id_idx[0])
        self.inverse_elements: Tensor = invert_permutations(self.elements)
        inv = self.index_of(self.inverse_elements)
        if bool((inv < 0).any()):
            j = int((inv < 0).nonzero()[0, 0])
            raise GroupError(
                f"{name}: not closed under inverses: the inverse {perm_to_str(self.inverse_elements[j])} "
                f"of {perm_to_str(self.elements[j])} is not in the set"
            )
        self.inverse: Tensor = inv
        self._table: Tensor | None = None
        if check:
            if order > MAX_TABLE_ORDER:
                raise GroupError(
                    f"{name}: cannot check closure of {order} elements (limit {MAX_TABLE_ORDER}); "
                    "build large groups with cyclic_group/dihedral_group/symmetric_group or check=False"
                )
            self._table = self._compute_table()

    # ------------------------------------------------------------------ basics
    @property
    def order(self) -> int:
        """Number of elements ``|G|``."""
        return int(self.elements.shape[0])

    @property
    def degree(self) -> int:
        """Number of points ``k`` the permutations act on."""
        return int(self.elements.shape[1])

    def __len__(self) -> int:
        return self.order

    def __repr__(self) -> str:
        return f"PermutationGroup({self.name}, order={self.order}, degree={self.degree})"

    def index_of(self, perms: Tensor) -> Tensor:
        """Index of each permutation in :attr:`elements` (-1 where absent).

        Args:
            perms: ``[m, k]`` permutations.

        Returns:
            ``[m]`` long.
        """
        keys = _row_keys(torch.as_tensor(perms).long().cpu())
        pos = torch.searchsorted(self._sorted_keys, keys).clamp(max=self.order - 1)
        found = self._sorted_keys[pos] == keys
        return torch.where(found, self._key_order[pos], torch.full_like(pos, -1))

    def _compute_table(self) -> Tensor:
        n, k = self.elements.shape
        table = torch.empty(n, n, dtype=torch.long)
        chunk = max(1, 2_000_000 // max(1, n * k))
        for start in range(0, n, chunk):
            a = self.elements[start : start + chunk]  # [c, k]
            prod = compose_permutations(a.unsqueeze(1), self.elements.unsqueeze(0))  # [c, n, k]
            idx = self.index_of(prod.reshape(-1, k)).view(-1, n)
            if bool((idx < 0).any()):
                i, j = (idx < 0).nonzero()[0].tolist()
                raise GroupError(
                    f"{self.name}: not closed under composition: {perm_to_str(a[i])} * "
                    f"{perm_to_str(self.elements[j])} = {perm_to_str(prod[i, j])} is not in the set "
                    "(a set of permutations must be a group for EQC; use cyclic_group, "
                    "dihedral_group, symmetric_group or PermutationGroup.generated_by)"
                )
            table[start : start + chunk] = idx
        return table

    @property
    def composition_table(self) -> Tensor:
        """``[n, n]`` long: ``table[a, b]`` is the index of ``elements[a] * elements[b]``."""
        if self._table is None:
            if self.order > MAX_TABLE_ORDER:
                raise GroupError(
                    f"{self.name}: no composition table for a group of order {self.order} "
                    f"(limit {MAX_TABLE_ORDER}); use compose() on the elements you need"
                )
            self._table = self._compute_table()
        return self._table

    def compose(self, a: Tensor | int, b: Tensor | int) -> Tensor:
        """Index of ``elements[a] * elements[b]`` for index tensors ``a``, ``b`` (broadcast)."""
        a_t = torch.as_tensor(a, dtype=torch.long)
        b_t = torch.as_tensor(b, dtype=torch.long)
        if self._table is not None:
            return self._table[a_t, b_t]
        a_t, b_t = torch.broadcast_tensors(a_t, b_t)
        prod = compose_permutations(self.elements[a_t.reshape(-1)], self.elements[b_t.reshape(-1)])
        return self.index_of(prod).view(a_t.shape)

    def generating_set(self) -> Tensor:
        """Indices of a small set of elements that generates the group (greedy).

        Checking a property on products ``a * s`` for every ``a`` and every generator
        ``s`` is enough to check it on all products (e.g. that a map is a homomorphism).
        """
        table = self.composition_table
        member = torch.zeros(self.order, dtype=torch.bool)
        member[self.identity] = True
        gens: list[int] = []
        for cand in range(self.order):
            if member[cand]:
                continue
            gens.append(cand)
            while True:  # close the subgroup under right multiplication by the generators
                grown = member.clone()
                grown[table[member.nonzero().flatten()][:, gens].flatten()] = True
                if bool((grown == member).all()):
                    break
                member = grown
        return torch.tensor(gens, dtype=torch.long)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n]`` long: indices of ``n`` uniformly random elements (with replacement)."""
        return torch.randint(self.order, (n,), generator=generator)

    # ------------------------------------------------------------ constructors
    @classmethod
    def generated_by(cls, generators: Tensor, name: str = "G") -> PermutationGroup:
        """The group generated by some permutations (closure by breadth-first search).

        Args:
            generators: ``[m, k]`` permutations.
            name: display name.
        """
        gens = torch.as_tensor(generators).long().cpu()
        _check_permutations(gens)
        k = gens.shape[1]
        seen: dict[tuple[int, ...], None] = {tuple(range(k)): None}
        frontier = [tuple(range(k))]
        gen_rows = [tuple(g) for g in gens.tolist()]
        while frontier:
            nxt = []
            for p in frontier:
                for g in gen_rows:
                    q = tuple(g[p[i]] for i in range(k))  # g * p
                    if q not in seen:
                        if len(seen) >= math.factorial(min(k, 12)):  # pragma: no cover - safety
                            raise GroupError(f"{name}: generated group too large")
                        seen[q] = None
                        nxt.append(q)
            frontier = nxt
        return cls(torch.tensor(list(seen), dtype=torch.long), name=name, check=len(seen) <= MAX_TABLE_ORDER)


def cyclic_group(k: int) -> PermutationGroup:
    """``C_k``: the rotations ``i -> i + s (mod k)``, ``s = 0..k-1`` (order ``k``)."""
    if k < 1:
        raise GroupError(f"cyclic group needs k >= 1 points, got {k}")
    i = torch.arange(k)
    elements = (i.unsqueeze(0) + i.unsqueeze(1)) % k
    return PermutationGroup(elements, name=f"C{k}", check=k <= MAX_TABLE_ORDER)


def dihedral_group(k: int) -> PermutationGroup:
    """``D_2k``: symmetries of a regular k-gon, rotations ``i -> i + s`` and
    reflections ``i -> s - i`` (mod k); order ``2k``.  Needs ``k >= 3`` (for smaller
    ``k`` rotations and reflections coincide)."""
    if k < 3:
        raise GroupError(f"dihedral group D_2k needs k >= 3 points, got k={k}")
    i = torch.arange(k)
    s = torch.arange(k).unsqueeze(1)
    elements = torch.cat([(s + i) % k, (s - i) % k])
    return PermutationGroup(elements, name=f"D{2 * k}", check=2 * k <= MAX_TABLE_ORDER)


def symmetric_group(k: int) -> PermutationGroup:
    """``S_k``: all ``k!`` permutations (lexicographic order; index 0 is the identity)."""
    if not 1 <= k <= MAX_SYMMETRIC_DEGREE:
        raise GroupError(
            f"symmetric group S_k is enumerated explicitly; need 1 <= k <= {MAX_SYMMETRIC_DEGREE}, got {k}"
        )
    flat = np.fromiter(
        itertools.chain.from_iterable(itertools.permutations(range(k))), dtype=np.int64, count=math.factorial(k) * k
    )
    elements = torch.from_numpy(flat.reshape(-1, k))
    return PermutationGroup(elements, name=f"S{k}", check=math.factorial(k) <= MAX_TABLE_ORDER)


GROUP_FAMILIES = ("C", "D", "S")


def make_group(name: str, degree: int | None = None) -> PermutationGroup:
    """Build a group from its name: ``C<k>``, ``D<2k>`` or ``S<k>`` (e.g. ``C5``, ``D10``, ``S5``).

    Args:
        name: group name; the number is the group's order for ``D`` and the degree for
            ``C``/``S``. ``trivial`` gives the one-element group on ``degree`` points.
        degree: points the group must act on; checked against the name when given.
    """
    if name == "trivial":
        if degree is None:
            raise GroupError("group 'trivial' needs a degree")
        return PermutationGroup(torch.arange(degree).unsqueeze(0), name="trivial")
    m = re.fullmatch(r"([CDS])(\d+)", name.strip())
    if m is None:
        raise GroupError(f"group={name!r}; allowed: C<k>, D<2k>, S<k> (e.g. C5, D10, S5) or trivial")
    family, n = m.group(1), int(m.group(2))
    if family == "C":
        group = cyclic_group(n)
    elif family == "S":
        group = symmetric_group(n)
    else:
        if n % 2 != 0:
            raise GroupError(f"group={name!r}: D<n> names the dihedral group of order n = 2k; n must be even")
        group = dihedral_group(n // 2)
    if degree is not None and group.degree != degree:
        raise GroupError(f"group={name!r} acts on {group.degree} points, but {degree} are needed")
    return group


def random_permutations(k: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``[n, k]`` uniformly random permutations of ``k`` points (any ``k``; no enumeration).

    Useful for Other-Play on large symmetric groups (e.g. ``S_9`` in the lever game).
    """
    return torch.rand(n, k, generator=generator).argsort(dim=1)
