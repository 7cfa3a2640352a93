"""``env.scenario=<JaxMARL map>`` on SMAX: the name table, config checks, JaxMARL's own unit
types and start positions, asymmetric teams, mixed-race one-hots, equivariance, training.

Each scenario compiles its own reset and step (~20 s of CPU each): the fast tier builds
5m_vs_6m (asymmetric, fixed types) and smacv2_5_units (JaxMARL's generators, mixed races);
``slow`` builds three more kinds (an asymmetric mixed-type map, hydralisks vs zealots, 10v10
generated); the other nine names run with ``EQMARL_TEST_ALL_SMAX_MAPS=1`` (all passed when
this file was written; together ~3 min of CPU more).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("jax")
pytest.importorskip("jaxmarl")

import jax

from eqmarl.config import ConfigError
from eqmarl.config.env import agent_count, smacv2_teams
from eqmarl.envs.smax import JAXMARL_SCENARIOS, MAP_SIZE, SmaxSMACv2, import_jax
from eqmarl.symmetry.testing import assert_equivariant
from tests.conftest import compose
from tests.test_smax import _f64, _outputs, _policy

import_jax()
from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario  # noqa: E402
from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO  # noqa: E402

FAST = ("5m_vs_6m", "smacv2_5_units")
SLOW = ("3s5z_vs_3s6z", "6h_vs_8z", "smacv2_10_units")
ALL_MAPS = os.environ.get("EQMARL_TEST_ALL_SMAX_MAPS") == "1"


def test_name_table_is_jaxmarls() -> None:
    assert {k: (int(v.num_allies), int(v.num_enemies)) for k, v in MAP_NAME_TO_SCENARIO.items()} == JAXMARL_SCENARIOS


def test_config_checks_name_backend_and_generator_keys() -> None:
    with pytest.raises(ConfigError) as e:
        compose(["env=smax", "env.scenario=2s4z"])
    msg = str(e.value)
    assert "env.scenario" in msg and all(name in msg for name in JAXMARL_SCENARIOS)
    for override, key in (
        ("env.race=protoss", "env.race"),
        ("env.start_positions=reflect", "env.start_positions"),
        ("env.surround_sides=left", "env.surround_sides"),
        ("env.p=0.2", "env.p"),
        ("env.map_size=48", "env.map_size"),
        ("env.n_enemies=7", "env.n_enemies"),
        ("env.min_units=3", "env.min_units"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
            compose(["env=smax", "env.scenario=5m_vs_6m", override])
        assert "5m_vs_6m" in str(e.value)
    with pytest.raises(ConfigError, match=r"env\.scenario.*smax"):
        compose(["env=smacv2", "env.scenario=3m"])
    cfg = compose(["env=smax", "env.scenario=27m_vs_30m", "env.movement=discrete", "env.n_enemies=30"])
    assert smacv2_teams(cfg.env) == (27, 30) and agent_count(cfg.env) == 27  # type: ignore[arg-type]
    exp = compose(["experiment=smax_jaxmarl_5_units"])
    assert exp.env.scenario == "smacv2_5_units" and exp.env.episode_limit == 101  # type: ignore[attr-defined]
    assert compose(["experiment=smax_jaxmarl_10_units"]).env.scenario == "smacv2_10_units"  # type: ignore[attr-defined]


def _jaxmarl_reset(env: SmaxSMACv2, name: str, seed: int):  # type: ignore[no-untyped-def]
    """JaxMARL's own HeuristicEnemySMAX reset of ``name`` with the keys ``env.reset(seed)`` uses."""
    ref = HeuristicEnemySMAX(scenario=map_name_to_scenario(name), map_width=32, map_height=32)
    base = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(base, i), 1))(jax.numpy.arange(env.num_envs))
    return jax.vmap(ref.reset)(keys)[1].state


def _check_runs(env: SmaxSMACv2, name: str, steps: int = 3) -> None:
    """Team sizes, masks and node features of ``name``; a few steps with random available actions."""
    allies, enemies = JAXMARL_SCENARIOS[name]
    obs = env.reset(seed=1)
    e = env.num_envs
    assert env.spec.n_agents == allies and env.spec.n_targets == enemies and env.map_size == MAP_SIZE
    assert obs.action_mask.shape == (e, allies, 7 + enemies) and obs.graph.h.shape[:2] == (e, allies + enemies)
    assert obs.graph.node_group.tolist() == [[0] * allies + [1] * enemies] * e
    types = env.unit_types()
    onehot = obs.graph.h[..., 5:]
    assert onehot.shape[-1] == 6
    alive = obs.graph.node_mask
    assert (onehot.argmax(-1)[alive] == types[alive]).all()
    fixed = MAP_NAME_TO_SCENARIO[name]
    if not fixed.smacv2_unit_type_generation:
        assert (types == torch.tensor(np.array(fixed.unit_types), dtype=torch.long)).all()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        m = obs.action_mask
        choice = torch.multinomial(m[..., :3].reshape(-1, 3).float(), 1, generator=gen).reshape(e, allies)
        targets = m[..., 7:].float() + 1e-9
        target = torch.multinomial(targets.reshape(-1, enemies), 1, generator=gen).reshape(e, allies)
        vec = torch.randn(e, allies, 2, generator=gen)
        res = env.step(torch.cat([choice[..., None].float(), vec, target[..., None].float()], -1))
        obs = res.obs
        for t in (obs.graph.h, obs.graph.x, obs.graph.v, obs.obs, res.reward):
            assert torch.isfinite(t).all()
        assert res.reward.shape == (e, allies) and obs.action_mask.shape == (e, allies, 7 + enemies)


@pytest.fixture(scope="module", params=FAST)
def fast_env(request: pytest.FixtureRequest) -> tuple[str, SmaxSMACv2]:
    return request.param, SmaxSMACv2(4, scenario=request.param, movement="discrete", seed=0, check_actions=True)


def test_fast_scenarios_are_jaxmarls_and_step(fast_env: tuple[str, SmaxSMACv2]) -> None:
    name, env = fast_env
    env.reset(seed=3)
    got, want = env.smax_state(), _jaxmarl_reset(env, name, 3)
    np.testing.assert_array_equal(np.asarray(got.unit_types), np.asarray(want.unit_types))
    np.testing.assert_array_equal(np.asarray(got.unit_positions), np.asarray(want.unit_positions))
    if name == "smacv2_5_units":  # all six types, races mixed in a battle; enemies mirror allies
        types = np.asarray(got.unit_types)
        assert (types[:, :5] == types[:, 5:]).all()
        env.reset(seed=4)
        seen = {int(t) for t in np.asarray(env.smax_state().unit_types).ravel()} | set(types.ravel().tolist())
        assert len(seen) >= 4
    _check_runs(env, name)


def test_e2gn2_equivariant_on_scenario_observations(fast_env: tuple[str, SmaxSMACv2]) -> None:
    _, env = fast_env
    obs = _f64(env.reset(seed=5))
    errs = assert_equivariant(
        _outputs(_policy("e2gn2", env.spec)),
        obs,
        {"mean": "equivariant", "choice": "invariant", "target": "invariant", "value": "invariant"},
        generator=torch.Generator().manual_seed(0),
    )
    assert max(errs.values()) < 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in JAXMARL_SCENARIOS if n not in FAST])
def test_every_scenario_builds_and_steps(name: str) -> None:
    if name not in SLOW and not ALL_MAPS:
        pytest.skip("one of the nine further JaxMARL maps: EQMARL_TEST_ALL_SMAX_MAPS=1 runs them")
    _check_runs(SmaxSMACv2(2, scenario=name, seed=0), name, steps=2)


@pytest.mark.slow
def test_train_smacv2_5_units_through_the_cli(tmp_path, clean_env) -> None:  # type: ignore[no-untyped-def]
    """``launch.py env=smax env.scenario=smacv2_5_units`` trains E2GN2 for two tiny iterations."""
    import csv

    from tests.conftest import launch_cmd, run_ok

    run = tmp_path / "run"
    run_ok(
        launch_cmd(
            "env=smax",
            "env.scenario=smacv2_5_units",
            "model=e2gn2",
            "model.hidden=16",
            "train.num_envs=4",
            "train.eval_episodes=4",
            "train.total_env_steps=32",
            "train.eval_every=2",
            "algo.rollout_steps=4",
            "algo.epochs=1",
            "algo.num_minibatches=1",
            "logger.wandb_mode=disabled",
            "logger.progress=false",
            f"hydra.run.dir={run}",
        ),
        clean_env,
        timeout=900,
    )
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(np.isfinite(float(r["loss"])) for r in rows if r.get("loss"))
    assert "scenario: smacv2_5_units" in (run / ".hydra" / "config.yaml").read_text()
