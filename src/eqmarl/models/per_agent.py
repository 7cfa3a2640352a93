"""Per-agent parameters (``model.share_params=false``): every agent its own actor and critic.

The weights of all agents are stacked (``[A, in, out]``) and applied in one batched
product over the agent dim (:class:`PerAgentLinear`), never a Python loop over agents,
so parameter, gradient and optimizer memory grow with the agent count: the case ZeRO
(``learner=deepspeed``, ``learner.zero_stage``) shards.

Supported for ``model.name=mlp`` (every layer, the action head, the log-std and the
value head per agent; a MAPPO critic reads the global state with each agent's own
weights).  Graph models share their message functions across nodes by construction:
that sharing is what makes them permutation-equivariant and lets one network serve any
number of entities, so per-agent weights are refused there with a message.  A policy
with per-agent weights serves exactly the agent count it was built for; evaluating it
on another count fails with a clear error.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from eqmarl.core.env import EnvSpec, Observation
from eqmarl.models.heads import ActorFeatures, CategoricalHead, Encoder, GaussianHead, ValueHead
from eqmarl.models.mlp import ACTIVATIONS
from eqmarl.models.policy import Policy

if TYPE_CHECKING:
    from eqmarl.models.params import ModelParams


class PerAgentLinear(nn.Module):
    """``x [..., A, in] -> [..., A, out]`` with agent ``a``'s own ``W_a [in, out]`` and ``b_a``.

    Args:
        n_agents: ``A``.
        in_dim / out_dim: sizes.
        gain: orthogonal-init gain of each agent's matrix (biases start at zero).
    """

    def __init__(self, n_agents: int, in_dim: int, out_dim: int, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.weight = nn.Parameter(torch.empty(n_agents, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(n_agents, out_dim))
        for a in range(n_agents):  # init only; forward has no loop over agents
            nn.init.orthogonal_(self.weight.data[a].T, gain)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] != self.n_agents:
            raise ValueError(
                f"model.share_params=false: this policy has weights for {self.n_agents} agents; the input has "
                f"{x.shape[-2]} (per-agent weights need the agent count they were trained with; use "
                f"model.share_params=true to transfer across agent counts)"
            )
        lead = x.shape[:-2]
        xf = x.reshape(-1, self.n_agents, x.shape[-1]).transpose(0, 1)  # [A, M, in]
        y = torch.baddbmm(self.bias.unsqueeze(1), xf, self.weight)  # [A, M, out]
        return y.transpose(0, 1).reshape(*lead, self.n_agents, -1)


class PerAgentMLPEncoder(Encoder):
    """``obs [E, A, in] -> h [E, A, hidden]`` with per-agent layers.

    Args:
        n_agents: ``A``.
        in_dim: input size (observation, or global state for a centralized critic).
        hidden / layers / activation: as :class:`~eqmarl.models.mlp.MLPEncoder`.
        source: ``obs`` or ``state`` (the global state, read by every agent's own critic).
    """

    equivariant = False
    uses_graph = False

    def __init__(
        self, n_agents: int, in_dim: int, hidden: int, layers: int, activation: str, source: str = "obs"
    ) -> None:
        super().__init__()
        sizes = [in_dim] + [hidden] * layers
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [PerAgentLinear(n_agents, sizes[i], sizes[i + 1]), ACTIVATIONS[activation]()]
        self.net = nn.Sequential(*mods)
        self.out_dim = hidden
        self.source = source
        self.n_agents = n_agents

    def forward(self, obs: Observation) -> ActorFeatures:
        if self.source == "state":
            x = obs.state.unsqueeze(-2).expand(*obs.state.shape[:-1], self.n_agents, obs.state.shape[-1])
        else:
            x = obs.obs
        return ActorFeatures(h=self.net(x))


def make_per_agent_policy(model_cfg: ModelParams, spec: EnvSpec, centralized_critic: bool) -> Policy:
    """The policy of ``model.share_params=false`` (see the module docstring)."""
    if model_cfg.name != "mlp":
        raise ValueError(
            f"model.share_params=false with model.name={model_cfg.name}: graph models share their message "
            f"functions across nodes (that is their permutation equivariance); use model.name=mlp for "
            f"per-agent weights"
        )
    a = spec.n_agents
    actor = PerAgentMLPEncoder(a, spec.obs_dim, model_cfg.hidden, model_cfg.layers, model_cfg.activation)
    if centralized_critic:
        critic = PerAgentMLPEncoder(
            a, spec.state_dim, model_cfg.hidden, model_cfg.layers, model_cfg.activation, "state"
        )
    else:
        critic = PerAgentMLPEncoder(a, spec.obs_dim, model_cfg.hidden, model_cfg.layers, model_cfg.activation)
    policy = Policy(actor, critic, spec, init_log_std=model_cfg.init_log_std, mixed_entropy=model_cfg.mixed_entropy)
    head = policy.head
    if isinstance(head, GaussianHead):
        # the heads call these maps on h [..., A, H]; a per-agent map stands in for the Linear
        head.mean = PerAgentLinear(a, model_cfg.hidden, spec.action_dim, gain=0.01)  # type: ignore[assignment]
        head.log_std = nn.Parameter(head.log_std.detach().expand(a, -1).clone())
    elif isinstance(head, CategoricalHead):
        head.logits = PerAgentLinear(a, model_cfg.hidden, spec.action_dim, gain=0.01)  # type: ignore[assignment]
    assert isinstance(policy.value_head, ValueHead)
    policy.value_head.v = PerAgentLinear(a, model_cfg.hidden, 1, gain=1.0)  # type: ignore[assignment]
    return policy
