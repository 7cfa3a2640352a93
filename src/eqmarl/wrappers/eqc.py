"""EQC: the equivariant-coordinator symmetrizer (Muglich et al., NeurIPS 2022).

For a finite group ``G`` acting on observations (``L_g``) and on discrete actions
(``K_g``), the symmetrizer turns any policy ``psi`` into a ``G``-equivariant one:

    S(psi)(x) = 1/|G| sum_g K_g^{-1} psi(L_g x)

``S(psi)`` satisfies ``S(psi)(L_h x) = K_h S(psi)(x)`` for every ``h`` in ``G`` as long
as ``g -> L_g`` and ``g -> K_g`` are group homomorphisms (checked by
:class:`~eqmarl.symmetry.actions.GroupAction`), and ``S(psi) = psi`` for a policy that is already equivariant.

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

The conventions for ``obs_perm`` and ``action_perm`` are those of
:mod:`eqmarl.symmetry.actions`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from eqmarl.core.env import Observation
from eqmarl.models.distributions import MaskedCategorical
from eqmarl.models.heads import ExternalParameters
from eqmarl.models.policy import ActorCritic
from eqmarl.symmetry.actions import GroupAction

AVERAGES = ("probs", "logits")
Hidden = Any  # a tensor or a tuple/list of tensors (e.g. an LSTM's (h, c))


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
    shape = (*hidden.shape[:dim], n, b, *hidden.shape[dim + 1 :])
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
        # any module with distribution() and value() (Policy, a recurrent policy, ...): duck-typed
        self.policy: Any = policy
        self.action = action
        self.average = average
        self.hidden_batch_dim = hidden_batch_dim
        self.spec = getattr(policy, "spec", None)
        n_act = getattr(self.spec, "action_dim", None)
        if (
            n_act is not None
            and getattr(self.spec, "action_type", "discrete") == "discrete"
            and n_act != action.n_actions
        ):
            raise ValueError(f"policy has {n_act} actions but the group action permutes {action.n_actions}")

    # -------------------------------------------------------- checkpoints
    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped policy's state dict (same keys as an unwrapped checkpoint)."""
        return self.policy.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load a plain-policy state dict into the wrapped policy."""
        return self.policy.load_state_dict(state_dict, strict=strict, assign=assign)

    def zero3_external_parameters(self) -> list[nn.Parameter]:
        """What the wrapped policy declares (:class:`~eqmarl.models.heads.ExternalParameters`):
        this module's forward calls the policy's methods, never the policy's forward."""
        return self.policy.zero3_external_parameters() if isinstance(self.policy, ExternalParameters) else []

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


def make_eqc(policy: nn.Module, action: GroupAction | None, average: str = "probs") -> nn.Module:
    """Wrap ``policy`` in :class:`EQC` when ``action`` is given, else return it unchanged."""
    return policy if action is None else EQC(policy, action, average=average)
