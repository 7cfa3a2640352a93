"""What models read of the config, and the shape of an encoder builder.

Models depend on :class:`ModelParams`, not on the config module, which sits above them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from eqmarl.core.env import EnvSpec
from eqmarl.models.heads import Encoder


class ModelParams(Protocol):
    """What encoder builders read of ``model.*`` (:class:`eqmarl.config.ModelConfig` has it)."""

    name: str
    hidden: int
    layers: int
    activation: str
    init_log_std: float
    # mixed actions (SMACv2): the entropy bonus's gradient on the choice (per_part | joint)
    mixed_entropy: str
    graph_backend: str
    use_velocity: bool
    knn: int
    activation_checkpointing: bool
    share_params: bool
    # the critic's encoder name (None: the same as ``name``)
    critic: str | None


# builder(model config, env spec, role ("actor" | "critic"), centralized critic) -> encoder
EncoderBuilder = Callable[[ModelParams, EnvSpec, str, bool], Encoder]
