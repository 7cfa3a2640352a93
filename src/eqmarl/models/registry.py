"""The encoders by ``model.name`` and the one factory of a policy from ``model.*``.

Each builder gets the model config, the env spec, the role (``actor`` or ``critic``) and
whether the critic is centralized (MAPPO), and returns a module
``Observation -> ActorFeatures`` with attributes ``out_dim`` and ``equivariant``.  A new
model registers itself here (:func:`register_encoder`); the config's list of allowed
``model.name`` values and of graph models is read from this registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from eqmarl.core.env import EnvSpec
from eqmarl.models.e2gn2 import build_e2gn2
from eqmarl.models.egnn import build_egnn
from eqmarl.models.gnn import build_gnn
from eqmarl.models.mlp import build_mlp
from eqmarl.models.params import EncoderBuilder, ModelParams
from eqmarl.models.per_agent import make_per_agent_policy
from eqmarl.models.policy import Policy


@dataclass(frozen=True)
class EncoderEntry:
    """A registered encoder: its builder, and whether it reads ``Observation.graph``."""

    build: EncoderBuilder
    graph: bool


ENCODERS: dict[str, EncoderEntry] = {}


def register_encoder(name: str, builder: EncoderBuilder, graph: bool) -> None:
    """Make ``model.name=<name>`` build encoders with ``builder(cfg, spec, role, centralized)``.

    Args:
        name: the ``model.name`` value.
        builder: see the module docstring.
        graph: whether the encoder reads the env's entity graph (``EntityGraph``), so it
            needs an env that provides one and may use ``model.knn``.
    """
    ENCODERS[name] = EncoderEntry(builder, graph)


register_encoder("mlp", build_mlp, graph=False)
register_encoder("gnn", build_gnn, graph=True)
register_encoder("egnn", build_egnn, graph=True)
register_encoder("e2gn2", build_e2gn2, graph=True)


def model_names() -> tuple[str, ...]:
    """Every allowed ``model.name``, sorted."""
    return tuple(sorted(ENCODERS))


def graph_model_names() -> tuple[str, ...]:
    """The ``model.name`` values whose encoders read the entity graph, sorted."""
    return tuple(sorted(name for name, e in ENCODERS.items() if e.graph))


def make_policy(model_cfg: ModelParams, spec: EnvSpec, centralized_critic: bool) -> Policy:
    """Build the policy named by ``model_cfg.name`` for ``spec``.

    Args:
        model_cfg: ``model.*`` (an :class:`eqmarl.config.ModelConfig`).
        spec: the env's spec.
        centralized_critic: MAPPO (critic on the global state / whole graph) vs IPPO.
    """
    if not model_cfg.share_params:  # per-agent weights (models/per_agent.py)
        return make_per_agent_policy(model_cfg, spec, centralized_critic)
    critic_name = getattr(model_cfg, "critic", None) or model_cfg.name
    for key, name in (("model.name", model_cfg.name), ("model.critic", critic_name)):
        if name not in ENCODERS:
            raise ValueError(f"{key}={name!r}; allowed: {', '.join(model_names())}")
    actor = ENCODERS[model_cfg.name].build(model_cfg, spec, "actor", centralized_critic)
    critic = ENCODERS[critic_name].build(model_cfg, spec, "critic", centralized_critic)
    return Policy(actor, critic, spec, init_log_std=model_cfg.init_log_std, mixed_entropy=model_cfg.mixed_entropy)
