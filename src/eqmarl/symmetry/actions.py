"""How a finite permutation group acts on observations, global states and discrete actions.

:class:`GroupAction` holds, for every element ``g`` of a group, the permutation ``L_g``
of the flat observation, ``K_g`` of the actions (and optionally one of the global
state), checks that they are group homomorphisms, and applies them to
:class:`~eqmarl.core.env.Observation` batches.  Envs build their symmetries from it
(Hanabi's colours, the lever game's levers); EQC and Other-Play
(:mod:`eqmarl.wrappers`) use it.

Conventions for a group element ``g`` (see :mod:`eqmarl.symmetry.groups`):

* ``obs_perm[g]`` is a permutation of the ``obs_dim`` observation entries: entry ``j``
  of ``x`` moves to entry ``obs_perm[g, j]`` of ``L_g x``.
* ``action_perm[g]`` is a permutation of the actions: action ``a`` in the original
  corresponds to action ``K_g(a) = action_perm[g, a]`` in the transformed situation.
  A vector over actions ``l`` (probabilities, logits, mask) moves like the entries of
  ``x``: ``(K_g l)[K_g(a)] = l[a]``; so ``K_g^{-1} l = l[action_perm[g]]`` (a gather).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from eqmarl.core.env import Observation
from eqmarl.symmetry.groups import (
    MAX_TABLE_ORDER,
    GroupError,
    PermutationGroup,
    compose_permutations,
    invert_permutations,
    perm_to_str,
)


def section_permutation(
    point_perm: Tensor, total: int, offset: int, n_points: int, block: int, out: Tensor | None = None
) -> Tensor:
    """Forward permutation of a flat vector whose section is ``n_points`` blocks of ``block``.

    The section ``[offset, offset + n_points * block)`` is point-major: entry
    ``offset + i * block + r`` belongs to point ``i``.  Under ``point_perm`` (point ``i``
    goes to ``point_perm[i]``) it moves to ``offset + point_perm[i] * block + r``;
    entries outside the section stay put (or keep what ``out`` already says).

    Args:
        point_perm: ``[n_points]`` long permutation.
        total: length of the flat vector.
        offset: start of the section.
        n_points: number of blocks in the section.
        block: entries per block.
        out: ``[total]`` forward permutation to update in place (default: identity).

    Returns:
        ``[total]`` long forward permutation.
    """
    if out is None:
        out = torch.arange(total)
    if offset + n_points * block > total:
        raise ValueError(f"section [{offset}, {offset + n_points * block}) exceeds the vector length {total}")
    src = offset + torch.arange(n_points * block).view(n_points, block)
    dst = offset + point_perm.long().view(n_points, 1) * block + torch.arange(block).view(1, block)
    out[src.reshape(-1)] = dst.reshape(-1).to(out.dtype)
    return out


class GroupAction(nn.Module):
    """A permutation group acting on flat observations, global states and discrete actions.

    Args:
        group: the group ``G`` (``|G| = n``).
        obs_perm: ``[n, obs_dim]`` forward permutations ``L_g`` of the observation.
        action_perm: ``[n, n_actions]`` forward permutations ``K_g`` of the actions.
        state_perm: ``[n, state_dim]`` forward permutations of the global state, or None
            (the state is then treated as invariant: left unchanged).
        check: verify that ``g -> L_g``, ``g -> K_g`` (and the state action) are group
            homomorphisms, ``L_{a*b} = L_a L_b``, which is what makes the symmetrizer
            equivariant; raises :class:`GroupError` naming the failing pair otherwise.
            Checked on ``a * s`` for every ``a`` and every generator ``s`` (which implies it
            for all pairs); groups without a composition table get a random sample of pairs.

    The permutations are non-persistent buffers: they follow ``.to(device)`` and never
    enter a ``state_dict``.
    """

    obs_perm: Tensor
    obs_gather: Tensor
    action_perm: Tensor
    action_gather: Tensor
    state_perm: Tensor | None
    state_gather: Tensor | None

    def __init__(
        self,
        group: PermutationGroup,
        obs_perm: Tensor,
        action_perm: Tensor,
        state_perm: Tensor | None = None,
        check: bool = True,
    ) -> None:
        super().__init__()
        self.group = group
        tables = {"obs_perm": obs_perm, "action_perm": action_perm}
        if state_perm is not None:
            tables["state_perm"] = state_perm
        for key, given in tables.items():
            perms = torch.as_tensor(given).long()
            if perms.dim() != 2 or perms.shape[0] != group.order:
                raise GroupError(f"{key} must be [|G|={group.order}, dim], got shape {tuple(perms.shape)}")
            srt = perms.sort(dim=1).values
            if not bool((srt == torch.arange(perms.shape[1])).all()):
                raise GroupError(f"{key}: every row must be a permutation of 0..{perms.shape[1] - 1}")
            if check:
                _check_homomorphism(group, perms, key)
            self.register_buffer(key, perms.contiguous(), persistent=False)
            self.register_buffer(key.replace("perm", "gather"), invert_permutations(perms), persistent=False)
        if state_perm is None:
            self.state_perm = None
            self.state_gather = None

    @classmethod
    def from_point_maps(
        cls,
        group: PermutationGroup,
        obs_map: Callable[[Tensor], Tensor],
        action_map: Callable[[Tensor], Tensor],
        state_map: Callable[[Tensor], Tensor] | None = None,
        check: bool = True,
    ) -> GroupAction:
        """Build the action from functions of one point permutation.

        Args:
            group: the group.
            obs_map: point permutation ``[k]`` -> forward observation permutation ``[obs_dim]``.
            action_map: point permutation ``[k]`` -> forward action permutation ``[n_actions]``.
            state_map: point permutation ``[k]`` -> forward state permutation, or None.
            check: see the class docstring.
        """
        obs = torch.stack([obs_map(p) for p in group.elements])
        act = torch.stack([action_map(p) for p in group.elements])
        state = None if state_map is None else torch.stack([state_map(p) for p in group.elements])
        return cls(group, obs, act, state, check=check)

    # ----------------------------------------------------------------- sizes
    @property
    def order(self) -> int:
        """``|G|``."""
        return self.group.order

    @property
    def obs_dim(self) -> int:
        return int(self.obs_perm.shape[1])

    @property
    def n_actions(self) -> int:
        return int(self.action_perm.shape[1])

    # ------------------------------------------- all copies at once (for EQC)
    def all_obs(self, x: Tensor) -> Tensor:
        """``L_g x`` for every ``g``: ``[*B, obs_dim] -> [|G|, *B, obs_dim]``."""
        return x[..., self.obs_gather].movedim(-2, 0)

    def all_states(self, s: Tensor) -> Tensor:
        """The state of every copy: ``[*B, state_dim] -> [|G|, *B, state_dim]``."""
        if self.state_gather is None:
            return s.unsqueeze(0).expand(self.order, *s.shape)
        return s[..., self.state_gather].movedim(-2, 0)

    def all_masks(self, mask: Tensor) -> Tensor:
        """``K_g mask`` for every ``g``: ``[*B, n_actions] -> [|G|, *B, n_actions]``."""
        return mask[..., self.action_gather].movedim(-2, 0)

    def pull_back_outputs(self, out: Tensor) -> Tensor:
        """``K_g^{-1} out_g`` per copy: ``[|G|, *B, n_actions] -> [|G|, *B, n_actions]``."""
        shape = (self.order,) + (1,) * (out.dim() - 2) + (self.n_actions,)
        idx = self.action_perm.view(shape).expand_as(out)
        return torch.gather(out, -1, idx)

    def all_observations(self, obs: Observation) -> Observation:
        """Every transformed copy stacked along the batch dim: ``[*B] -> [|G| * B0, *B[1:]]``.

        Raises:
            ValueError: the observation carries an entity graph (no group action on it is
                defined here).
        """
        if obs.graph is not None:
            raise ValueError(
                "EQC acts on flat observations (obs, state, action_mask); this observation "
                "carries an entity graph, whose transformation is not defined by a GroupAction"
            )

        def flat(t: Tensor) -> Tensor:
            return t.reshape(t.shape[0] * t.shape[1], *t.shape[2:])

        return Observation(
            obs=flat(self.all_obs(obs.obs)),
            state=flat(self.all_states(obs.state)),
            graph=None,
            action_mask=None if obs.action_mask is None else flat(self.all_masks(obs.action_mask)),
        )

    # -------------------------------------- one element per row (Other-Play, tests)
    # ``g`` below: an int, or group-element indices whose shape is a prefix of the
    # batch shape (``[E]``: one element per env; ``[E, A]``: one per agent).
    def obs(self, x: Tensor, g: Tensor | int) -> Tensor:
        """``L_g x``: ``[*B, obs_dim] -> [*B, obs_dim]``."""
        return _gather_rows(x, self.obs_gather, g)

    def state(self, s: Tensor, g: Tensor | int) -> Tensor:
        """The state action of ``g`` (identity without ``state_perm``): ``[*B, state_dim]``."""
        if self.state_gather is None:
            return s
        return _gather_rows(s, self.state_gather, g)

    def mask(self, mask: Tensor, g: Tensor | int) -> Tensor:
        """``K_g l`` for a vector over actions (mask, logits, probabilities): ``[*B, n_actions]``."""
        return _gather_rows(mask, self.action_gather, g)

    def unmask(self, out: Tensor, g: Tensor | int) -> Tensor:
        """``K_g^{-1} l`` (maps a transformed copy's output back): ``[*B, n_actions]``."""
        return _gather_rows(out, self.action_perm, g)

    def action(self, a: Tensor, g: Tensor | int) -> Tensor:
        """``K_g(a)``: action indices ``[*B]`` long -> ``[*B]`` long."""
        g_t = _expand_index(g, a.shape, a.device)
        return self.action_perm[g_t, a.long()]

    def observation(self, obs: Observation, g: Tensor | int, state_g: Tensor | int | None = None) -> Observation:
        """Apply ``g`` to an observation (obs, action mask and, where defined, state).

        Args:
            obs: observation with batch dims ``[E, A]``.
            g: an int, ``[E]`` (one element per env) or ``[E, A]`` (one per agent).
            state_g: element applied to the global state ``[E]``; defaults to ``g`` when
                ``g`` is per env.  Needed with per-agent ``g`` if the state is permuted.
        """
        if obs.graph is not None:
            raise ValueError("GroupAction does not transform entity graphs")
        g_t = torch.as_tensor(g, device=obs.obs.device, dtype=torch.long)
        if state_g is None and self.state_gather is not None:
            if g_t.dim() > 1:
                raise ValueError("per-agent group elements: pass state_g to say how the global state moves")
            state_g = g_t
        return Observation(
            obs=self.obs(obs.obs, g_t),
            state=obs.state if state_g is None else self.state(obs.state, state_g),
            graph=None,
            action_mask=None if obs.action_mask is None else self.mask(obs.action_mask, g_t),
        )


def _expand_index(g: Tensor | int, batch: torch.Size, device: torch.device) -> Tensor:
    g_t = torch.as_tensor(g, device=device, dtype=torch.long)
    if g_t.dim() > len(batch) or tuple(g_t.shape) != tuple(batch[: g_t.dim()]):
        raise ValueError(f"group elements of shape {tuple(g_t.shape)} do not prefix the batch shape {tuple(batch)}")
    return g_t.view(tuple(g_t.shape) + (1,) * (len(batch) - g_t.dim())).expand(batch)


def _gather_rows(x: Tensor, table: Tensor, g: Tensor | int) -> Tensor:
    idx = table[_expand_index(g, x.shape[:-1], x.device)]  # [*B, dim]
    return torch.gather(x, -1, idx)


def _check_homomorphism(group: PermutationGroup, perms: Tensor, key: str) -> None:
    """``perms[a*s] == perms[a] o perms[s]`` for all ``a`` and generators ``s`` (enough for all
    pairs); groups too large for a composition table get a random sample of pairs."""
    n = group.order
    ident = torch.arange(perms.shape[1])
    if not torch.equal(perms[group.identity], ident):
        raise GroupError(f"{key}: the identity element must act as the identity permutation")
    if n <= MAX_TABLE_ORDER:
        gens = group.generating_set()
        a = torch.arange(n).repeat_interleave(gens.numel())
        b = gens.repeat(n)
    else:
        gen = torch.Generator().manual_seed(0)
        a = torch.randint(n, (4096,), generator=gen)
        b = torch.randint(n, (4096,), generator=gen)
    ab = group.compose(a, b)
    bad = (perms[ab] != compose_permutations(perms[a], perms[b])).any(-1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        ga, gb = group.elements[a[i]], group.elements[b[i]]
        raise GroupError(
            f"{key} is not a group action (homomorphism): for a={perm_to_str(ga)}, b={perm_to_str(gb)} "
            "the permutation of a*b differs from (that of a) o (that of b); check the direction "
            "convention (entry j moves to perm[g, j])"
        )


def orbit_sizes(action: GroupAction) -> Tensor:
    """Size of each action's orbit under the group: ``[n_actions]`` long.

    Actions in one orbit are equivalent up to a symmetry (e.g. the nine 1.0-levers, the
    colour hints to one player); fixed actions have orbit size 1.
    """
    perms = action.action_perm  # [|G|, n_actions]; column a lists K_g(a) over g
    srt = perms.sort(dim=0).values
    return 1 + (srt[1:] != srt[:-1]).sum(0)


def orbit_uniform_bias(action: GroupAction) -> Tensor:
    """Logit offsets ``-log |orbit(a)|`` ``[n_actions]``: added to near-zero logits, every
    orbit starts with the same total probability (uniform over classes of equivalent actions)."""
    return -orbit_sizes(action).double().log().float()
