"""EQC: the equivariant-coordinator symmetrizer (Muglich et al., NeurIPS 2022).

For a finite group ``G`` acting on observations (``L_g``) and on discrete actions
(``K_g``), the symmetrizer turns any policy ``psi`` into a ``G``-equivariant one:

    S(psi)(x) = 1/|G| sum_g K_g^{-1} psi(L_g x)

``S(psi)`` satisfies ``S(psi)(L_h x) = K_h S(psi)(x)`` for every ``h`` in ``G`` as long
as ``g -> L_g`` and ``g -> K_g`` are group homomorphisms (checked by
:class:`GroupAction`), and ``S(psi) = psi`` for a policy that is already equivariant.

What is averaged (a choice the paper leaves to the output type): :class:`EQC` averages
the **probabilities** of the ``|G|`` copies by default (``average="probs"``), i.e. the
symmetrized policy is the uniform mixture of the transformed policies; this is a valid
distribution, the masked actions keep probability 0, and a policy that is already
equivariant is a fixed point.  ``average="logits"`` averages the copies' log-probabilities
instead (a normalized geometric mean: the analogue of averaging logits or Q-values);
both are exactly equivariant and keep equivariant policies fixed.  Values are averaged (an invariant
output); a recurrent state is averaged over the copies at every step.

All ``|G|`` copies go through the wrapped policy in one batched call: the transformed
inputs are stacked along the leading (batch) dimension, ``[E, ...] -> [|G| * E, ...]``,
copy ``g`` occupying rows ``g * E .. (g + 1) * E - 1``.

Conventions for a group element ``g`` (see :mod:`eqmarl.symmetry.groups`):

* ``obs_perm[g]`` is a permutation of the ``obs_dim`` observation entries: entry ``j``
  of ``x`` moves to entry ``obs_perm[g, j]`` of ``L_g x``.
* ``action_perm[g]`` is a permutation of the actions: action ``a`` in the original
  corresponds to action ``K_g(a) = action_perm[g, a]`` in the transformed situation.
  A vector over actions ``l`` (probabilities, logits, mask) moves like the entries of
  ``x``: ``(K_g l)[K_g(a)] = l[a]``; so ``K_g^{-1} l = l[action_perm[g]]`` (a gather).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from eqmarl.envs.base import Observation
from eqmarl.models.distributions import MaskedCategorical
from eqmarl.models.policy import ActorCritic
from eqmarl.symmetry.groups import (
    MAX_TABLE_ORDER,
    GroupError,
    PermutationGroup,
    compose_permutations,
    invert_permutations,
    perm_to_str,
)

AVERAGES = ("probs", "logits")
Hidden = Any  # a tensor or a tuple/list of tensors (e.g. an LSTM's (h, c))


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
        for key, perms in tables.items():
            perms = torch.as_tensor(perms).long()
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
    ) -> "GroupAction":
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


def _tile(hidden: Hidden, n: int, dim: int) -> Hidden:
    if hidden is None:
        return None
    if isinstance(hidden, (tuple, list)):
        return type(hidden)(_tile(h, n, dim) for h in hidden)
    reps = [1] * hidden.dim()
    reps[dim] = n
    return hidden.repeat(*reps)


def _average(hidden: Hidden, n: int, dim: int) -> Hidden:
    if hidden is None:
        return None
    if isinstance(hidden, (tuple, list)):
        return type(hidden)(_average(h, n, dim) for h in hidden)
    b = hidden.shape[dim] // n
    shape = hidden.shape[:dim] + (n, b) + hidden.shape[dim + 1 :]
    return hidden.reshape(shape).mean(dim)


def _logits_of(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if not isinstance(logits, Tensor):
        raise TypeError(
            "EQC needs a discrete policy: distribution() must return a Tensor of logits or an "
            f"object with a .logits tensor (e.g. MaskedCategorical), got {type(out).__name__}"
        )
    return logits


class EQC(ActorCritic, nn.Module):
    """Symmetrize any discrete Policy-like module over a finite group (see module docstring).

    The wrapped ``policy`` needs ``distribution(obs) -> MaskedCategorical | logits`` and
    ``value(obs) -> [*B]``.  A recurrent policy takes ``hidden=`` and returns
    ``(output, new_hidden)`` from both methods; :class:`EQC` then does the same, feeding
    every copy the same (averaged) hidden state and averaging the copies' new states.

    ``state_dict``/``load_state_dict`` are those of the wrapped policy, so a checkpoint of
    a plain policy loads into ``EQC(policy, ...)`` and back (test-time EQC on any saved
    policy; training with EQC saves plain-policy checkpoints).

    Args:
        policy: the policy to symmetrize (``nn.Module``).
        action: how the group acts on observations and actions.
        average: ``probs`` (mixture of the copies' distributions, default) or ``logits``
            (mean of the copies' log-probabilities, renormalized).
        hidden_batch_dim: batch dimension of recurrent state tensors (the dim of size
            ``E`` that is tiled to ``|G| * E``).
    """

    def __init__(
        self, policy: nn.Module, action: GroupAction, average: str = "probs", hidden_batch_dim: int = 0
    ) -> None:
        super().__init__()
        if average not in AVERAGES:
            raise ValueError(f"average={average!r}; allowed: {', '.join(AVERAGES)}")
        self.policy = policy
        self.action = action
        self.average = average
        self.hidden_batch_dim = hidden_batch_dim
        self.spec = getattr(policy, "spec", None)
        n_act = getattr(self.spec, "action_dim", None)
        if n_act is not None and getattr(self.spec, "action_type", "discrete") == "discrete" and n_act != action.n_actions:
            raise ValueError(f"policy has {n_act} actions but the group action permutes {action.n_actions}")

    # -------------------------------------------------------- checkpoints
    def state_dict(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """The wrapped policy's state dict (same keys as an unwrapped checkpoint)."""
        return self.policy.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Load a plain-policy state dict into the wrapped policy."""
        return self.policy.load_state_dict(state_dict, strict=strict, assign=assign)

    # -------------------------------------------------------------- core
    def symmetrized_log_probs(self, obs: Observation, hidden: Hidden = None) -> Any:
        """Log-probabilities of ``S(psi)``: ``[*B, n_actions]`` (and the new hidden state).

        Args:
            obs: observation with batch dims ``*B`` (e.g. ``[E, A]``).
            hidden: recurrent state (batch dim ``hidden_batch_dim`` of size ``B0``) or None.

        Returns:
            ``log_probs [*B, n_actions]``, or ``(log_probs, new_hidden)`` when ``hidden`` is given.
        """
        n = self.action.order
        copies = self.action.all_observations(obs)
        if hidden is None:
            out = self.policy.distribution(copies)
            new_hidden = None
        else:
            out, new_hidden = self.policy.distribution(copies, hidden=_tile(hidden, n, self.hidden_batch_dim))
            new_hidden = _average(new_hidden, n, self.hidden_batch_dim)
        logits = _logits_of(out)
        logp = torch.log_softmax(logits, dim=-1)
        logp = self.action.pull_back_outputs(logp.reshape(n, *obs.obs.shape[:-1], logp.shape[-1]))
        if self.average == "probs":
            avg = torch.logsumexp(logp, dim=0) - math.log(n)
        else:
            avg = logp.mean(0)
            avg = avg - avg.logsumexp(-1, keepdim=True)
        return avg if hidden is None else (avg, new_hidden)

    def distribution(self, obs: Observation, hidden: Hidden = None) -> Any:
        """``S(psi)`` as a :class:`MaskedCategorical` over ``[*B]`` (and the new hidden state)."""
        if hidden is None:
            return MaskedCategorical(self.symmetrized_log_probs(obs), obs.action_mask)
        logp, new_hidden = self.symmetrized_log_probs(obs, hidden)
        return MaskedCategorical(logp, obs.action_mask), new_hidden

    def value(self, obs: Observation, hidden: Hidden = None) -> Any:
        """Value averaged over the copies: ``[*B]`` (and the new hidden state)."""
        n = self.action.order
        copies = self.action.all_observations(obs)
        if hidden is None:
            v = self.policy.value(copies)
            return v.reshape(n, *obs.obs.shape[:-1]).mean(0)
        v, new_hidden = self.policy.value(copies, hidden=_tile(hidden, n, self.hidden_batch_dim))
        return v.reshape(n, *obs.obs.shape[:-1]).mean(0), _average(new_hidden, n, self.hidden_batch_dim)


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


def make_eqc(policy: nn.Module, action: GroupAction | None, average: str = "probs") -> nn.Module:
    """Wrap ``policy`` in :class:`EQC` when ``action`` is given, else return it unchanged."""
    return policy if action is None else EQC(policy, action, average=average)
