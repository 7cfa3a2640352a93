"""The whole run's schema (every group plus ``seed``, ``resume`` and ``experiment``) and its
registration in hydra's ConfigStore."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from eqmarl.config.algo import AlgoConfig
from eqmarl.config.cluster import ClusterConfig
from eqmarl.config.container import ContainerConfig
from eqmarl.config.env import ENV_SCHEMAS, EnvConfig
from eqmarl.config.errors import ConfigError
from eqmarl.config.learner import LearnerConfig
from eqmarl.config.logger import LoggerConfig
from eqmarl.config.model import ModelConfig
from eqmarl.config.train import TrainConfig


@dataclass
class Config:
    """The whole run."""

    env: EnvConfig = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    container: ContainerConfig = field(default_factory=ContainerConfig)
    # global seed (envs, parameters, sampling)
    seed: int = 0
    # continue from a run directory or a checkpoint file (None: fresh run)
    resume: Optional[str] = None
    # name of the experiment preset in use (for W&B grouping)
    experiment: Optional[str] = None


# seeds: numpy's legacy seeding takes [0, 2**32); ranks add 1_000_003 * rank, evaluation 777
MAX_SEED = 2**31 - 1


def check_seed(cfg: Config) -> None:
    """``seed`` in [0, :data:`MAX_SEED`] (the keys of the run itself; ``resume`` is checked when the run starts)."""
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError("seed", cfg.seed, f"an integer in [0, {MAX_SEED}]")


def register_configs() -> None:
    """Register the schemas in hydra's ConfigStore (called by ``launch.py``)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="eqmarl_schema", node=Config)
    for name, schema in ENV_SCHEMAS.items():
        cs.store(group="env", name=f"schema_{name}", node=schema)
    cs.store(group="model", name="schema", node=ModelConfig)
    cs.store(group="algo", name="schema", node=AlgoConfig)
    cs.store(group="logger", name="schema", node=LoggerConfig)
    cs.store(group="cluster", name="schema", node=ClusterConfig)
    cs.store(group="learner", name="schema", node=LearnerConfig)
    cs.store(group="container", name="schema", node=ContainerConfig)
