"""Typed configuration: one dataclass per component, registered in hydra's ConfigStore.

Values live in ``configs/`` (YAML); ``launch.py`` composes them with hydra, converts the
result once to these dataclasses (:func:`to_config`) and checks them (:func:`validate`).
Nothing past ``launch.py`` sees a ``DictConfig``.

Every field is documented where it is defined.  :func:`validate` names the offending
key and the allowed values, so a bad sweep stops before anything runs or is submitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


class ConfigError(ValueError):
    """A bad config value; the message names the key and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"invalid config: {key}={value!r}; allowed: {allowed}")
        self.key = key


# ----------------------------------------------------------------------------- env
@dataclass
class EnvConfig:
    """Base of every env config (``env=`` group)."""

    # which environment family: mpe (more in later configs)
    name: str = MISSING
    # steps after which an episode is truncated (MPE: 25)
    episode_limit: int = 25


@dataclass
class MpeEnvConfig(EnvConfig):
    """MPE tasks (``env=mpe``)."""

    name: str = "mpe"
    # simple_spread | simple_tag
    scenario: str = "simple_spread"
    # vmas (batched torch, default) | mpe2 (PettingZoo reference, worker processes)
    backend: str = "vmas"
    # learning agents (simple_spread: agents = landmarks; simple_tag: predators)
    n_agents: int = 3
    # simple_tag obstacles (None = the scenario's default, 2)
    n_landmarks: Optional[int] = None
    # simple_tag prey (scripted, not learning)
    n_prey: int = 1
    # scripted prey in simple_tag: flee | random | still
    prey_policy: str = "flee"
    # continuous 2-D force actions (True) or 5 discrete moves (False)
    continuous_actions: bool = True
    # mpe2 backend only: worker processes that step the envs
    workers: int = 2


# --------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    """Policy architecture (``model=`` group)."""

    # encoder: mlp (more registered by graph model modules)
    name: str = "mlp"
    # hidden width of every layer
    hidden: int = 64
    # number of hidden layers (MLP) / message-passing layers (graph models)
    layers: int = 2
    # activation: tanh | relu | silu | elu
    activation: str = "tanh"
    # initial log-std of continuous Gaussian actions
    init_log_std: float = -0.5
    # graph models: implementation of message passing: dense (batched tensors, fast for
    # small complete graphs) | pyg (torch-geometric MessagePassing over an edge list)
    graph_backend: str = "dense"
    # graph models: feed velocities as a second equivariant vector channel
    use_velocity: bool = True


# ---------------------------------------------------------------------------- algo
@dataclass
class AlgoConfig:
    """PPO (``algo=`` group).  Names follow CleanRL's ppo.py."""

    # ippo (critic on each agent's own view) | mappo (centralized critic on the global state)
    name: str = "ippo"
    # env steps per env per iteration (T); batch = T * train.num_envs frames
    rollout_steps: int = 25
    # passes over the batch per iteration
    epochs: int = 4
    # minibatches per pass; must divide the batch (T * num_envs)
    num_minibatches: int = 4
    # Adam learning rate
    lr: float = 3e-4
    # anneal the learning rate linearly to 0 over train.total_env_steps
    anneal_lr: bool = True
    # discount
    gamma: float = 0.99
    # GAE lambda
    gae_lambda: float = 0.95
    # surrogate clipping coefficient
    clip_coef: float = 0.2
    # clip the value loss around the old values (PPO2 style)
    clip_vloss: bool = False
    # value loss coefficient
    vf_coef: float = 0.5
    # entropy bonus coefficient
    ent_coef: float = 0.0
    # global gradient-norm clip (<= 0: off)
    max_grad_norm: float = 0.5
    # normalize advantages per minibatch
    norm_adv: bool = True
    # value normalization (running mean/std of returns; critic predicts normalized values)
    value_norm: bool = True
    # stop the epochs of an iteration early when approx_kl exceeds this (None: never)
    target_kl: Optional[float] = None


# --------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    """The training loop (``train`` node)."""

    # total env steps (frames: one step of one env with all agents acting)
    total_env_steps: int = 2_000_000
    # parallel environments
    num_envs: int = 200
    # device: cpu | cuda | auto (cuda if available)
    device: str = "cpu"
    # torch CPU threads (0: torch's default)
    threads: int = 0
    # evaluate (deterministic actions) every N iterations (0: only at the end)
    eval_every: int = 20
    # episodes per evaluation (run as one batch of envs)
    eval_episodes: int = 200
    # checkpoint every N iterations (0: only at the end)
    checkpoint_every: int = 50
    # checkpoints kept on disk (latest N)
    keep_checkpoints: int = 3
    # stop after this many iterations (None: run to total_env_steps); for tests and benchmarks
    max_iterations: Optional[int] = None


# -------------------------------------------------------------------------- logger
@dataclass
class LoggerConfig:
    """Metrics sinks (``logger=`` group)."""

    # W&B mode: auto (online when an API key is configured: WANDB_API_KEY or `wandb login`;
    # else offline, files in the run dir, `eqmarl sync` uploads later) | online | offline | disabled
    wandb_mode: str = "auto"
    # W&B project, entity (None: your default), group (sweep/experiment), job_type, tags
    project: str = "eqmarl"
    entity: Optional[str] = None
    group: Optional[str] = None
    job_type: str = "train"
    tags: list[str] = field(default_factory=list)
    # write metrics.csv in the run directory
    csv: bool = True
    # show a progress bar (env steps, steps/s, return)
    progress: bool = True
    # log training metrics every N iterations
    log_every: int = 1


# ------------------------------------------------------------------------- cluster
@dataclass
class ClusterConfig:
    """Where runs execute (``cluster=`` group)."""

    # local (in-process) | slurm (submitit)
    name: str = "local"


# -------------------------------------------------------------------------- learner
@dataclass
class LearnerConfig:
    """How gradients are computed and applied (``learner=`` group)."""

    # single (one process) | ddp | deepspeed
    name: str = "single"


# --------------------------------------------------------------------------- top
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
    # global seed (envs, parameters, sampling)
    seed: int = 0
    # continue from a run directory or a checkpoint file (None: fresh run)
    resume: Optional[str] = None
    # name of the experiment preset in use (for W&B grouping)
    experiment: Optional[str] = None


ENV_SCHEMAS: dict[str, type] = {"mpe": MpeEnvConfig}


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


def to_config(dict_cfg: Any) -> Config:
    """Convert a composed hydra config to typed objects, then validate it."""
    from omegaconf import OmegaConf

    obj = OmegaConf.to_object(dict_cfg)
    assert isinstance(obj, Config)
    validate(obj)
    return obj


def _choice(key: str, value: Any, allowed: tuple | list) -> None:
    if value not in allowed:
        raise ConfigError(key, value, ", ".join(str(a) for a in allowed))


def _positive(key: str, value: Any, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise ConfigError(key, value, "a number >= 0" if allow_zero else "a number > 0")


def validate(cfg: Config) -> None:
    """Check every value and derived size; raise :class:`ConfigError` naming the key."""
    from eqmarl.models.policy import ENCODERS, _load_graph_models
    from eqmarl.models.mlp import ACTIVATIONS

    _choice("env.name", cfg.env.name, list(ENV_SCHEMAS))
    _positive("env.episode_limit", cfg.env.episode_limit)
    if isinstance(cfg.env, MpeEnvConfig):
        from eqmarl.envs.mpe import BACKENDS, PREY_POLICIES, SCENARIOS

        _choice("env.scenario", cfg.env.scenario, SCENARIOS)
        _choice("env.backend", cfg.env.backend, BACKENDS)
        _choice("env.prey_policy", cfg.env.prey_policy, PREY_POLICIES)
        _positive("env.n_agents", cfg.env.n_agents)
        _positive("env.n_prey", cfg.env.n_prey)
        _positive("env.workers", cfg.env.workers)
        if cfg.env.n_landmarks is not None:
            _positive("env.n_landmarks", cfg.env.n_landmarks)

    _load_graph_models()
    _choice("model.name", cfg.model.name, sorted(ENCODERS))
    _positive("model.hidden", cfg.model.hidden)
    _positive("model.layers", cfg.model.layers)
    _choice("model.activation", cfg.model.activation, list(ACTIVATIONS))

    a = cfg.algo
    _choice("algo.name", a.name, ["ippo", "mappo"])
    for k in ("rollout_steps", "epochs", "num_minibatches", "lr", "clip_coef"):
        _positive(f"algo.{k}", getattr(a, k))
    for k in ("vf_coef", "ent_coef"):
        _positive(f"algo.{k}", getattr(a, k), allow_zero=True)
    for k in ("gamma", "gae_lambda"):
        v = getattr(a, k)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"algo.{k}", v, "a number in [0, 1]")
    t = cfg.train
    _positive("train.total_env_steps", t.total_env_steps)
    _positive("train.num_envs", t.num_envs)
    _positive("train.eval_episodes", t.eval_episodes)
    _positive("train.keep_checkpoints", t.keep_checkpoints)
    for k in ("eval_every", "checkpoint_every", "threads"):
        _positive(f"train.{k}", getattr(t, k), allow_zero=True)
    _choice("train.device", t.device, ["cpu", "cuda", "auto"])
    batch = a.rollout_steps * t.num_envs
    if batch % a.num_minibatches != 0:
        divisors = [d for d in range(1, min(batch, 64) + 1) if batch % d == 0]
        raise ConfigError(
            "algo.num_minibatches",
            a.num_minibatches,
            f"a divisor of the batch algo.rollout_steps*train.num_envs={batch} "
            f"(e.g. {', '.join(map(str, divisors))})",
        )
    _choice("logger.wandb_mode", cfg.logger.wandb_mode, ["auto", "online", "offline", "disabled"])
    _positive("logger.log_every", cfg.logger.log_every)
    _choice("cluster.name", cfg.cluster.name, ["local", "slurm"])
    _choice("learner.name", cfg.learner.name, ["single", "ddp", "deepspeed"])
