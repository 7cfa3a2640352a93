"""How much memory a run will need, estimated from its config before anything runs.

:func:`estimate_run_memory` adds up, from the config's numbers alone (nothing is built,
no jax, no allocation):

* ``process``: Python with torch, hydra and eqmarl imported, plus the backend's own
  libraries (jax for SMAX);
* ``simulation``: the backend's memory for ``train.num_envs`` training and
  ``train.eval_episodes`` evaluation envs (each backend's :class:`EnvFootprint`, next to
  its code), and what building them needs once (JAX compiling SMAX's step);
* ``observations``: the observations both env batches hold while they step;
* ``rollout``: ``algo.rollout_steps`` stored steps of every training env (observation,
  state, entity graph and kNN lists for graph models, action mask, action and the PPO
  terms), twice at its end (the steps and their stacked copy);
* ``inference``: one policy forward over ``train.inference_chunk_envs`` envs (all of them
  by default): a graph model's edge activations (``model.knn``: k edges per node instead
  of all), and building the kNN lists;
* ``update``: one PPO micro-batch (``algo.rollout_steps * train.num_envs /
  algo.num_minibatches / learner.micro_batches`` frames): its copy and the activations
  autograd keeps for backward (``model.activation_checkpointing``: one layer's);
* ``model``: parameters, gradients, Adam's moments and the non-finite rollback copy.

With ``train.device=cuda`` (or ``auto`` where CUDA is visible) the rollout, the policy's
forwards, the update and the model live on the GPU: they are reported apart
(``MemoryEstimate.device_parts``) and only the rest is compared with the host's memory.

The per-edge and per-env figures are measured (``benchmarks/memory_model.py``,
``benchmarks/agent_scaling.py``; ``docs/results/memory_model.json``, ``docs/results/scaling.md``).
It is an estimate of the peak resident set, meant to refuse what cannot fit (a run 10x
over), not to predict a run's memory to the megabyte; ``train.memory_check=false`` skips
the refusal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from eqmarl.config.env import EnvConfig, HanabiEnvConfig, LeverEnvConfig, MpeEnvConfig, Smacv2EnvConfig, smacv2_teams
from eqmarl.config.run import Config
from eqmarl.core.footprint import EnvFootprint, MiB

# the trainer's own process: Python with torch, hydra and eqmarl imported (326 MB measured), and
# what a launch adds (hydra's job, the logger, checkpoint writing, the learning-curve plot)
PROCESS_BYTES = 400 * MiB
# observation batches an env holds while stepping (the observation, the episode's final
# one, the policy's input)
LIVE_OBSERVATIONS = 3
# float32 numbers stored per agent and step besides the observation: log-prob, value,
# reward, advantage, return, value target
PPO_TERMS_PER_AGENT = 6
# one Adam-trained float32 parameter: itself, its gradient, two moments; the non-finite
# rollback keeps a copy of the parameter and the moments
BYTES_PER_PARAMETER = 16
ROLLBACK_BYTES_PER_PARAMETER = 12
# a node's stored geometry besides its features: position and velocity (float32), mask
NODE_GEOMETRY_BYTES = 4 * 4 + 1
# a stored kNN neighbour: sender index (int64) and validity flag
KNN_BYTES_PER_EDGE = 9
# building kNN lists: at most 2**24 pairwise distances at once (eqmarl.core.knn), each with
# its integer key, mask and topk workspace
KNN_BUILD_BYTES = (1 << 24) * 24
# MLP activations per agent, layer and unit of width kept for backward (pre-activation,
# activation, their gradients)
MLP_BYTES_PER_HIDDEN = 16


@dataclass(frozen=True)
class MemoryEstimate:
    """A run's estimated peak memory, by part (see the module docstring).

    Attributes:
        parts: bytes per part (``process``, ``simulation``, ``observations``, ``rollout``,
            ``inference``, ``update``, ``model``).
        keys: the config keys that shrink each part, first the one to try first.
        what: the simulator's name, for messages.
        env_keys: the ``env.`` keys that set the env's size (every part grows with them).
        device_parts: the parts that live on the GPU (``train.device=cuda``), not in
            ``parts`` (which are the host's).
    """

    parts: dict[str, int]
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    what: str = "env"
    env_keys: tuple[str, ...] = ()
    device_parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """The estimated peak, in bytes."""
        return sum(self.parts.values())

    def largest(self) -> str:
        """The part that needs the most memory."""
        return max(self.parts, key=lambda name: self.parts[name])

    def key_to_shrink(self, room: int, one_env: MemoryEstimate, n_envs: int, n_eval: int) -> str:
        """The key to name first in a refusal for ``room`` bytes.

        Args:
            room: the memory available.
            one_env: the same run's estimate with one training and one evaluation env.
            n_envs: ``train.num_envs``.
            n_eval: ``train.eval_episodes``.

        Returns:
            where even one env does not fit: the env's size key (``model.hidden`` where the
            model dominates); else the batch that dominates, ``train.num_envs`` or
            ``train.eval_episodes`` (every part shrinks with them; the message lists the
            other ways).
        """
        if one_env.total > room:
            if one_env.largest() == "model" or not self.env_keys:
                return "model.hidden"
            return self.env_keys[0]
        p = self.parts
        eval_heavy = p["simulation"] + p["observations"] + p.get("inference", 0) > p.get("rollout", 0) + p.get(
            "update", 0
        )
        return "train.eval_episodes" if n_eval > n_envs and eval_heavy else "train.num_envs"

    def hints(self, limit: int = 8) -> list[str]:
        """The keys that shrink the parts, largest parts first, without repeats."""
        order = sorted(self.parts, key=lambda p: -self.parts[p])
        return list(dict.fromkeys(k for p in order for k in self.keys.get(p, ())))[:limit]

    def describe(self) -> str:
        """``"12.3 GiB: simulation 11.0 GiB (SMAX ...), rollout ..."``, largest parts first."""
        shown = sorted((p for p in self.parts if self.parts[p] >= 0.01 * self.total), key=lambda p: -self.parts[p])
        items = [
            f"{name} {gib(self.parts[name])}" + (f" ({self.what})" if name == "simulation" else "") for name in shown
        ]
        return f"{gib(self.total)}: " + ", ".join(items)


def gib(n: float) -> str:
    """``n`` bytes, in GiB with one decimal (MiB below 1 GiB)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / MiB:.0f} MiB"


def env_footprint(env: EnvConfig) -> EnvFootprint:
    """The memory model of an env config, from its backend's module (pure arithmetic)."""
    if isinstance(env, MpeEnvConfig):
        from eqmarl.envs.mpe import mpe_footprint

        return mpe_footprint(
            env.scenario, env.backend, env.n_agents, env.n_landmarks, env.n_prey, env.continuous_actions, env.workers
        )
    if isinstance(env, Smacv2EnvConfig):
        if env.backend == "sc2":
            from eqmarl.envs.smacv2_sc2 import sc2_footprint

            return sc2_footprint(env.n_units, env.n_enemies)
        from eqmarl.envs.smax import smax_footprint

        return smax_footprint(*smacv2_teams(env))
    if isinstance(env, HanabiEnvConfig):
        from eqmarl.config.env import hanabi_params
        from eqmarl.envs.hanabi import hanabi_footprint

        return hanabi_footprint(hanabi_params(env), env.backend)
    if isinstance(env, LeverEnvConfig):
        from eqmarl.envs.lever import lever_footprint

        return lever_footprint(env.n_agents, len(env.payoffs))
    return EnvFootprint(agents=1, obs_dim=1, state_dim=1)  # pragma: no cover - every schema is above


def _mlp_parameters(inputs: int, hidden: int, layers: int, outputs: int) -> int:
    return inputs * hidden + (layers - 1) * hidden * hidden + hidden * outputs + (layers + 1) * hidden


@dataclass(frozen=True)
class _Sizes:
    """What one run's parts are computed from."""

    fp: EnvFootprint
    graph: bool  # the policy reads the entity graph
    knn: int  # model.knn where it applies (0: complete graphs)
    edges: int  # per graph the policy reads
    obs_bytes: int  # one env's observation (flat, state, mask)
    graph_bytes: int  # one env's stored entity graph (with kNN lists), if the policy reads it
    frame: int  # one stored rollout step of one env


def _sizes(cfg: Config, graph_model: bool | None) -> _Sizes:
    fp = env_footprint(cfg.env)
    graph = ((cfg.model.name != "mlp") if graph_model is None else graph_model) and fp.nodes > 0
    knn = cfg.model.knn if graph else 0
    agents = fp.agents
    obs_bytes = 4 * (agents * fp.obs_dim + fp.state_dim) + agents * fp.mask_size
    graph_bytes = 0
    if graph:
        graph_bytes = fp.nodes * (4 * fp.node_feats + NODE_GEOMETRY_BYTES) + (
            KNN_BYTES_PER_EDGE * fp.edges(knn) if knn else 0
        )
    frame = obs_bytes + graph_bytes + 4 * agents * (fp.action_size + PPO_TERMS_PER_AGENT)
    return _Sizes(fp, graph, knn, fp.edges(knn) if graph else 0, obs_bytes, graph_bytes, frame)


def _inference_bytes(cfg: Config, z: _Sizes) -> int:
    """One policy forward over ``train.inference_chunk_envs`` envs (all: the larger batch)."""
    t, hidden = cfg.train, cfg.model.hidden
    batch = max(t.num_envs, t.eval_episodes)
    chunk = min(t.inference_chunk_envs or batch, batch)
    if not z.graph:
        return chunk * z.fp.agents * (z.fp.obs_dim + 2 * hidden) * 4 * 2
    knn_build = min(KNN_BUILD_BYTES, chunk * z.fp.nodes * z.fp.nodes * 24) if z.knn else 0
    return chunk * z.edges * hidden * z.fp.edge_bytes_per_hidden + knn_build


def _update_bytes(cfg: Config, z: _Sizes) -> int:
    """One PPO micro-batch: its copy and what autograd keeps of actor and critic."""
    m, a = cfg.model, cfg.algo
    micro = math.ceil(a.rollout_steps * cfg.train.num_envs / a.num_minibatches / cfg.learner.micro_batches)
    networks = 2
    if z.graph:
        per_layer = z.edges * m.hidden * z.fp.edge_bytes_per_hidden
        if m.activation_checkpointing:  # the layer inputs; one layer's edge tensors recomputed, with gradients
            saved = m.layers * networks * z.fp.nodes * m.hidden * 4 + 2 * per_layer
        else:
            saved = m.layers * networks * per_layer
    else:
        saved = networks * z.fp.agents * (z.fp.obs_dim * 4 + m.layers * m.hidden * MLP_BYTES_PER_HIDDEN)
    return micro * (z.frame + saved)


def _model_bytes(cfg: Config, z: _Sizes) -> int:
    """Parameters (two networks; per agent with ``model.share_params=false``) with their
    gradients, Adam's moments and the rollback copy."""
    m, fp = cfg.model, z.fp
    inputs = fp.node_feats + 4 if z.graph else fp.obs_dim
    outputs = fp.mask_size or max(fp.action_size, 8)
    parameters = 2 * _mlp_parameters(inputs, m.hidden, m.layers, outputs) * (1 if m.share_params else fp.agents)
    return parameters * (BYTES_PER_PARAMETER + (ROLLBACK_BYTES_PER_PARAMETER if cfg.train.rollback_nonfinite else 0))


def _part_keys(cfg: Config, z: _Sizes) -> dict[str, tuple[str, ...]]:
    """The keys that shrink each part, the one to try first first."""
    t, m, env_keys = cfg.train, cfg.model, z.fp.keys
    graph_keys: tuple[str, ...] = ("model.knn",) if z.graph and not z.knn else ()
    ckpt: tuple[str, ...] = ("model.activation_checkpointing",) if z.graph and not m.activation_checkpointing else ()
    batches = ("train.num_envs", "train.eval_episodes")
    if t.eval_episodes > t.num_envs:
        batches = batches[::-1]
    return {
        "process": (),
        "simulation": (*env_keys, *batches),
        "observations": (*batches, *env_keys),
        "rollout": ("train.num_envs", "algo.rollout_steps", *env_keys),
        "inference": ("train.inference_chunk_envs", *graph_keys, *batches, *env_keys),
        "update": ("algo.num_minibatches", "learner.micro_batches", *graph_keys, *ckpt, "train.num_envs", *env_keys),
        "model": ("model.hidden", "train.rollback_nonfinite", "model.share_params"),
    }


def _on_gpu(device: str) -> bool:
    """``train.device`` puts the policy, the rollout and the update on a GPU."""
    if device != "auto":
        return device == "cuda"
    import torch

    return bool(torch.cuda.is_available())


def estimate_run_memory(cfg: Config, graph_model: bool | None = None) -> MemoryEstimate:
    """The estimated peak memory of one rank of the run ``cfg`` (see the module docstring).

    Args:
        cfg: the run's (validated) config.
        graph_model: the policy reads the entity graph (None: ``model.name`` is not ``mlp``).
    """
    t, z = cfg.train, _sizes(cfg, graph_model)
    fp = z.fp
    parts = {
        "process": PROCESS_BYTES + fp.library_bytes,
        "simulation": fp.envs_bytes(t.num_envs) + fp.envs_bytes(t.eval_episodes) + fp.transient_bytes,
        "observations": LIVE_OBSERVATIONS * (t.num_envs + t.eval_episodes) * (z.obs_bytes + z.graph_bytes),
        "rollout": 2 * cfg.algo.rollout_steps * t.num_envs * z.frame,
        "inference": _inference_bytes(cfg, z),
        "update": _update_bytes(cfg, z),
        "model": _model_bytes(cfg, z),
    }
    device_parts = {}
    if _on_gpu(t.device):
        device_parts = {name: parts.pop(name) for name in ("rollout", "inference", "update", "model")}
    return MemoryEstimate(
        parts=parts, keys=_part_keys(cfg, z), what=fp.what, env_keys=fp.keys, device_parts=device_parts
    )


def available_memory() -> tuple[int, str] | None:
    """The memory a new run can use here, and where the figure comes from.

    The smaller of ``MemAvailable`` (``/proc/meminfo``: free memory plus what the kernel can
    reclaim without swapping) and, inside a cgroup with a memory limit (a container, a
    SLURM job), the limit minus the cgroup's current use.  None where neither is known.
    """
    found: list[tuple[int, str]] = []
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        kb = next(int(line.split()[1]) for line in lines if line.startswith("MemAvailable:"))
        found.append((kb * 1024, "MemAvailable in /proc/meminfo"))
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    cgroup = _cgroup_room()
    if cgroup is not None:
        found.append(cgroup)
    return min(found) if found else None


def _cgroup_room() -> tuple[int, str] | None:
    """This process's cgroup memory limit minus its use (v2, else v1), if it has a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2].lstrip("/")
        if controllers == "":  # v2: walk up to the first ancestor with a limit
            base = Path("/sys/fs/cgroup") / path
            for d in (base, *base.parents):
                if not str(d).startswith("/sys/fs/cgroup"):
                    break
                room = _room(d / "memory.max", d / "memory.current")
                if room is not None:
                    return room[0], f"the cgroup limit {d}/memory.max minus its use"
        elif "memory" in controllers.split(","):
            d = Path("/sys/fs/cgroup/memory") / path
            room = _room(d / "memory.limit_in_bytes", d / "memory.usage_in_bytes")
            if room is not None:
                return room[0], f"the cgroup limit {d}/memory.limit_in_bytes minus its use"
    return None


def _room(limit_file: Path, usage_file: Path) -> tuple[int, int] | None:
    try:
        text = limit_file.read_text().strip()
        if text == "max":
            return None
        limit, used = int(text), int(usage_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if limit >= 1 << 60:  # v1's "no limit"
        return None
    return max(limit - used, 0), limit
