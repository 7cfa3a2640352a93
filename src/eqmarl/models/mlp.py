"""MLP encoder: the non-graph baseline (per-agent flat observation -> features)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from eqmarl.envs.base import Observation
from eqmarl.models.heads import ActorFeatures

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU}


def make_mlp(sizes: list[int], activation: str, last_activation: bool = True) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with orthogonal init (gain sqrt 2)."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        nn.init.orthogonal_(lin.weight, math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2 or last_activation:
            layers.append(act())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """``obs [E, A, obs_dim] -> h [E, A, hidden]``; not equivariant (a baseline).

    Args:
        in_dim: observation size.
        hidden: width of each hidden layer.
        layers: number of hidden layers.
        activation: one of ``tanh, relu, silu, elu``.
        source: ``obs`` (per-agent view) or ``state`` (global state, for a centralized
            critic; the features are then shared by all agents of an env).
        n_agents: agents per env (used with ``source='state'``).
    """

    equivariant = False

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        layers: int,
        activation: str = "tanh",
        source: str = "obs",
        n_agents: int = 1,
    ) -> None:
        super().__init__()
        self.net = make_mlp([in_dim] + [hidden] * layers, activation)
        self.out_dim = hidden
        self.source = source
        self.n_agents = n_agents

    def forward(self, obs: Observation) -> ActorFeatures:
        if self.source == "state":
            h = self.net(obs.state)  # [E, H]
            return ActorFeatures(h=h.unsqueeze(-2).expand(*h.shape[:-1], self.n_agents, h.shape[-1]))
        return ActorFeatures(h=self.net(obs.obs))
