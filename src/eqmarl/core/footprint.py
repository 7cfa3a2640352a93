"""What an env config will cost in memory, known before anything is built.

Each backend states its own :class:`EnvFootprint` next to its code (``mpe_footprint`` in
:mod:`eqmarl.envs.mpe`, ``smax_footprint`` in :mod:`eqmarl.envs.smax`,
``hanabi_footprint`` in :mod:`eqmarl.envs.hanabi`, ``lever_footprint`` in
:mod:`eqmarl.envs.lever`): the sizes of what one env step stores (observation, state,
entity graph, action mask) and the simulator's own memory, from measured per-backend
models (``benchmarks/memory_model.py``, ``docs/results/memory_model.json``).  They are
pure arithmetic on the config's numbers (no simulator, no jax, no allocation), so
:func:`eqmarl.config.memory.estimate_run_memory` can refuse a run that cannot fit
before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MiB = 2**20


@dataclass(frozen=True)
class EnvFootprint:
    """The memory model of one env config (see the module docstring).

    Attributes:
        agents: learning agents per env (A).
        obs_dim: flat per-agent observation size (float32).
        state_dim: global state size (float32).
        nodes: entity-graph nodes per env (0: no graph).
        node_feats: invariant node features (float32) per node.
        action_size: numbers stored per agent action (1 for a discrete action).
        mask_size: action-mask entries per agent (0: no mask).
        neighbours: ``(nodes, most neighbours)`` pairs of the graph's edge rule: a node
            of a pair receives messages from at most that many others (complete graph:
            ``[(N, N - 1)]``).
        per_env_bytes: the simulator's memory per env (its state and step temporaries).
        instance_bytes: memory each env instance holds whatever its size (worker
            processes, compiled steps); the trainer builds two (training and evaluation).
        library_bytes: memory the backend's libraries add to the process, once (jax).
        transient_bytes: memory needed once, while building (JAX's compiler).
        edge_bytes_per_hidden: bytes a graph model keeps per edge, message-passing layer
            and unit of width (``model.hidden``) for backward (measured per backend).
        keys: the ``env.`` keys that set its size, for messages.
        what: the simulator's name, for messages.
    """

    agents: int
    obs_dim: int
    state_dim: int
    nodes: int = 0
    node_feats: int = 0
    action_size: int = 1
    mask_size: int = 0
    neighbours: tuple[tuple[int, int], ...] = ()
    per_env_bytes: int = 0
    instance_bytes: int = 0
    library_bytes: int = 0
    transient_bytes: int = 0
    edge_bytes_per_hidden: int = 12
    keys: tuple[str, ...] = field(default_factory=tuple)
    what: str = "env"

    def edges(self, knn: int = 0) -> int:
        """Edges per graph: every node's allowed neighbours, at most ``knn`` of them (0: all)."""
        return sum(n * (min(knn, most) if knn > 0 else most) for n, most in self.neighbours)

    def envs_bytes(self, num_envs: int) -> int:
        """The simulator's memory for one instance of ``num_envs`` envs."""
        return self.instance_bytes + num_envs * self.per_env_bytes
