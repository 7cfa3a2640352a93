"""Typed configuration: one dataclass per component, registered in hydra's ConfigStore.

Values live in ``configs/`` (YAML); ``launch.py`` composes them with hydra, converts the
result once to these dataclasses (:func:`to_config`) and checks them (:func:`validate`).
Nothing past ``launch.py`` sees a ``DictConfig``.

Every field is documented where it is defined.  :func:`validate` names the offending
key and the allowed values, so a bad sweep stops before anything runs or is submitted.
"""

from __future__ import annotations

import math
import re
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
    # simple_spread | simple_tag | simple_spread_large (simple_spread vectorized for
    # hundreds to thousands of agents on VMAS: see eqmarl.envs.spread_large)
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


@dataclass
class LeverEnvConfig(EnvConfig):
    """The lever coordination game (``env=lever``): one-step episodes, payout if all agree."""

    name: str = "lever"
    # every episode is one step
    episode_limit: int = 1
    # players (payout only if all pull the same lever)
    n_agents: int = 2
    # payoff of each lever (one action per lever); EQC's game: nine 1.0 levers and one 0.9
    payoffs: list[float] = field(default_factory=lambda: [1.0] * 9 + [0.9])


@dataclass
class HanabiEnvConfig(EnvConfig):
    """Hanabi on the engine (``env=hanabi``); see :mod:`eqmarl.envs.hanabi`."""

    name: str = "hanabi"
    # truncate after this many turns (0: never cut a game, i.e. 2 * deck + information tokens)
    episode_limit: int = 0
    # variant preset: full | small | very_small (overridden by the fields below)
    preset: str = "full"
    # seats = agents: 2..5
    players: int = 2
    # override the preset (None: keep it): colours 1..5, ranks 1..5, cards per hand, tokens
    colors: Optional[int] = None
    ranks: Optional[int] = None
    hand_size: Optional[int] = None
    max_information_tokens: Optional[int] = None
    max_life_tokens: Optional[int] = None
    # card_knowledge (canonical encoding with hint memory) | minimal
    observation_type: str = "card_knowledge"
    # the engine picks the first player at random
    random_start_player: bool = False
    # engine (hanabi-learning-environment, a Python loop over games) | fast (batched torch
    # re-implementation, same observations/masks/rewards; seat 0 always starts)
    backend: str = "engine"


@dataclass
class Smacv2EnvConfig(EnvConfig):
    """SMACv2 scenarios (``env=smacv2``; ``env=smax`` is the same with ``backend: smax``).
    See :mod:`eqmarl.envs.smacv2_scenarios` for the start positions and unit types."""

    name: str = "smacv2"
    # sc2 (StarCraft II, inside the project's image) | smax (JaxMARL's SMAX, no game needed)
    backend: str = "sc2"
    # terran | protoss | zerg (on smax: marine/marauder, stalker/zealot, zergling/hydralisk)
    race: str = "terran"
    # learning agents (allies)
    n_units: int = 5
    # enemies (the built-in AI: SC2's, or SMAX's heuristic)
    n_enemies: int = 5
    # surrounded | reflect | surrounded_and_reflect
    start_positions: str = "surrounded_and_reflect"
    # surrounded_and_reflect: probability of reflect (SMACv2's p; P(surrounded) = 1 - p)
    p: float = 0.5
    # diagonals the enemy groups of surrounded starts use: all (4) | left (x = 0 corners) | right (x = W)
    surround_sides: str = "all"
    # continuous (2-D move vector, E2GN2's setup) | discrete (nearest available compass move)
    movement: str = "continuous"
    # steps after which an episode is truncated (SMAX's default 100; SMACv2 on SC2: 200)
    episode_limit: int = 100
    # smax only: side of the square map; null = SMACv2's 32 up to 10 units per side, larger
    # teams (N-vs-N) on ceil(32 * sqrt(N / 10)) so the unit density stays that of 10v10
    map_size: Optional[float] = None


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
    # N k per graph: use it from a few tens of agents on (see README, "Large agent counts")
    knn: int = 0
    # graph models: recompute each message-passing layer's edge activations in backward
    # instead of keeping them (about one extra forward; memory per layer -> its inputs)
    activation_checkpointing: bool = False
    # one set of weights for all agents (True) or per-agent actor and critic weights
    # (False: stacked, applied in one batched op; parameter memory grows with the agent
    # count, which ZeRO shards with learner=deepspeed; the agent count is then fixed)
    share_params: bool = True


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
    # Other-Play: an independent random element of this group (a name as for model.eqc)
    # per agent per episode, applied to that agent's observations and actions; None: off
    other_play: Optional[str] = None


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
    # torch CPU threads (intra-op). 1 (default): robust when other processes share the
    # cores; several threads spin-wait at every small op and collapse under contention
    # (docs/results/threads_contention.json: 15-36x slower on 2 shared cores). 0: torch's
    # default (one per core; on SLURM: the job's cpus per task), best with the environment
    # variable OMP_WAIT_POLICY=PASSIVE; N: N threads. Measure: benchmarks/threads_contention.py
    threads: int = 1
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
    # envs per policy forward in rollouts and evaluations (0: all at once); bounds inference
    # memory when graphs are large (e.g. complete graphs of hundreds of agents)
    inference_chunk_envs: int = 0
    # stop the run after this many consecutive optimizer steps skipped for a non-finite
    # loss or gradient norm (each skip is logged as nonfinite_skips; see eqmarl.train.nonfinite)
    max_nonfinite_updates: int = 5
    # keep a copy of the parameters and optimizer state before each optimizer step, so a
    # step that makes them non-finite is undone (learners single, ddp, deepspeed ZeRO-0);
    # costs one more copy of the model state (12 B per fp32 parameter with Adam): turn it
    # off for large per-agent models, and such a step then stops the run instead
    rollback_nonfinite: bool = True


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
    # seconds to wait for the W&B server when the run starts online; unreachable by then:
    # the run continues offline (upload later with `eqmarl sync <run dir>`)
    wandb_init_timeout_s: float = 30.0


# ------------------------------------------------------------------------- cluster
@dataclass
class ClusterConfig:
    """Where runs execute (``cluster=`` group).

    ``cluster=slurm`` submits every run of a sweep (``python launch.py -m ...``) as a
    SLURM job through hydra-submitit-launcher; the launcher's settings
    (``hydra.launcher.*``) are interpolated from these keys, so set ``cluster.nodes=2``,
    not ``hydra.launcher.nodes=2``.  The other keys are ignored by ``cluster=local``.
    """

    # local (in-process) | slurm (submitit)
    name: str = "local"
    # SLURM partition, account, QOS and node feature constraint (None: the site's default)
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    # nodes per job; a job with nodes * tasks_per_node > 1 ranks trains with learner=ddp
    nodes: int = 1
    # processes (ranks) per node: one per GPU on GPU nodes
    tasks_per_node: int = 1
    # GPUs per node (0: CPU job)
    gpus_per_node: int = 0
    # CPU cores per rank (None: the site's default); sets torch's threads when train.threads=0
    cpus_per_task: Optional[int] = None
    # memory per node in GB (None: the site's default)
    mem_gb: Optional[int] = None
    # wall-clock limit per job (each requeue gets it again), minutes
    timeout_min: int = 60
    # how many times a job may be requeued after a timeout or preemption (USR2): it
    # checkpoints, requeues and resumes; then it fails
    max_requeues: int = 3
    # USR2 is sent this many seconds before the time limit (time to finish the iteration)
    signal_delay_s: int = 120
    # extra sbatch options without the leading dashes, e.g. {mail-type: END, reservation: x};
    # on the command line: +cluster.additional_parameters.reservation=x
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    # shell lines run in the sbatch script before the job starts (module load, source venv)
    setup: list[str] = field(default_factory=list)
    # where submitit writes job scripts, pickles and stdout/stderr (%j: job id);
    # None: <sweep dir>/.submitit/%j
    log_dir: Optional[str] = None
    # job name in squeue (None: the hydra job name, "launch")
    job_name: Optional[str] = None
    # jobs of one sweep running at the same time (SLURM array parallelism)
    array_parallelism: int = 256


# ------------------------------------------------------------------------ container
@dataclass
class ContainerConfig:
    """The image each SLURM task runs in (``container=`` group; see :mod:`eqmarl.launch.container`).

    Only ``cluster=slurm`` uses it: every task's Python starts inside the image, with the
    sweep/run directories, the submitit folder and the project directory bound at the same
    paths and the SLURM/submitit variables kept.  Checked before ``sbatch``.
    """

    # none | docker | apptainer | charliecloud
    runtime: str = "none"
    # docker: an image reference (eqmarl:cpu, ghcr.io/<owner>/eqmarl:cpu); apptainer: a .sif
    # path or docker://, oras:// URI; charliecloud: an image directory or .sqfs file
    image: Optional[str] = None
    # the Python inside the image
    python: str = "python"
    # extra binds SRC[:DST] (scratch, datasets); the job's own directories are bound already
    binds: list[str] = field(default_factory=list)
    # bound at the same path when present on the node, so submitit's scontrol (requeue after
    # preemption, node names) works inside the image: SLURM client config and munge socket
    slurm_binds: list[str] = field(default_factory=lambda: ["/etc/slurm", "/run/munge"])
    # docker: variables (name prefixes) passed into the container from each task's environment;
    # apptainer and charliecloud keep the whole host environment
    env: list[str] = field(
        default_factory=lambda: [
            "SLURM_",
            "SUBMITIT_",
            "WANDB_",
            "EQMARL_",
            "CUDA_VISIBLE_DEVICES",
            "NCCL_",
            "OMP_NUM_THREADS",
            "MASTER_",
            "SC2PATH",
            "TMPDIR",
        ]
    )
    # GPUs into the container (docker --gpus all, apptainer --nv): auto (when
    # cluster.gpus_per_node > 0) | always | never
    gpus: str = "auto"
    # docker: pull the image before submitting when the engine does not have it
    pull: bool = False
    # extra options for the runtime's run command (e.g. [--shm-size=8g])
    options: list[str] = field(default_factory=list)


# -------------------------------------------------------------------------- learner
@dataclass
class LearnerConfig:
    """How gradients are computed and applied (``learner=`` group).

    ``ddp``: one process per rank, each with its own envs and seed; gradients are
    averaged over ranks every minibatch, so the effective batch is the per-rank batch
    (``algo.rollout_steps * train.num_envs``) times the world size, and ``env_steps``
    counts the frames of all ranks.  Chosen automatically when a job has several ranks.
    """

    # single (one process) | ddp | deepspeed
    name: str = "single"
    # ddp: torch.distributed backend: auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    backend: str = "auto"
    # ddp: seconds a collective may wait for the other ranks before failing
    timeout_s: int = 600
    # equal micro-batches per PPO minibatch, their gradients accumulated into one
    # optimizer step (memory of the update ~ minibatch / micro_batches); every learner
    micro_batches: int = 1
    # deepspeed: ZeRO stage: 0 (plain data parallel), 1 (shard optimizer state),
    # 2 (+ gradients), 3 (+ parameters); sharding only pays for per-agent parameters
    # (model.share_params=false), see README "Large agent counts"
    zero_stage: int = 0
    # deepspeed: keep the optimizer state (and step) on the CPU (ZeRO-Offload; stage >= 1)
    offload_optimizer: bool = False
    # deepspeed: fp32 | bf16 (autocast of the matrix products to bfloat16; parameters,
    # optimizer state, positions and relative vectors stay float32) | bf16_weights
    # (DeepSpeed's bf16: 16-bit weights and gradients, fp32 master weights and Adam state
    # in the optimizer, under autocast; the mode ZeRO's memory savings are quoted for)
    precision: str = "fp32"


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
    container: ContainerConfig = field(default_factory=ContainerConfig)
    # global seed (envs, parameters, sampling)
    seed: int = 0
    # continue from a run directory or a checkpoint file (None: fresh run)
    resume: Optional[str] = None
    # name of the experiment preset in use (for W&B grouping)
    experiment: Optional[str] = None


ENV_SCHEMAS: dict[str, type] = {
    "mpe": MpeEnvConfig,
    "lever": LeverEnvConfig,
    "hanabi": HanabiEnvConfig,
    "smacv2": Smacv2EnvConfig,
}


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


def unknown_keys(node: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Dotted keys present in a composed config but not in its dataclass schema, each with
    the keys its schema does have.

    ``+cluster.nodez=2`` composes (hydra appends it) and ``OmegaConf.to_object`` then
    drops it silently; a sweep must not be submitted with a key that does nothing.
    """
    import dataclasses

    from omegaconf import DictConfig, OmegaConf

    out: list[tuple[str, list[str]]] = []
    if not isinstance(node, DictConfig):
        return out
    schema = OmegaConf.get_type(node)
    fields = (
        [f.name for f in dataclasses.fields(schema)]
        if schema is not None and dataclasses.is_dataclass(schema)
        else None
    )
    for key in node:
        full = prefix + str(key)
        if fields is not None and key not in fields:
            out.append((full, fields))
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            out += unknown_keys(child, full + ".")
    return out


# groups of configs/ that a run cannot do without (experiment is optional: ~experiment is fine)
REQUIRED_GROUPS = ("env", "model", "algo", "logger", "cluster", "learner", "container")


def check_overrides(dict_cfg: Any, overrides: Any) -> None:
    """What the composed config no longer shows about the command line's overrides.

    ``env.continuous_actions=2`` composes to ``True`` and ``~model`` to the schema's
    defaults; both are refused here (bool keys take only ``true``/``false``; eqmarl's
    groups and keys cannot be deleted).  Sweep overrides (``a=1,2``) are skipped: each
    point is checked on its own.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import BooleanNode, DictConfig

    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.key_or_group
        if o.package:
            key = f"{o.package}.{key}" if key else o.package
        if key.split(".")[0] in ("hydra", "experiment") or o.is_sweep_override():
            continue
        if o.is_delete():
            if key in REQUIRED_GROUPS:
                allowed = f"an option of the {key} group ({key}=<name>); the group cannot be deleted"
            else:
                allowed = "a value; eqmarl's keys cannot be deleted (set the key instead)"
            raise ConfigError(key, f"~{key}", allowed)
        node = dict_cfg
        for part in key.split("."):
            node = node._get_node(part) if isinstance(node, DictConfig) and part in node else None
        if isinstance(node, BooleanNode) and not isinstance(o.value(), bool):
            raise ConfigError(key, o.value(), "true or false")


def to_config(dict_cfg: Any) -> Config:
    """Convert a composed hydra config to typed objects, then validate it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    unknown = unknown_keys(dict_cfg)
    if unknown:
        key, known = unknown[0]
        raise ConfigError(key, OmegaConf.select(dict_cfg, key), f"an existing key; known here: {', '.join(known)}")
    try:
        obj = OmegaConf.to_object(dict_cfg)
    except OmegaConfBaseException as e:  # a missing mandatory value (e.g. the env group deleted with ~env)
        key = str(getattr(e, "full_key", "") or "config")
        raise ConfigError(key, "???", f"a value; {key} has no default (e.g. choose a config group option)") from None
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


def _validate_hanabi(env: HanabiEnvConfig) -> None:
    from eqmarl.envs.hanabi import OBSERVATION_TYPES, PRESETS, HanabiParams

    _choice("env.preset", env.preset, list(PRESETS))
    _choice("env.players", env.players, [2, 3, 4, 5])
    _choice("env.observation_type", env.observation_type, list(OBSERVATION_TYPES))
    _choice("env.backend", env.backend, ["engine", "fast"])
    if env.backend == "fast" and env.random_start_player:
        raise ConfigError("env.random_start_player", True, "false with env.backend=fast (seat 0 starts)")
    try:
        HanabiParams.from_preset(
            env.preset,
            env.players,
            env.colors,
            env.ranks,
            env.hand_size,
            env.max_information_tokens,
            env.max_life_tokens,
            env.observation_type,
        )
    except ValueError as e:  # message: "env.<key>=<value>; allowed: ..."
        key, _, rest = str(e).partition("=")
        value, _, allowed = rest.partition("; allowed: ")
        raise ConfigError(key, value, allowed or str(e)) from None


def _validate_group(key: str, name: str, env: EnvConfig) -> None:
    """A group name (C<k>, D<2k>, S<k>) whose degree fits the env's symmetric points."""
    from eqmarl.symmetry.groups import GroupError, make_group

    if isinstance(env, LeverEnvConfig):
        top = max(env.payoffs)
        degree: Optional[int] = sum(1 for p in env.payoffs if p == top)
        what = f"the {degree} top-paying levers"
    elif isinstance(env, HanabiEnvConfig):
        from eqmarl.envs.hanabi import PRESETS

        degree = env.colors if env.colors is not None else PRESETS.get(env.preset, {}).get("colors")
        what = f"the {degree} colours"
    else:
        raise ConfigError(key, name, f"None (env.name={env.name} has no finite symmetry group; use lever or hanabi)")
    example = f"C{degree}, D{2 * degree}, S{degree}" if degree and degree >= 3 else f"C{degree}, S{degree}"
    m = re.fullmatch(r"([CDS])(\d+)", str(name))
    if m is None or (m.group(1) == "S" and int(m.group(2)) != degree):
        raise ConfigError(key, name, f"a group on {what}: {example}")
    if m.group(1) != "S":  # C<k>/D<2k>: cheap to build, and the build checks the degree
        try:
            make_group(name, degree=degree)
        except GroupError:
            raise ConfigError(key, name, f"a group on {what}: {example}") from None
    if key == "model.eqc" and m.group(1) == "S" and degree is not None and degree > 6:
        # EQC runs one copy of the policy per group element: S7 is 5040 copies already
        raise ConfigError(key, name, f"a group of at most 720 elements for EQC, e.g. C{degree} or D{2 * degree}")


def _validate_smacv2(env: Smacv2EnvConfig, cluster: str) -> None:
    from eqmarl.envs.smacv2 import find_starcraft2, starcraft2_missing_message
    from eqmarl.envs.smacv2_scenarios import BACKENDS, check_scenario

    _choice("env.backend", env.backend, BACKENDS)
    try:
        check_scenario(
            env.race, env.n_units, env.n_enemies, env.start_positions, env.p, env.surround_sides, env.movement
        )
    except ValueError as e:  # "env.<key>=<value>; allowed: ..."
        key, _, rest = str(e).partition("=")
        value, _, allowed = rest.partition("; allowed: ")
        raise ConfigError(key, value, allowed) from None
    if env.map_size is not None and (env.backend != "smax" or not (math.isfinite(env.map_size) and env.map_size >= 8)):
        raise ConfigError("env.map_size", env.map_size, "null, or a number >= 8 with env.backend=smax")
    if env.backend == "sc2" and cluster == "local" and find_starcraft2() is None:
        # a local run stops here; on SLURM the job's node (or image) is checked when the env is built
        raise ConfigError("env.backend", "sc2", "smax here: " + starcraft2_missing_message())


def validate_env_overrides(env: EnvConfig) -> None:
    """Check an env config on its own (``eqmarl eval``'s ``env.*`` overrides of a trained run)."""
    _positive("env.episode_limit", env.episode_limit, allow_zero=isinstance(env, HanabiEnvConfig))
    if isinstance(env, Smacv2EnvConfig):
        _validate_smacv2(env, "local")


# ------------------------------------------------------------ values that must work
# seeds: numpy's legacy seeding takes [0, 2**32); ranks add 1_000_003 * rank, evaluation 777
MAX_SEED = 2**31 - 1
# train.num_envs / train.eval_episodes: envs stepped as one batch
MAX_ENVS = 1_000_000
# model.init_log_std: std = exp(init_log_std) must stay a usable float32
MAX_ABS_INIT_LOG_STD = 20.0
# lower bound of the rollout memory per frame and agent (observation, action, log-prob,
# value, advantage, return: at least 64 float32); a batch above the machine's RAM is refused
MIN_BYTES_PER_AGENT_FRAME = 256
# the allowed range of each float key, for the message when a value is not finite
FLOAT_RANGES = {
    "algo.lr": "> 0",
    "algo.clip_coef": "> 0",
    "algo.vf_coef": ">= 0",
    "algo.ent_coef": ">= 0",
    "algo.gamma": "in [0, 1]",
    "algo.gae_lambda": "in [0, 1]",
    "algo.max_grad_norm": "(<= 0: no clipping)",
    "algo.target_kl": "> 0, or null (never stop early)",
    "model.init_log_std": f"in [-{MAX_ABS_INIT_LOG_STD:g}, {MAX_ABS_INIT_LOG_STD:g}]",
    "env.p": "in [0, 1]",
    "env.payoffs": "(one payoff per lever)",
}


def _floats(node: Any, prefix: str) -> list[tuple[str, float]]:
    """Every float in a config dataclass (lists and dicts included), with its dotted key."""
    import dataclasses

    if isinstance(node, float):
        return [(prefix, node)]
    if dataclasses.is_dataclass(node):
        items: Any = ((f.name, getattr(node, f.name)) for f in dataclasses.fields(node))
    elif isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        return [(prefix, v) for x in node for _, v in _floats(x, prefix)]
    else:
        return []
    return [kv for k, v in items for kv in _floats(v, f"{prefix}.{k}" if prefix else str(k))]


def validate_finite(cfg: Any) -> None:
    """Refuse NaN and infinite values anywhere in the config (``algo.lr=inf``, ``model.init_log_std=nan``)."""
    import math

    for key, v in _floats(cfg, ""):
        if not math.isfinite(v):
            rng = FLOAT_RANGES.get(key)
            raise ConfigError(key, v, "a finite number" + (f" {rng}" if rng else ""))


def _n_agents(env: EnvConfig) -> int:
    for k in ("n_agents", "players", "n_units"):
        if isinstance(getattr(env, k, None), int):
            return int(getattr(env, k))
    return 1


def _physical_memory() -> int | None:
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _validate_accepted_values(cfg: Config) -> None:
    """Values the types accept but training cannot use, or would silently ignore."""
    import importlib.util

    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError("seed", cfg.seed, f"an integer in [0, {MAX_SEED}]")
    t, a, m = cfg.train, cfg.algo, cfg.model
    if t.max_iterations is not None and t.max_iterations < 1:
        raise ConfigError(
            "train.max_iterations", t.max_iterations, "an integer >= 1, or null (train to total_env_steps)"
        )
    if t.max_nonfinite_updates < 1:
        raise ConfigError("train.max_nonfinite_updates", t.max_nonfinite_updates, "an integer >= 1")
    if a.target_kl is not None and not a.target_kl > 0:
        raise ConfigError("algo.target_kl", a.target_kl, "a number > 0, or null (never stop early)")
    if not abs(m.init_log_std) <= MAX_ABS_INIT_LOG_STD:
        raise ConfigError("model.init_log_std", m.init_log_std, FLOAT_RANGES["model.init_log_std"])
    from eqmarl.models.message_passing import GRAPH_BACKENDS

    _choice("model.graph_backend", m.graph_backend, GRAPH_BACKENDS)
    env = cfg.env
    if isinstance(env, MpeEnvConfig) and env.scenario != "simple_tag":
        # simple_tag's keys: another scenario would ignore them
        for key, val, default in (
            ("n_landmarks", env.n_landmarks, None),
            ("n_prey", env.n_prey, 1),
            ("prey_policy", env.prey_policy, "flee"),
        ):
            if val != default:
                raise ConfigError(
                    f"env.{key}",
                    val,
                    f"{default if default is not None else 'null'} with env.scenario={env.scenario} "
                    f"(a simple_tag setting; {env.scenario} ignores it)",
                )
    for key, n in (("train.num_envs", t.num_envs), ("train.eval_episodes", t.eval_episodes)):
        if n > MAX_ENVS:
            raise ConfigError(key, n, f"an integer in [1, {MAX_ENVS:,}]")
    ram = _physical_memory()
    need = a.rollout_steps * t.num_envs * _n_agents(env) * MIN_BYTES_PER_AGENT_FRAME
    if cfg.cluster.name == "local" and ram and need > ram:
        raise ConfigError(
            "train.num_envs",
            t.num_envs,
            f"a smaller batch: algo.rollout_steps*train.num_envs*agents needs at least {need / 2**30:.1f} GiB "
            f"for the rollout, this machine has {ram / 2**30:.1f} GiB",
        )
    if cfg.cluster.name == "local":  # a SLURM job's node is checked when the job starts
        if t.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise ConfigError("train.device", "cuda", "cpu or auto here (no CUDA device is visible)")
        if cfg.learner.name == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(
                "learner.name",
                "deepspeed",
                "single or ddp here (DeepSpeed is not installed: DS_BUILD_OPS=0 pip install 'eqmarl[deepspeed]')",
            )


def validate(cfg: Config) -> None:
    """Check every value and derived size; raise :class:`ConfigError` naming the key."""
    from eqmarl.models.mlp import ACTIVATIONS
    from eqmarl.models.registry import graph_model_names, model_names

    validate_finite(cfg)
    _validate_accepted_values(cfg)
    _choice("env.name", cfg.env.name, list(ENV_SCHEMAS))
    _positive("env.episode_limit", cfg.env.episode_limit, allow_zero=isinstance(cfg.env, HanabiEnvConfig))
    if isinstance(cfg.env, LeverEnvConfig):
        _choice("env.episode_limit", cfg.env.episode_limit, [1])
        if cfg.env.n_agents < 2:
            raise ConfigError("env.n_agents", cfg.env.n_agents, "an integer >= 2 (a coordination game)")
        if len(cfg.env.payoffs) < 2:
            raise ConfigError("env.payoffs", cfg.env.payoffs, "a list of at least 2 payoffs (one per lever)")
    if isinstance(cfg.env, HanabiEnvConfig):
        _validate_hanabi(cfg.env)
    if isinstance(cfg.env, MpeEnvConfig):
        from eqmarl.envs.mpe import BACKENDS, PREY_POLICIES, SCENARIOS

        _choice("env.scenario", cfg.env.scenario, SCENARIOS)
        _choice("env.backend", cfg.env.backend, BACKENDS)
        if cfg.env.scenario == "simple_spread_large":
            _choice("env.backend", cfg.env.backend, ["vmas"])
        _choice("env.prey_policy", cfg.env.prey_policy, PREY_POLICIES)
        _positive("env.n_agents", cfg.env.n_agents)
        _positive("env.n_prey", cfg.env.n_prey)
        _positive("env.workers", cfg.env.workers)
        if cfg.env.n_landmarks is not None:
            _positive("env.n_landmarks", cfg.env.n_landmarks)

    if isinstance(cfg.env, Smacv2EnvConfig):
        _validate_smacv2(cfg.env, cfg.cluster.name)

    _choice("model.name", cfg.model.name, model_names())
    graph_models = graph_model_names()
    if cfg.model.name in graph_models and not isinstance(cfg.env, (MpeEnvConfig, Smacv2EnvConfig)):
        # the graph encoders read the env's entity graph; Hanabi and the lever game have none
        raise ConfigError(
            "model.name",
            cfg.model.name,
            f"mlp with env.name={cfg.env.name} (no entity graph; the default model is e2gn2, so add model=mlp "
            f"or use an experiment= preset)",
        )
    _positive("model.hidden", cfg.model.hidden)
    _positive("model.layers", cfg.model.layers)
    _positive("model.knn", cfg.model.knn, allow_zero=True)
    if not cfg.model.share_params and cfg.model.name != "mlp":
        raise ConfigError(
            "model.share_params",
            False,
            f"true with model.name={cfg.model.name} (graph models share their message functions across nodes; "
            f"per-agent weights: model.name=mlp)",
        )
    if cfg.model.knn and cfg.model.name not in graph_models:
        raise ConfigError(
            "model.knn",
            cfg.model.knn,
            f"0 with model.name={cfg.model.name} (kNN graphs are for {', '.join(graph_models)})",
        )
    _choice("model.activation", cfg.model.activation, list(ACTIVATIONS))
    _choice("model.eqc_average", cfg.model.eqc_average, ["probs", "logits"])
    for key, group in (
        ("model.eqc", cfg.model.eqc),
        ("model.orbit_init", cfg.model.orbit_init),
        ("algo.other_play", cfg.algo.other_play),
    ):
        if group is not None:
            _validate_group(key, group, cfg.env)

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
    for k in ("eval_every", "checkpoint_every", "threads", "inference_chunk_envs"):
        _positive(f"train.{k}", getattr(t, k), allow_zero=True)
    _choice("train.device", t.device, ["cpu", "cuda", "auto"])
    batch = a.rollout_steps * t.num_envs
    if batch % a.num_minibatches != 0:
        divisors = [d for d in range(1, min(batch, 64) + 1) if batch % d == 0]
        raise ConfigError(
            "algo.num_minibatches",
            a.num_minibatches,
            f"a divisor of the batch algo.rollout_steps*train.num_envs={batch} (e.g. {', '.join(map(str, divisors))})",
        )
    _choice("logger.wandb_mode", cfg.logger.wandb_mode, ["auto", "online", "offline", "disabled"])
    _positive("logger.log_every", cfg.logger.log_every)
    wait = cfg.logger.wandb_init_timeout_s
    if not (0 < wait < float("inf")):  # also refuses nan
        raise ConfigError("logger.wandb_init_timeout_s", wait, "a finite number of seconds > 0")
    c = cfg.cluster  # every point of a sweep is checked before anything is submitted
    _choice("cluster.name", c.name, ["local", "slurm"])
    for k in ("nodes", "tasks_per_node", "timeout_min", "array_parallelism"):
        _positive(f"cluster.{k}", getattr(c, k))
    for k in ("gpus_per_node", "max_requeues", "signal_delay_s"):
        _positive(f"cluster.{k}", getattr(c, k), allow_zero=True)
    for k in ("cpus_per_task", "mem_gb"):
        if getattr(c, k) is not None:
            _positive(f"cluster.{k}", getattr(c, k))
    if c.signal_delay_s >= c.timeout_min * 60:
        raise ConfigError(
            "cluster.signal_delay_s", c.signal_delay_s, f"less than cluster.timeout_min*60={c.timeout_min * 60}"
        )
    for k, v in c.additional_parameters.items():
        if not k or str(k).startswith("-"):
            raise ConfigError(f"cluster.additional_parameters.{k}", v, "sbatch option names without leading dashes")
    _choice("learner.name", cfg.learner.name, ["single", "ddp", "deepspeed"])
    _choice("learner.backend", cfg.learner.backend, ["auto", "nccl", "gloo"])
    _positive("learner.timeout_s", cfg.learner.timeout_s)
    ln = cfg.learner
    _positive("learner.micro_batches", ln.micro_batches)
    mb = batch // a.num_minibatches
    if mb % ln.micro_batches:
        raise ConfigError(
            "learner.micro_batches",
            ln.micro_batches,
            f"a divisor of the minibatch algo.rollout_steps*train.num_envs/algo.num_minibatches={mb}",
        )
    _choice("learner.zero_stage", ln.zero_stage, [0, 1, 2, 3])
    _choice("learner.precision", ln.precision, ["fp32", "bf16", "bf16_weights"])
    if ln.name != "deepspeed":
        for key, val, default in (
            ("zero_stage", ln.zero_stage, 0),
            ("offload_optimizer", ln.offload_optimizer, False),
            ("precision", ln.precision, "fp32"),
        ):
            if val != default:
                raise ConfigError(
                    f"learner.{key}", val, f"{default!r} with learner.name={ln.name} (a learner=deepspeed setting)"
                )
    if ln.offload_optimizer and ln.zero_stage == 0:
        raise ConfigError(
            "learner.offload_optimizer", True, "false with learner.zero_stage=0 (ZeRO-Offload needs stage >= 1)"
        )
    box = cfg.container
    _choice("container.runtime", box.runtime, ["none", "docker", "apptainer", "charliecloud"])
    _choice("container.gpus", box.gpus, ["auto", "always", "never"])
    if box.runtime != "none":
        if not box.image:
            raise ConfigError(
                "container.image",
                box.image,
                f"an image for container.runtime={box.runtime} "
                "(docker: a tag such as eqmarl:cpu; apptainer: a .sif or docker:// URI; "
                "charliecloud: an image directory or .sqfs)",
            )
        if c.name != "slurm":
            raise ConfigError(
                "container.runtime",
                box.runtime,
                "none with cluster=local (the image runs SLURM jobs; locally: docker run IMAGE python launch.py ...)",
            )
