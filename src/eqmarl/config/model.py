"""``model=`` group: the policy architecture, and its own check.

The allowed names come from the modules that own them: encoders from
:func:`eqmarl.models.registry.model_names` (graph models: ``graph_model_names``),
activations from :mod:`eqmarl.models.mlp`, message-passing backends from
:mod:`eqmarl.models.message_passing`, EQC's averages from :mod:`eqmarl.wrappers.eqc`
(imported lazily: they import torch).  Checks against the env (a graph model needs an
entity graph; a symmetry group must fit the env) are in :mod:`eqmarl.config.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from eqmarl.config.errors import ConfigError, check_choice, check_positive


@dataclass
class ModelConfig:
    """Policy architecture (``model=`` group)."""

    # encoder: mlp (more registered by graph model modules)
    name: str = "mlp"
    # encoder of the critic (a model.name value); None: the same as name.  A cheaper critic
    # (e.g. mlp on the agent's own view under an e2gn2 actor) costs less per update; the
    # policy's equivariance is the actor's and does not depend on it
    critic: Optional[str] = None
    # hidden width of every layer
    hidden: int = 64
    # number of hidden layers (MLP) / message-passing layers (graph models)
    layers: int = 2
    # activation: tanh | relu | silu | elu
    activation: str = "tanh"
    # initial log-std of continuous Gaussian actions
    init_log_std: float = -0.5
    # mixed actions (SMACv2: choice, move, target): the entropy bonus's gradient on the
    # choice.  per_part: each part keeps its bonus, the choice gets only its own entropy's
    # gradient; joint: the exact joint entropy's gradient, which also pushes the choice
    # towards the part of largest entropy (the move's Gaussian, a scale-dependent
    # differential entropy), so on SMAX some seeds learn the attack late (runs trained
    # before 2026-12-07 used joint)
    mixed_entropy: str = "per_part"
    # graph models: implementation of message passing: dense (batched tensors, fast for
    # small complete graphs) | pyg (torch-geometric MessagePassing over an edge list)
    graph_backend: str = "dense"
    # graph models: feed velocities as a second equivariant vector channel
    use_velocity: bool = True
    # EQC: symmetrize the policy over this group of the env's symmetries (e.g. C5, D10,
    # S5 on Hanabi colours; C9 on the lever game's 1.0-levers); None: off.  Training goes
    # through the symmetrizer (gradients included); checkpoints hold the plain policy.
    eqc: Optional[str] = None
    # what EQC averages over the group copies: probs (mixture) | logits (log-probabilities)
    eqc_average: str = "probs"
    # start the action head uniform over the orbits of this group (a name as for model.eqc)
    # instead of uniform over actions: each class of equivalent actions gets the same
    # initial mass (logit bias -log(orbit size)); None: off
    orbit_init: Optional[str] = None
    # graph models: sparse graphs: every node receives messages from its k nearest nodes
    # (among those the env's edge rule allows); 0: the complete graph.  Edges N(N-1) ->
    # N k per graph: use it from a few tens of agents on (see docs/scaling.md)
    knn: int = 0
    # graph models: recompute each message-passing layer's edge activations in backward
    # instead of keeping them (about one extra forward; memory per layer -> its inputs)
    activation_checkpointing: bool = False
    # one set of weights for all agents (True) or per-agent actor and critic weights
    # (False: stacked, applied in one batched op; parameter memory grows with the agent
    # count, which ZeRO shards with learner=deepspeed; the agent count is then fixed)
    share_params: bool = True


# model.init_log_std: std = exp(init_log_std) must stay a usable float32
MAX_ABS_INIT_LOG_STD = 20.0
# the range of each float key, for the message when a value is not finite
FLOAT_RANGES = {"model.init_log_std": f"in [-{MAX_ABS_INIT_LOG_STD:g}, {MAX_ABS_INIT_LOG_STD:g}]"}


def check_model(m: ModelConfig) -> None:
    """Names among the registered ones, sizes, and the keys only some encoders use.

    Raises:
        ConfigError: naming the key and the allowed values.
    """
    from eqmarl.models.message_passing import GRAPH_BACKENDS
    from eqmarl.models.mlp import ACTIVATIONS
    from eqmarl.models.registry import graph_model_names, model_names
    from eqmarl.models.smacv2_heads import MIXED_ENTROPY
    from eqmarl.wrappers.eqc import AVERAGES

    check_choice("model.name", m.name, model_names())
    if m.critic is not None:
        check_choice("model.critic", m.critic, model_names())
    check_positive("model.hidden", m.hidden)
    check_positive("model.layers", m.layers)
    check_positive("model.knn", m.knn, allow_zero=True)
    if not abs(m.init_log_std) <= MAX_ABS_INIT_LOG_STD:
        raise ConfigError("model.init_log_std", m.init_log_std, FLOAT_RANGES["model.init_log_std"])
    check_choice("model.graph_backend", m.graph_backend, GRAPH_BACKENDS)
    check_choice("model.activation", m.activation, ACTIVATIONS)
    check_choice("model.eqc_average", m.eqc_average, AVERAGES)
    check_choice("model.mixed_entropy", m.mixed_entropy, MIXED_ENTROPY)
    if not m.share_params and m.name != "mlp":
        raise ConfigError(
            "model.share_params",
            False,
            f"true with model.name={m.name} (graph models share their message functions across nodes; "
            f"per-agent weights: model.name=mlp)",
        )
    graph_models = graph_model_names()
    if m.knn and m.name not in graph_models:
        raise ConfigError(
            "model.knn", m.knn, f"0 with model.name={m.name} (kNN graphs are for {', '.join(graph_models)})"
        )
