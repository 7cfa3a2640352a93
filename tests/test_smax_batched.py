"""The batched SMAX functions (:mod:`eqmarl.envs.smax_batched`) equal SMAX's own per-agent ones.

3 allies vs 4 enemies (asymmetric, so ally and enemy orders differ), mixed unit types,
units dead, out of sight and in range, past actions set: every observation, available
action, enemy action and reset of the batched classes equals JaxMARL's.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("jaxmarl")

import jax
import jax.numpy as jnp

from eqmarl.envs.smax import import_jax

import_jax()

from jaxmarl.environments.smax import HeuristicEnemySMAX, Scenario  # noqa: E402

from eqmarl.envs.smax_batched import AgentRows, BatchedHeuristicEnemySMAX, BatchedSMAX  # noqa: E402

KW = {
    "scenario": Scenario(
        unit_types=jnp.array([0, 2, 5, 1, 3, 4, 0], dtype=jnp.uint8),
        num_allies=3,
        num_enemies=4,
        smacv2_position_generation=False,
        smacv2_unit_type_generation=False,
    )
}


def _states(n: int = 4) -> list:  # type: ignore[type-arg]
    """Hand-varied 3v4 states: random positions in a 12x12 corner (some in range, some not),
    one or two dead units, random cooldowns and last actions."""
    ref = HeuristicEnemySMAX(**KW)._env
    out = []
    for s in range(n):
        rng = np.random.default_rng(s)
        _, st = ref.reset(jax.random.PRNGKey(s))
        alive = np.ones(7, bool)
        alive[rng.choice(7, size=1 + s % 2, replace=False)] = s % 3 != 0
        health = np.where(alive, np.asarray(st.unit_health) * rng.uniform(0.2, 1.0, 7), 0.0)
        out.append(
            st.replace(
                unit_positions=jnp.asarray(rng.uniform(1, 12, (7, 2)), jnp.float32),
                unit_alive=jnp.asarray(alive),
                unit_health=jnp.asarray(health, jnp.float32),
                unit_weapon_cooldowns=jnp.asarray(rng.uniform(0, 1.5, 7), jnp.float32),
                prev_movement_actions=jnp.asarray(rng.uniform(-1, 1, (7, 2)), jnp.float32),
                prev_attack_actions=jnp.asarray(rng.integers(0, 9, 7), jnp.int32),
            )
        )
    return out


def test_observations_and_masks_equal_smax() -> None:
    for see_enemy_actions in (True, False):
        ref = HeuristicEnemySMAX(see_enemy_actions=see_enemy_actions, **KW)._env
        new = BatchedSMAX(see_enemy_actions=see_enemy_actions, **KW)
        for st in _states():
            want_obs, got_obs = ref.get_obs(st), new.get_obs(st)
            want_av, got_av = ref.get_avail_actions(st), new.get_avail_actions(st)
            assert isinstance(got_obs, AgentRows) and list(got_obs) == ref.agents == list(got_av)
            for agent in ref.agents:
                np.testing.assert_array_equal(np.asarray(got_obs[agent]), np.asarray(want_obs[agent]), err_msg=agent)
                np.testing.assert_array_equal(np.asarray(got_av[agent]), np.asarray(want_av[agent]), err_msg=agent)
            enemies = np.asarray(new.unit_list_obs(st, first=3))
            assert enemies.shape == (4, ref.obs_size)
            np.testing.assert_array_equal(enemies, np.stack([np.asarray(want_obs[f"enemy_{k}"]) for k in range(4)]))
    # the batched step compiles and steps like SMAX's (world state and rewards through the same code)
    key = jax.random.PRNGKey(0)
    acts = (jnp.zeros((7, 2)), jnp.array([5, 5, 6, 5, 5, 6, 7]))
    a = ref.step_env_no_decode(key, _states(2)[1], acts)
    b = jax.jit(new.step_env_no_decode)(key, _states(2)[1], acts)
    for x, y in zip(jax.tree.leaves(a[1]), jax.tree.leaves(b[1]), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(np.asarray(a[0]["world_state"]), np.asarray(b[0]["world_state"]))
    assert float(a[2]["ally_0"]) == float(b[2]["ally_0"])


def test_enemy_wrapper_equals_heuristic_enemy_smax() -> None:
    ref, new = HeuristicEnemySMAX(**KW), BatchedHeuristicEnemySMAX(**KW)
    for seed in range(3):
        key = jax.random.PRNGKey(seed)
        (obs_a, st_a), (obs_b, st_b) = ref.reset(key), jax.jit(new.reset)(key)
        for x, y in zip(jax.tree.leaves(st_a), jax.tree.leaves(st_b), strict=True):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert list(obs_b) == list(obs_a)
        for k in obs_a:
            np.testing.assert_array_equal(np.asarray(obs_a[k]), np.asarray(obs_b[k]))
    policy_state = ref.get_enemy_policy_initial_state(key)
    for st in _states():
        want_obs = ref._env.get_obs_unit_list(st)
        enemy_obs = jnp.stack([want_obs[a] for a in ref.enemy_agents])
        np.testing.assert_array_equal(np.asarray(new.enemy_observations(st)), np.asarray(enemy_obs))
        want, want_ps = ref.get_enemy_actions(key, policy_state, enemy_obs)
        got, got_ps = new.get_enemy_actions(key, policy_state, new.enemy_observations(st))
        assert [int(want[a]) for a in ref.enemy_agents] == [int(got[a]) for a in ref.enemy_agents]
        for x, y in zip(jax.tree.leaves(want_ps), jax.tree.leaves(got_ps), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        policy_state = want_ps
