"""Validation of a whole run: each group's own check, then the one check across groups.

Each group's check lives beside its schema (``eqmarl.config.<group>.check_<group>``) and
reads only that group.  :func:`check_across_groups` is the one place for checks that read
several groups (a model against the env, batch sizes, a container against the cluster)
and for what a run needs from the machine it runs on: checked here for a local run, and
for a SLURM sweep with ``container=none`` before ``sbatch`` (its jobs run this machine's
Python; ``cluster.skip_local_checks`` turns that off).  Every refusal is a
:class:`~eqmarl.config.errors.ConfigError` naming the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Optional

from eqmarl.config.algo import FLOAT_RANGES as ALGO_FLOAT_RANGES
from eqmarl.config.algo import check_algo
from eqmarl.config.cluster import check_cluster
from eqmarl.config.container import check_container
from eqmarl.config.env import FLOAT_RANGES as ENV_FLOAT_RANGES
from eqmarl.config.env import (
    EnvConfig,
    HanabiEnvConfig,
    LeverEnvConfig,
    MpeEnvConfig,
    Smacv2EnvConfig,
    agent_count,
    check_env,
    check_env_runs_here,
)
from eqmarl.config.errors import ConfigError
from eqmarl.config.learner import check_learner
from eqmarl.config.logger import check_logger
from eqmarl.config.model import FLOAT_RANGES as MODEL_FLOAT_RANGES
from eqmarl.config.model import check_model
from eqmarl.config.run import Config, check_seed
from eqmarl.config.train import check_train

# the allowed range of each float key, for the message when a value is not finite
FLOAT_RANGES = {**ALGO_FLOAT_RANGES, **MODEL_FLOAT_RANGES, **ENV_FLOAT_RANGES}
# lower bound of the rollout memory per frame and agent (observation, action, log-prob,
# value, advantage, return: at least 64 float32); a batch above the machine's RAM is refused
MIN_BYTES_PER_AGENT_FRAME = 256


def validate(cfg: Config) -> None:
    """Check every value and derived size; raise :class:`ConfigError` naming the key.

    Non-finite numbers first (the other checks compare numbers), then each group on its
    own, then :func:`check_across_groups`.
    """
    validate_finite(cfg)
    check_seed(cfg)
    check_env(cfg.env)
    check_model(cfg.model)
    check_algo(cfg.algo)
    check_train(cfg.train)
    check_logger(cfg.logger)
    check_cluster(cfg.cluster)
    check_learner(cfg.learner)
    check_container(cfg.container)
    check_across_groups(cfg)


def _floats(node: Any, prefix: str) -> list[tuple[str, float]]:
    """Every float in a config dataclass (lists and dicts included), with its dotted key."""
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
    for key, v in _floats(cfg, ""):
        if not math.isfinite(v):
            rng = FLOAT_RANGES.get(key)
            raise ConfigError(key, v, "a finite number" + (f" {rng}" if rng else ""))


def check_across_groups(cfg: Config) -> None:
    """Every check that reads more than one group, and (for ``cluster=local``) this machine.

    The run's estimated peak memory (:mod:`eqmarl.config.memory`) must fit what this
    machine has available (``cluster=local``) or what the job requests per rank
    (``cluster=slurm`` with ``cluster.mem_gb``), unless ``train.memory_check=false``.

    Raises:
        ConfigError: naming the key and the allowed values.
    """
    from eqmarl.models.registry import graph_model_names

    env, m, a, t, ln = cfg.env, cfg.model, cfg.algo, cfg.train, cfg.learner
    if m.name in graph_model_names() and not isinstance(env, (MpeEnvConfig, Smacv2EnvConfig)):
        # the graph encoders read the env's entity graph; Hanabi and the lever game have none
        raise ConfigError(
            "model.name",
            m.name,
            f"mlp with env.name={env.name} (no entity graph; the default model is e2gn2, so add model=mlp "
            f"or use an experiment= preset)",
        )
    if m.critic in graph_model_names() and not isinstance(env, (MpeEnvConfig, Smacv2EnvConfig)):
        raise ConfigError("model.critic", m.critic, f"mlp or null with env.name={env.name} (no entity graph)")
    for key, group in (("model.eqc", m.eqc), ("model.orbit_init", m.orbit_init), ("algo.other_play", a.other_play)):
        if group is not None:
            check_symmetry_group(key, group, env)
    batch = a.rollout_steps * t.num_envs
    if batch % a.num_minibatches != 0:
        divisors = [d for d in range(1, min(batch, 64) + 1) if batch % d == 0]
        raise ConfigError(
            "algo.num_minibatches",
            a.num_minibatches,
            f"a divisor of the batch algo.rollout_steps*train.num_envs={batch} (e.g. {', '.join(map(str, divisors))})",
        )
    minibatch = batch // a.num_minibatches
    if minibatch % ln.micro_batches:
        raise ConfigError(
            "learner.micro_batches",
            ln.micro_batches,
            f"a divisor of the minibatch algo.rollout_steps*train.num_envs/algo.num_minibatches={minibatch}",
        )
    if t.compile != "none" and ln.name == "deepspeed":
        # DeepSpeed's engine wraps the module and runs its own hooks around forward/backward
        raise ConfigError("train.compile", t.compile, "none with learner.name=deepspeed (single or ddp compile)")
    if cfg.container.runtime != "none" and cfg.cluster.name != "slurm":
        raise ConfigError(
            "container.runtime",
            cfg.container.runtime,
            "none with cluster=local (the image runs SLURM jobs; locally: docker run IMAGE python launch.py ...)",
        )
    graph_model = m.name in graph_model_names()
    if cfg.cluster.name == "local":
        _check_this_machine(cfg, graph_model)
    else:
        _check_job_resources(cfg, graph_model)
        if cfg.container.runtime == "none" and not cfg.cluster.skip_local_checks:
            _check_job_software(cfg)


def check_symmetry_group(key: str, name: str, env: EnvConfig) -> None:
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
    if key not in ("model.orbit_init", "algo.other_play") and m.group(1) == "S" and degree is not None and degree > 6:
        # EQC (model.eqc, or xplay's test-time --eqc) runs one copy of the policy per group
        # element: S7 is 5040 copies already
        raise ConfigError(key, name, f"a group of at most 720 elements for EQC, e.g. C{degree} or D{2 * degree}")


def _physical_memory() -> int | None:
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _rollout_bytes(cfg: Config) -> int:
    """A lower bound of one rank's rollout memory (:data:`MIN_BYTES_PER_AGENT_FRAME` per agent-frame)."""
    return cfg.algo.rollout_steps * cfg.train.num_envs * agent_count(cfg.env) * MIN_BYTES_PER_AGENT_FRAME


# what each key does to the memory, for the message of a run that does not fit
MEMORY_HINTS = {
    "algo.num_minibatches": "more algo.num_minibatches",
    "learner.micro_batches": "more learner.micro_batches",
    "model.knn": "model.knn=16 (sparse graphs)",
    "model.activation_checkpointing": "model.activation_checkpointing=true",
    "train.inference_chunk_envs": "train.inference_chunk_envs=1",
    "train.rollback_nonfinite": "train.rollback_nonfinite=false",
    "model.share_params": "model.share_params=true",
    "cluster.mem_gb": "more cluster.mem_gb",
}


def _slurm_memory_source(cfg: Config) -> str:
    c = cfg.cluster
    per_task = f" / cluster.tasks_per_node={c.tasks_per_node} ranks" if c.tasks_per_node > 1 else ""
    return f"requested by cluster.mem_gb={c.mem_gb}{per_task}"


def check_memory(cfg: Config, graph_model: bool, available: tuple[int, str] | None = None) -> None:
    """Refuse a run whose estimated peak memory (:func:`eqmarl.config.memory.estimate_run_memory`)
    exceeds ``available`` (default: what this machine has available now).

    Args:
        cfg: the run.
        graph_model: ``model.name`` reads the entity graph.
        available: (bytes, where the figure comes from); None: this machine's
            (:func:`eqmarl.config.memory.available_memory`; unknown: no check).

    Raises:
        ConfigError: naming the key of the part that needs the most memory, the estimate
            by part, the memory available, the keys that shrink it and
            ``train.memory_check=false``.
    """
    from eqmarl.config.memory import available_memory, estimate_run_memory, gib

    room = available if available is not None else available_memory()
    if room is None:
        return
    est = estimate_run_memory(cfg, graph_model)
    if est.total <= room[0]:
        return
    one_env = estimate_run_memory(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, num_envs=1, eval_episodes=1)), graph_model
    )
    key, keys = est.key_to_shrink(room[0], one_env, cfg.train.num_envs, cfg.train.eval_episodes), est.hints()
    if cfg.cluster.name == "slurm" and room[0] < one_env.total <= 4 * room[0]:
        key = "cluster.mem_gb"  # even one env needs a little more than the job asks for
    if key not in keys:
        keys.insert(0, key)
    if cfg.cluster.name == "slurm" and "cluster.mem_gb" not in keys:
        keys.append("cluster.mem_gb")
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    hints = ", ".join(MEMORY_HINTS.get(k, f"a smaller {k}") for k in keys)
    raise ConfigError(
        key,
        value,
        f"a run that fits in memory: it needs an estimated {est.describe()}; {gib(room[0])} available "
        f"({room[1]}). Shrink it: {hints}; or set train.memory_check=false to run anyway",
    )


def _check_this_machine(cfg: Config, graph_model: bool) -> None:
    """What a local run needs here: memory for the run, CUDA, and its software (:func:`_check_software`)."""
    t = cfg.train
    ram = _physical_memory()
    need = _rollout_bytes(cfg)
    if ram and need > ram:
        raise ConfigError(
            "train.num_envs",
            t.num_envs,
            f"a smaller batch: algo.rollout_steps*train.num_envs*agents needs at least {need / 2**30:.1f} GiB "
            f"for the rollout, this machine has {ram / 2**30:.1f} GiB",
        )
    if t.memory_check:
        check_memory(cfg, graph_model)
    if t.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("train.device", "cuda", "cpu or auto here (no CUDA device is visible)")
    _check_software(cfg)


# sbatch options (cluster.additional_parameters) that request GPUs
_GPU_OPTIONS = ("gres", "gpus", "gpus-per-node", "gpus_per_node", "gpus-per-task", "gpus_per_task", "gpus-per-socket")


def _check_job_resources(cfg: Config, graph_model: bool) -> None:
    """What a SLURM job asks for must fit the run: GPUs for ``train.device=cuda``, the
    rollout and the estimated run (``train.memory_check``) within ``cluster.mem_gb``."""
    c, t = cfg.cluster, cfg.train
    gpu_option = any(str(k).lower() in _GPU_OPTIONS for k in c.additional_parameters)
    if t.device == "cuda" and c.gpus_per_node == 0 and not gpu_option:
        raise ConfigError(
            "train.device",
            "cuda",
            "cpu or auto with cluster.gpus_per_node=0 (the jobs get no GPU): ask for GPUs with "
            "cluster.gpus_per_node=N (or +cluster.additional_parameters.gres=gpu:N)",
        )
    if c.mem_gb is not None:
        need = _rollout_bytes(cfg) * c.tasks_per_node
        if need > c.mem_gb * 2**30:
            raise ConfigError(
                "train.num_envs",
                t.num_envs,
                f"a smaller batch, or a larger cluster.mem_gb: the rollouts of cluster.tasks_per_node="
                f"{c.tasks_per_node} rank(s) need at least {need / 2**30:.1f} GiB per node, cluster.mem_gb={c.mem_gb}",
            )
        if t.memory_check:
            check_memory(cfg, graph_model, (c.mem_gb * 2**30 // c.tasks_per_node, _slurm_memory_source(cfg)))


# what a refusal of _check_job_software adds: why this machine, and the ways past it
_JOBS_NOTE = (
    "SLURM jobs with container=none run this machine's Python and files, so it is checked here. If the "
    "compute nodes have what this machine lacks, add cluster.skip_local_checks=true (for StarCraft II, "
    "exporting SC2PATH=<its directory on the nodes> does too: sbatch passes it to the jobs); or run the jobs "
    "in the project's image (container=apptainer|docker|charliecloud)"
)


def _check_job_software(cfg: Config) -> None:
    """Before ``sbatch`` with ``container=none``: what the jobs need, checked on this machine.

    The jobs run this machine's Python (submitit starts the same interpreter on the node),
    so a package missing here is missing there. StarCraft II is looked for unless
    ``SC2PATH`` is set: sbatch passes it to the jobs, and it may name a directory of the
    compute nodes only (each job's env checks it there).
    """
    import os

    try:
        _check_software(cfg, starcraft2=not os.environ.get("SC2PATH"))
    except ConfigError as e:
        raise ConfigError(e.key, e.value, f"{e.allowed.rstrip('.')}. {_JOBS_NOTE}") from None


def _check_software(cfg: Config, starcraft2: bool = True) -> None:
    """What the run imports and starts: DeepSpeed for ``learner=deepspeed``, the env's
    packages and StarCraft II (:func:`~eqmarl.config.env.check_env_runs_here`).

    Args:
        cfg: the run's config.
        starcraft2: look for StarCraft II.
    """
    import importlib.util

    if cfg.learner.name == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "learner.name",
            "deepspeed",
            "single or ddp here (DeepSpeed is not installed: DS_BUILD_OPS=0 pip install 'eqmarl[deepspeed]')",
        )
    check_env_runs_here(cfg.env, starcraft2)
