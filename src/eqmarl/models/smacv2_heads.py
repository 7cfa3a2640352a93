"""E2GN2's mixed action head for SMACv2 (``EnvSpec.action_type == "mixed"``).

Three distributions, one joint action ``[choice, move_x, move_y, target]`` per agent
(the layout of :mod:`eqmarl.core.smacv2_actions`):

1. ``choice`` (stop / move / attack): a categorical whose logits are a linear map of the
   agent node's invariant features ``h_i``;
2. ``move``: an isotropic Gaussian in 2-D whose mean is the agent node's equivariant
   vector ``u_i`` (equivariant encoders) or a linear map of ``h_i`` (MLP, GNN); one
   learned log-std for both axes, so the whole distribution rotates with the world.
   With discrete movement the env maps the sampled vector to the nearest available
   compass move (the E2GN2 authors' "rounding after sampling");
3. ``target``: a categorical whose logit for enemy ``j`` is a linear map of enemy node
   ``j``'s invariant features (graph encoders: any number of enemies) or one logit per
   enemy from ``h_i`` (MLP: a fixed enemy count).

The action mask ``[*B, 7 + n_enemies]`` (choices, compass moves, targets) removes
unavailable choices and targets, so none is ever sampled.  Joint log-prob:
``log p(c) + [c = move] log N(v) + [c = attack] log p(t)``; entropy:
``H(c) + p(move) H(N) + p(attack) H(t)`` (the exact entropy of the joint action, whose
unused parts are not part of it).

The entropy bonus's gradient (``model.mixed_entropy``): with ``joint`` it is the exact
entropy's, whose ``dp(move)/dz * H(N)`` term pushes the choice towards the part with the
largest entropy.  The move's is a differential entropy (1.84 nats at the default
log-std, more than the 1.61 of 5 targets), whose value depends on the units of the move
vector, so that push is an artefact of scale: on SMAX it drives the choice towards
"move", units walk out of range and some seeds learn to attack only after 100k+ env
steps.  ``per_part`` (the default) keeps the same value but holds ``p(move)`` and
``p(attack)`` fixed in the gradient, so the choice gets only ``H(c)``'s gradient and each
part keeps its own bonus.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from eqmarl.core.smacv2_actions import CHOICE_ATTACK, CHOICE_MOVE, MASK_TARGETS, N_CHOICES
from eqmarl.models.distributions import DiagGaussian, MaskedCategorical
from eqmarl.models.heads import ActorFeatures, TargetLogitsHead, _linear

# model.mixed_entropy: the entropy bonus's gradient on the choice (see the module docstring)
MIXED_ENTROPY = ("per_part", "joint")


def compass_probs(mean: Tensor, log_std: Tensor, directions: Tensor) -> Tensor:
    """Probabilities of the 4 compass moves when ``v ~ N(mean, sigma^2 I)`` is mapped to
    the direction of largest dot product (all moves available).

    The region of direction ``d`` is ``{<v, d> > |<v, d_perp>|}``, a right-angled wedge;
    in the coordinates ``a = <v, (d + d_perp)/sqrt 2>``, ``b = <v, (d - d_perp)/sqrt 2>`` it is
    ``a > 0, b > 0`` and the isotropic Gaussian factorizes, so
    ``P(d) = Phi(mu_a / sigma) Phi(mu_b / sigma)``.

    Args:
        mean: ``[*B, 2]``.
        log_std: log-std, broadcastable to ``[*B, 1]``.
        directions: ``[4, 2]`` unit compass directions.

    Returns:
        ``[*B, 4]``.
    """
    perp = torch.stack([-directions[:, 1], directions[:, 0]], dim=-1)
    ea = (directions + perp) / math.sqrt(2.0)
    eb = (directions - perp) / math.sqrt(2.0)
    sigma = log_std.exp()
    norm = torch.distributions.Normal(torch.zeros((), dtype=mean.dtype), torch.ones((), dtype=mean.dtype))
    return norm.cdf(mean @ ea.T.to(mean.dtype) / sigma) * norm.cdf(mean @ eb.T.to(mean.dtype) / sigma)


class MixedDistribution:
    """The joint distribution of :mod:`module <eqmarl.models.smacv2_heads>`; ``[*B]`` batch.

    Attributes:
        choice / target: :class:`MaskedCategorical` over choices / targets.
        move: :class:`DiagGaussian` with an isotropic std.
        entropy_grad: ``model.mixed_entropy`` (``per_part``: the parts' weights
            ``p(move)``, ``p(attack)`` are constants in :meth:`entropy`'s gradient).
    """

    def __init__(
        self, choice: MaskedCategorical, move: DiagGaussian, target: MaskedCategorical, entropy_grad: str = "per_part"
    ) -> None:
        self.choice, self.move, self.target = choice, move, target
        self.entropy_grad = entropy_grad

    def _pack(self, c: Tensor, v: Tensor, t: Tensor) -> Tensor:
        return torch.cat([c.unsqueeze(-1).to(v.dtype), v, t.unsqueeze(-1).to(v.dtype)], dim=-1)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """``[*B, 4]``: every part is drawn; the env reads only the chosen one."""
        return self._pack(self.choice.sample(generator), self.move.sample(generator), self.target.sample(generator))

    def mode(self) -> Tensor:
        return self._pack(self.choice.mode(), self.move.mode(), self.target.mode())

    def log_prob(self, action: Tensor) -> Tensor:
        c = action[..., 0].long()
        lp = self.choice.log_prob(c)
        lp = lp + torch.where(c == CHOICE_MOVE, self.move.log_prob(action[..., 1:3]), 0.0)
        return lp + torch.where(c == CHOICE_ATTACK, self.target.log_prob(action[..., 3].long()), 0.0)

    def entropy(self) -> Tensor:
        """The joint action's exact entropy (its gradient: see ``entropy_grad``)."""
        p = self.choice.logits.exp()
        if self.entropy_grad == "per_part":
            p = p.detach()
        h_move = p[..., CHOICE_MOVE] * self.move.entropy()
        return self.choice.entropy() + h_move + p[..., CHOICE_ATTACK] * self.target.entropy()

    def choice_probs(self) -> Tensor:
        return self.choice.logits.exp()

    def target_probs(self) -> Tensor:
        return self.target.logits.exp()

    def compass_probs(self, directions: Tensor) -> Tensor:
        """``[*B, 4]`` probabilities of the compass moves (see :func:`compass_probs`)."""
        return compass_probs(self.move.mean, self.move.log_std[..., :1], directions)


class MixedActionHead(nn.Module):
    """Features -> :class:`MixedDistribution` (see the module docstring).

    Args:
        in_dim: width of ``h``.
        n_targets: enemies (used only without node features: the MLP's fixed logit count).
        equivariant: the move mean is the encoder's ``u`` (else a linear map of ``h``).
        init_log_std: initial log-std of the move.
        node_targets: target logits from the enemy nodes' features (graph encoders), else
            ``n_targets`` logits from ``h`` (MLP).
        mixed_entropy: ``model.mixed_entropy`` (one of ``MIXED_ENTROPY``).
    """

    def __init__(
        self,
        in_dim: int,
        n_targets: int,
        equivariant: bool,
        init_log_std: float,
        node_targets: bool = True,
        mixed_entropy: str = "per_part",
    ) -> None:
        super().__init__()
        if mixed_entropy not in MIXED_ENTROPY:
            raise ValueError(f"mixed_entropy={mixed_entropy!r}: one of {', '.join(MIXED_ENTROPY)}")
        self.mixed_entropy = mixed_entropy
        self.equivariant = equivariant
        self.choice = _linear(in_dim, N_CHOICES, 0.01)
        self.mean = None if equivariant else _linear(in_dim, 2, 0.01)
        self.log_std = nn.Parameter(torch.tensor(float(init_log_std)))
        self.node_targets = TargetLogitsHead(in_dim) if node_targets else None
        self.flat_targets = None if node_targets else _linear(in_dim, n_targets, 0.01)

    def forward(self, feats: ActorFeatures, action_mask: Tensor | None = None) -> MixedDistribution:
        h = feats.h
        if self.equivariant:
            if feats.u is None:
                raise ValueError("an equivariant move head needs an equivariant encoder (u)")
            mean = feats.u
        else:
            assert self.mean is not None
            mean = self.mean(h)
        n_agents = h.shape[-2]
        if self.node_targets is not None:
            if feats.h_nodes is None:
                raise ValueError("target logits from enemy nodes need a graph encoder (h_nodes)")
            n_targets = feats.h_nodes.shape[-2] - n_agents
            nodes = torch.arange(n_agents, n_agents + n_targets, device=h.device)
            target_logits = self.node_targets(feats, nodes, n_agents)
        else:
            assert self.flat_targets is not None
            target_logits = self.flat_targets(h)
            n_targets = target_logits.shape[-1]
        choice_mask = target_mask = None
        if action_mask is not None:
            if action_mask.shape[-1] != MASK_TARGETS + n_targets:
                raise ValueError(
                    f"action mask has {action_mask.shape[-1]} entries; this policy has {n_targets} targets "
                    f"(expected {MASK_TARGETS + n_targets}): the MLP's head is built for a fixed enemy count"
                )
            choice_mask = action_mask[..., :N_CHOICES]
            target_mask = action_mask[..., MASK_TARGETS:]
        log_std = self.log_std.to(mean.dtype).expand(2)
        return MixedDistribution(
            MaskedCategorical(self.choice(h), choice_mask),
            DiagGaussian(mean, log_std),
            MaskedCategorical(target_logits, target_mask),
            self.mixed_entropy,
        )

    def distribution_parameters(self) -> list[nn.Parameter]:
        """Parameters the returned distribution reads after :meth:`forward` returned (the
        move's log-std; see :class:`~eqmarl.models.heads.ExternalParameters`)."""
        return [self.log_std]
