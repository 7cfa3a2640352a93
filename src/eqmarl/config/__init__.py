"""Typed configuration: one schema per config group, registered in hydra's ConfigStore.

Values live in ``configs/`` (YAML); ``launch.py`` composes them with hydra, converts the
result once to these dataclasses (:func:`to_config`) and checks them (:func:`validate`).
Nothing past ``launch.py`` sees a ``DictConfig``.

One module per group holds its schema, every field documented where it is defined, and
the group's own check beside it: :mod:`~eqmarl.config.env`, :mod:`~eqmarl.config.model`,
:mod:`~eqmarl.config.algo`, :mod:`~eqmarl.config.train`, :mod:`~eqmarl.config.logger`,
:mod:`~eqmarl.config.cluster`, :mod:`~eqmarl.config.learner`,
:mod:`~eqmarl.config.container`.  :mod:`~eqmarl.config.run` is the whole run's schema and
the ConfigStore registration, :mod:`~eqmarl.config.checks` the one check across groups,
:mod:`~eqmarl.config.convert` the conversion from hydra's config.  Every refusal is a
:class:`ConfigError` (:class:`eqmarl.core.errors.InvalidOption`, which the envs raise too)
naming the key and the allowed values, so a bad sweep stops before anything runs or is
submitted.
"""

from eqmarl.config.algo import AlgoConfig
from eqmarl.config.checks import FLOAT_RANGES, check_across_groups, check_symmetry_group, validate, validate_finite
from eqmarl.config.cluster import ClusterConfig
from eqmarl.config.container import ContainerConfig
from eqmarl.config.convert import REQUIRED_GROUPS, check_overrides, to_config, unknown_keys
from eqmarl.config.env import (
    ENV_SCHEMAS,
    EnvConfig,
    HanabiEnvConfig,
    LeverEnvConfig,
    MpeEnvConfig,
    Smacv2EnvConfig,
    validate_env_overrides,
)
from eqmarl.config.errors import ConfigError
from eqmarl.config.learner import LearnerConfig
from eqmarl.config.logger import LoggerConfig
from eqmarl.config.model import ModelConfig
from eqmarl.config.run import MAX_SEED, Config, register_configs
from eqmarl.config.train import MAX_ENVS, TrainConfig

__all__ = [
    "ENV_SCHEMAS",
    "FLOAT_RANGES",
    "MAX_ENVS",
    "MAX_SEED",
    "REQUIRED_GROUPS",
    "AlgoConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "ContainerConfig",
    "EnvConfig",
    "HanabiEnvConfig",
    "LearnerConfig",
    "LeverEnvConfig",
    "LoggerConfig",
    "ModelConfig",
    "MpeEnvConfig",
    "Smacv2EnvConfig",
    "TrainConfig",
    "check_across_groups",
    "check_overrides",
    "check_symmetry_group",
    "register_configs",
    "to_config",
    "unknown_keys",
    "validate",
    "validate_env_overrides",
    "validate_finite",
]
