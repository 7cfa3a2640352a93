"""Policies: encoders (mlp, gnn, egnn, e2gn2) + heads, behind :class:`Policy`."""

from eqmarl.models.policy import Policy
from eqmarl.models.registry import make_policy

__all__ = ["Policy", "make_policy"]
