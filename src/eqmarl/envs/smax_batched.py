"""JaxMARL's SMAX with its per-agent functions batched, so the step compiles at 1,000 per side.

SMAX's ``get_obs``, ``get_obs_unit_list`` and ``get_avail_actions`` compute one array for
all units and then split it into a Python dict with one entry per agent, and
``HeuristicEnemySMAX`` splits and re-stacks its enemies' observations, actions and
policy state the same way: thousands of slice and stack operations in the traced program
at 1,000 units per side, which is where JAX's compilation stalled.  The subclasses here
keep SMAX's simulation and its heuristic enemy (its code is called, not copied) and
replace only those functions:

* :meth:`BatchedSMAX.unit_list_obs` (rows of SMAX's ``unit_list`` observation as one
  array) and :meth:`BatchedSMAX.avail_actions` (allies' and enemies' available actions as
  two arrays), written as array operations over unit pairs;
* ``get_obs``/``get_obs_unit_list``/``get_avail_actions`` (and the enemy wrapper's
  ``reset``/``get_enemy_actions``) still return a mapping from agent name to array, as
  SMAX's contract says, but an :class:`AgentRows` view over those arrays: no per-agent
  operation is traced unless a caller reads an agent's entry.

eqmarl reads no SMAX observation for its own agents (its graph comes from the state,
:mod:`eqmarl.envs.smax`); the heuristic enemy does read its units' ``unit_list``
observations, which :meth:`BatchedSMAX.unit_list_obs` gives for the enemy rows only.
``tests/test_smax_batched.py`` checks every batched function equal to SMAX's own.

Imports jax and jaxmarl at module level: import it after :func:`eqmarl.envs.smax.import_jax`.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import jax
import jax.numpy as jnp

from eqmarl.core.log import stdout_to_stderr

with stdout_to_stderr():  # jaxmarl prints on its first import
    from jaxmarl.environments.smax import SMAX, HeuristicEnemySMAX
    from jaxmarl.environments.smax.heuristic_enemy import (
        create_heuristic_policy,
        get_heuristic_policy_initial_state,
    )
    from jaxmarl.environments.smax.heuristic_enemy_smax_env import State as EnemyState


@jax.tree_util.register_pytree_node_class
class AgentRows(MutableMapping[str, Any]):
    """SMAX's per-agent dict as a view of a few arrays: ``rows[name]`` is row ``k`` of the
    array of the group that lists ``name`` ``k``-th.  Other keys (SMAX adds
    ``"world_state"``) are stored as given.  A pytree whose leaves are the arrays.

    Args:
        groups: ``(names, array)`` pairs; ``array`` has one row per name.
        extra: further entries.
    """

    def __init__(self, groups: tuple[tuple[tuple[str, ...], Any], ...], extra: dict[str, Any] | None = None) -> None:
        self.groups = groups
        self.extra = dict(extra or {})
        self._where = {name: (g, k) for g, (names, _) in enumerate(groups) for k, name in enumerate(names)}

    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        g, k = self._where[key]
        return self.groups[g][1][k]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._where:
            raise TypeError(f"{key!r} is a row of a batched array; it cannot be replaced")
        self.extra[key] = value

    def __delitem__(self, key: str) -> None:
        del self.extra[key]

    def __iter__(self) -> Iterator[str]:
        for names, _ in self.groups:
            yield from names
        yield from self.extra

    def __len__(self) -> int:
        return len(self._where) + len(self.extra)

    def array(self, group: int = 0) -> Any:
        """The batched array of group ``group``."""
        return self.groups[group][1]

    def tree_flatten(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        names = tuple(n for n, _ in self.groups)
        keys = tuple(sorted(self.extra))
        return (*(a for _, a in self.groups), *(self.extra[k] for k in keys)), (names, keys)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Any, ...]) -> AgentRows:
        names, keys = aux
        arrays, rest = children[: len(names)], children[len(names) :]
        return cls(tuple(zip(names, arrays, strict=True)), dict(zip(keys, rest, strict=True)))


class BatchedSMAX(SMAX):
    """SMAX whose observation and available-action functions are batched (module docstring);
    constructed with SMAX's arguments."""

    def unit_list_obs(self, state: Any, first: int = 0, count: int | None = None) -> Any:
        """Rows ``first .. first + count`` of SMAX's ``unit_list`` observation, ``[count, obs_size]``.

        Per observer ``i``: the other units (allies in index order skipping ``i``; for an
        enemy observer, all units in reverse order skipping ``i``), 13 features each (health
        fraction, position relative to ``i`` / ``i``'s sight range, the unit's last move and
        attack / its team's last action index, cooldown fraction, type one-hot), zero unless
        ``i`` and the unit are alive and the unit is within ``i``'s sight range; then ``i``'s
        own 10 features (SMAX's ``_get_own_features``).
        """
        n, n_allies = self.num_agents, self.num_allies
        count = n - first if count is None else count
        i = jnp.arange(first, first + count)[:, None]  # observers
        k = jnp.arange(n - 1)[None, :]  # the k-th other unit
        rev = n - 1 - k
        j = jnp.where(i < n_allies, jnp.where(k < i, k, k + 1), jnp.where(rev > i, rev, rev - 1))  # [count, n-1]
        pos, types = state.unit_positions, state.unit_types.astype(jnp.int32)
        ti, tj = types[i], types[j]
        rel = pos[j] - pos[i]
        sight = self.unit_type_sight_ranges[ti]
        same_team = (i < n_allies) == (j < n_allies)
        seen = (same_team | self.see_enemy_actions)[..., None]
        max_action = jnp.where(j < n_allies, self.num_ally_actions - 1, self.num_enemy_actions - 1)
        feats = jnp.concatenate(
            [
                (state.unit_health[j] / self.unit_type_health[tj])[..., None],
                rel / sight[..., None],
                jnp.where(seen, state.prev_movement_actions[j], 0.0),
                jnp.where(seen, (state.prev_attack_actions[j] / max_action)[..., None], 0.0),
                jnp.clip(state.unit_weapon_cooldowns[j] / self.unit_type_weapon_cooldowns[tj], 0.0, 1.0)[..., None],
                jax.nn.one_hot(tj, self.unit_type_bits),
            ],
            axis=-1,
        )
        alive = state.unit_alive
        visible = (jnp.linalg.norm(rel, axis=-1) < sight) & alive[i] & alive[j]
        others = jnp.where(visible[..., None], feats, 0.0).reshape(count, -1)
        own = jax.vmap(self._get_own_features, in_axes=(None, 0))(state, i[:, 0])
        return jnp.concatenate([others, own], axis=-1)

    def avail_actions(self, state: Any) -> tuple[Any, Any]:
        """SMAX's available actions as arrays: allies ``[A, 5 + n_enemies]`` and enemies
        ``[M, 5 + n_allies]`` (uint8): moves if alive, stop always, attack target ``k`` if
        both alive and the target within the attacker's range (allies' targets in enemy
        order; enemies' in reverse ally order, SMAX's)."""
        a = self.num_allies
        pos, alive = state.unit_positions, state.unit_alive
        reach = self.unit_type_attack_ranges[state.unit_types.astype(jnp.int32)]
        dist = jnp.linalg.norm(pos[None, a:] - pos[:a, None], axis=-1)  # [A, M]
        ally_t = (dist < reach[:a, None]) & alive[None, a:] & alive[:a, None]
        enemy_t = ((reach[a:, None] > dist.T) & alive[None, :a] & alive[a:, None])[:, ::-1]
        moves = jnp.repeat(alive[:, None], self.num_movement_actions - 1, axis=1)
        base = jnp.concatenate([moves, jnp.ones_like(moves[:, :1])], axis=1)
        ally = jnp.concatenate([base[:a], ally_t], axis=1).astype(jnp.uint8)
        enemy = jnp.concatenate([base[a:], enemy_t], axis=1).astype(jnp.uint8)
        return ally, enemy

    def get_obs_unit_list(self, state: Any) -> AgentRows:  # type: ignore[override]
        """SMAX's ``unit_list`` observations, one array behind the per-agent mapping."""
        return AgentRows(((tuple(self.agents), self.unit_list_obs(state)),))

    def get_obs(self, state: Any) -> Any:  # type: ignore[override]
        if self.observation_type == "unit_list":
            return self.get_obs_unit_list(state)
        return super().get_obs(state)

    def get_avail_actions(self, state: Any) -> AgentRows:  # type: ignore[override]
        """SMAX's available actions, two arrays behind the per-agent mapping."""
        ally, enemy = self.avail_actions(state)
        a = self.num_allies
        return AgentRows(((tuple(self.agents[:a]), ally), (tuple(self.agents[a:]), enemy)))


class BatchedHeuristicEnemySMAX(HeuristicEnemySMAX):
    """``HeuristicEnemySMAX`` on :class:`BatchedSMAX`, its enemies' observations, actions
    and policy state kept as arrays; the same arguments."""

    def __init__(self, enemy_shoots: bool = True, attack_mode: str = "closest", **env_kwargs: Any) -> None:
        super().__init__(enemy_shoots=enemy_shoots, attack_mode=attack_mode, **env_kwargs)
        # EnemySMAX builds a plain SMAX; the heuristic policy reads the env it is given
        self.batched = BatchedSMAX(**env_kwargs)
        self._env = self.batched
        self.heuristic_policy = create_heuristic_policy(self.batched, 1, shoot=enemy_shoots, attack_mode=attack_mode)

    def get_enemy_policy_initial_state(self, key: Any) -> Any:
        one = get_heuristic_policy_initial_state()
        return jax.tree.map(lambda a: jnp.broadcast_to(jnp.asarray(a), (self.num_enemies, *jnp.shape(a))), one)

    def enemy_observations(self, smax_state: Any) -> Any:
        """``[M, obs_size]``: the enemies' ``unit_list`` observations (what the heuristic reads)."""
        return self.batched.unit_list_obs(smax_state, first=self.num_allies)

    def enemy_actions(self, key: Any, policy_state: Any, enemy_obs: Any) -> tuple[Any, Any]:
        """The heuristic's discrete actions ``[M]`` and next policy state (the keys of
        ``get_enemy_actions``)."""
        keys = jax.random.split(key, num=self.num_enemies)
        return jax.vmap(self.heuristic_policy)(keys, policy_state, enemy_obs)

    def get_enemy_actions(self, key: Any, policy_state: Any, enemy_obs: Any) -> tuple[AgentRows, Any]:
        actions, policy_state = self.enemy_actions(key, policy_state, enemy_obs)
        return AgentRows(((tuple(self.enemy_agents), actions),)), policy_state

    def reset(self, key: Any) -> tuple[AgentRows, Any]:  # type: ignore[override]
        """``EnemySMAX.reset`` (the same keys and values), its observations one array."""
        key, reset_key = jax.random.split(key)
        obs, state = self.batched.reset(reset_key)
        policy_state = self.get_enemy_policy_initial_state(key)
        allies = AgentRows(((tuple(self.agents), obs.array()[: self.num_allies]),), {"world_state": obs["world_state"]})
        return allies, EnemyState(state=state, enemy_policy_state=policy_state)
