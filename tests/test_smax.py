"""SMACv2 on SMAX: start positions, entity graph, masks, moves, wins, autoreset, heads.

Needs jax and jaxmarl (``pip install -c constraints.txt -e '.[smax]'``); skipped without them.  Envs are built
once per module (each compiles its jitted step, ~10 s on a loaded 2-core machine).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("jax")
pytest.importorskip("jaxmarl")

import jax
import jax.numpy as jnp

from eqmarl.config import ConfigError, ModelConfig
from eqmarl.core.env import Observation
from eqmarl.core.smacv2_actions import COMPASS
from eqmarl.envs.smacv2_scenarios import (
    SURROUND_SIDES,
    diagonal_points,
    make_race_unit_types,
    make_start_positions,
)
from eqmarl.envs.smax import POS_SCALE, SmaxSMACv2
from eqmarl.models.registry import make_policy
from eqmarl.symmetry.testing import EquivarianceError, assert_equivariant, rotate_observation
from tests.conftest import compose

W = 32.0


@pytest.fixture(scope="module")
def env3() -> SmaxSMACv2:
    """3v3 marines, continuous moves (hand-built battles)."""
    return SmaxSMACv2(1, race="terran", n_units=3, n_enemies=3, episode_limit=5, seed=0)


@pytest.fixture(scope="module")
def env5d() -> SmaxSMACv2:
    """16 envs of 5v5, discrete moves, every action checked against the mask."""
    return SmaxSMACv2(16, n_units=5, n_enemies=5, movement="discrete", seed=1, check_actions=True)


def battle(env: SmaxSMACv2, pos: list[tuple[float, float]], health: list[float], types: list[int] | None = None):
    """A hand-built SMAX state for ``env`` (one env): positions, absolute health, unit types."""
    s = env.smax_state()
    n = len(pos)
    t = jnp.array(types or [0] * n, dtype=jnp.uint8)[None]
    hp = jnp.array(health, dtype=jnp.float32)[None]
    return s.replace(
        unit_positions=jnp.array(pos, dtype=jnp.float32)[None],
        unit_health=hp,
        unit_alive=hp > 0,
        unit_types=t,
        unit_weapon_cooldowns=jnp.zeros((1, n), dtype=jnp.float32),
        prev_movement_actions=jnp.zeros((1, n, 2), dtype=jnp.float32),
        step=jnp.zeros((1,), dtype=s.step.dtype),
        done=jnp.zeros((1,), dtype=bool),
    )


def act(
    choice: list[int], vec: list[tuple[float, float]] | None = None, target: list[int] | None = None
) -> torch.Tensor:
    n = len(choice)
    vec = vec or [(0.0, 0.0)] * n
    target = target or [0] * n
    return torch.tensor([[[c, v[0], v[1], t] for c, v, t in zip(choice, vec, target)]], dtype=torch.float32)


# ----------------------------------------------------------------------------- start positions
def _generate(gen, n: int, seed: int = 0) -> np.ndarray:
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    return np.asarray(jax.vmap(gen.generate)(keys))


def _dist_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


@pytest.mark.parametrize("sides", ["left", "right", "all"])
def test_surrounded_positions_inside_walls_on_their_diagonals(sides: str) -> None:
    gen = make_start_positions(5, 6, W, W, "surrounded", 0.0, sides)
    pos = _generate(gen, 2000)  # [S, 11, 2]
    assert (pos >= 1.0).all() and (pos <= W - 1.0).all()  # inside the walls (margin 1)
    allies, enemies = pos[:, :5], pos[:, 5:]
    assert np.abs(allies - W / 2).max() <= 2.0 + 1e-5  # allies centred (jitter 2)
    corners, inner = (np.array(a) for a in diagonal_points(W, W))
    d = np.stack([_dist_to_segment(enemies, corners[k], inner[k]) for k in range(4)], axis=-1)  # [S, 6, 4]
    nearest = d.argmin(-1)
    # every enemy lies on a diagonal (within its jitter of 1 per axis, plus the clip into the walls)
    assert d.min(-1).max() <= math.sqrt(2) + 1e-4
    allowed = set(SURROUND_SIDES[sides])
    assert set(np.unique(nearest).tolist()) == allowed  # each allowed diagonal used, no other
    if sides == "left":
        assert enemies[..., 0].max() < W / 2 - 0.9
    if sides == "right":
        assert enemies[..., 0].min() > W / 2 + 0.9
    # groups: units of one diagonal share its t (up to jitter); 1..K distinct diagonals per episode
    n_diag = np.array([len(set(row.tolist())) for row in nearest])
    assert n_diag.min() == 1 and n_diag.max() == len(allowed)


def test_reflect_and_mixture() -> None:
    gen = make_start_positions(5, 5, W, W, "reflect", 0.5, "all")
    pos = _generate(gen, 500)
    assert (pos >= 1.0).all() and (pos <= W - 1.0).all()
    assert pos[:, :5, 0].max() <= W / 2 - 1 + 1e-5
    np.testing.assert_allclose(pos[:, 5:, 0], np.clip(W - pos[:, :5, 0], 1.0, W - 1.0), atol=1e-5)
    np.testing.assert_allclose(pos[:, 5:, 1], pos[:, :5, 1], atol=1e-5)
    mix = _generate(make_start_positions(5, 5, W, W, "surrounded_and_reflect", 0.25, "all"), 4000)
    reflect = (mix[:, :5, 0] < W / 2 - 2 - 1e-3).any(-1) | (mix[:, :5, 0] <= W / 2 - 1).all(-1) & (
        np.abs(mix[:, 5:, 1] - mix[:, :5, 1]).max(-1) < 1e-4
    )
    assert abs(reflect.mean() - 0.25) < 0.03  # P(reflect) = p


@pytest.mark.parametrize("race,types", [("terran", {0, 1}), ("protoss", {2, 3}), ("zerg", {4, 5})])
def test_race_unit_types(race: str, types: set[int]) -> None:
    t = _generate(make_race_unit_types(5, 7, W, W, race), 300)
    assert set(np.unique(t).tolist()) == types
    np.testing.assert_array_equal(t[:, 5:10], t[:, :5])  # enemies mirror the allies


# ----------------------------------------------------------------------------- graph and masks
def test_graph_edges_and_masks_hand_built_3v3(env3: SmaxSMACv2) -> None:
    pos = [(16, 16), (17, 16), (16, 17), (20, 16), (16, 30), (10, 10)]
    obs = env3.set_smax_state(battle(env3, pos, [45, 22.5, 45, 45, 45, 0]))  # enemy 2 dead
    g = obs.graph
    assert g is not None and obs.action_mask is not None
    alive = torch.tensor([1, 1, 1, 1, 1, 0], dtype=torch.bool)
    assert torch.equal(g.node_mask[0], alive)
    adj = g.adjacency()[0]
    expected = torch.zeros(6, 6, dtype=torch.bool)
    for i in range(3):
        for j in range(3):
            expected[i, j] = i != j  # allies fully connected
        for j in (3, 4):  # every ally <-> every (alive) enemy
            expected[i, j] = expected[j, i] = True
    assert torch.equal(adj, expected)  # no enemy-enemy edges, the dead enemy isolated
    # features: health fraction, alive, ally, enemy, cooldown, type one-hot; centred positions
    assert g.h[0, 1, 0] == pytest.approx(0.5)
    assert g.h[0, 3, 2:4].tolist() == [0.0, 1.0] and g.h[0, 0, 2:4].tolist() == [1.0, 0.0]
    assert g.h[0, 0, 5].item() == 1.0  # marine
    torch.testing.assert_close(g.x[0, 3], torch.tensor([4.0, 0.0]) / POS_SCALE)
    # masks: stop, move, attack | N E S W | targets (marine range 5: enemy 0 only; enemy 2 dead)
    m = obs.action_mask[0].int().tolist()
    assert m[0] == [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert m[1] == [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert m[2] == [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    # a dead ally may only stop
    obs = env3.set_smax_state(battle(env3, pos, [0, 45, 45, 45, 45, 0]))
    assert obs.action_mask[0, 0].int().tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    # flat observation: the same information (own node, then every node; dead ones zero)
    nodes = torch.cat([obs.graph.h, obs.graph.x, obs.graph.v], -1)[0]
    torch.testing.assert_close(obs.obs[0, 1], torch.cat([nodes[1], nodes.flatten()]))


def test_continuous_moves_move_by_speed(env3: SmaxSMACv2) -> None:
    pos = [(8, 8), (16, 16), (24, 8), (30, 30), (2, 30), (30, 2)]
    env3.set_smax_state(battle(env3, pos, [45, 125, 45, 45, 45, 45], types=[0, 1, 0, 0, 0, 0]))
    v = [(0.3, -0.4), (3.0, 4.0), (0.0, 0.0)]
    res = env3.step(act([1, 1, 1], v))
    moved = (res.obs.graph.x[0, :3] - torch.tensor(pos[:3]).float().sub(W / 2) / POS_SCALE) * POS_SCALE
    marine, marauder = 3.15 * 0.5, 2.25 * 0.5  # speed * 8 ticks * 1/16 s
    torch.testing.assert_close(moved[0], torch.tensor([0.3, -0.4]) * marine, atol=1e-4, rtol=0)
    torch.testing.assert_close(moved[1], torch.tensor([0.6, 0.8]) * marauder, atol=1e-4, rtol=0)  # clipped to |v|=1
    torch.testing.assert_close(moved[2], torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(res.obs.graph.v[0, 0], torch.tensor([0.3, -0.4]))  # last movement
    # a move towards a wall stops short of it instead of killing the unit
    env3.set_smax_state(battle(env3, [(0.9, 16), (16, 16), (16, 20), (30, 30), (2, 30), (30, 2)], [45] * 6))
    res = env3.step(act([1, 0, 0], [(-1.0, 0.0), (0, 0), (0, 0)]))
    assert bool(res.obs.graph.node_mask[0, 0]) and res.obs.graph.x[0, 0, 0] * POS_SCALE + W / 2 >= 0.5 - 1e-4


def test_win_truncation_and_final_obs(env3: SmaxSMACv2) -> None:
    # three allies next to the last enemy (1 HP): attacking it wins
    pos = [(16, 16), (17, 16), (16, 17), (18, 17), (30, 30), (2, 2)]
    env3.set_smax_state(battle(env3, pos, [45, 45, 45, 1, 0, 0]))
    res = env3.step(act([2, 2, 2], target=[0, 0, 0]))
    assert res.terminated.tolist() == [True] and res.truncated.tolist() == [False]
    assert res.info["win"].tolist() == [1.0]
    assert float(res.reward[0, 0]) >= 1.0  # SMAX's won-battle bonus (its own win criterion)
    assert not bool(res.final_obs.graph.node_mask[0, 3:].any())  # the finished battle: enemies dead
    assert bool(res.obs.graph.node_mask[0].all())  # autoreset: a fresh battle
    assert int(res.episode_length[0]) == 1
    # a lost battle: the last ally (1 HP) dies next to three enemies
    env3.set_smax_state(battle(env3, [(16, 16), (2, 2), (30, 2), (17, 16), (16, 17), (15, 16)], [1, 0, 0, 45, 45, 45]))
    for _ in range(3):
        res = env3.step(act([0, 0, 0]))
        if bool(res.done.any()):
            break
    assert res.terminated.tolist() == [True] and res.info["win"].tolist() == [0.0]
    assert float(res.reward[0, 0]) < 1.0
    # truncation at the episode limit (5): far apart, everyone stops
    env3.set_smax_state(battle(env3, [(4, 16), (4, 18), (4, 14), (28, 16), (28, 18), (28, 14)], [45] * 6))
    wins = []
    for t in range(5):
        res = env3.step(act([0, 0, 0]))
        wins.append(res.info["win"][0].item())
        if t < 4:
            assert not bool(res.done.any()) and math.isnan(wins[-1])
    assert res.truncated.tolist() == [True] and res.terminated.tolist() == [False] and wins[-1] == 0.0
    assert int(res.episode_length[0]) == 5
    assert not torch.equal(res.final_obs.graph.x, res.obs.graph.x)  # the last obs kept for bootstrapping


@pytest.mark.slow
def test_fuzz_no_unavailable_action_reaches_env(env5d: SmaxSMACv2) -> None:
    """Random policies (an untrained MLP and E2GN2, sampled) for 16 envs x 150 steps each;
    the env checks every action against its mask; no ally ever walks into a wall."""
    torch.manual_seed(0)
    env = env5d
    cfgs = [ModelConfig(name="mlp", hidden=16), ModelConfig(name="e2gn2", hidden=16, activation="relu")]
    obs = env.reset(seed=3)
    ends = 0
    for cfg in cfgs:
        policy = make_policy(cfg, env.spec, centralized_critic=False)
        with torch.no_grad():  # a wider, more random move distribution than at init
            policy.head.log_std.fill_(1.0)
        for _ in range(150):
            out = policy.act(obs)
            res = env.step(out.action)  # raises on an unavailable action
            ends += int(res.done.sum())
            x = res.final_obs.graph.x[:, :5] * POS_SCALE + W / 2
            alive = res.final_obs.graph.node_mask[:, :5]
            assert bool(((x > 0) & (x < W)).all(-1)[alive].all())
            obs = res.obs
    assert ends > 0


def test_unavailable_action_is_refused(env5d: SmaxSMACv2) -> None:
    obs = env5d.reset(seed=0)
    mask = obs.action_mask
    assert mask is not None
    a = torch.zeros(16, 5, 4)
    bad = (~mask[..., 7:]).nonzero()[0]  # an (env, agent, target) that is out of range
    a[bad[0], bad[1], 0] = 2
    a[bad[0], bad[1], 3] = float(bad[2])
    with pytest.raises(ValueError, match="unavailable action"):
        env5d.step(a)
    env5d.reset(seed=0)


# ----------------------------------------------------------------------------- policies
def _f64(obs: Observation) -> Observation:
    return obs.map(lambda t: t.double() if t.is_floating_point() else t)


def _outputs(policy):  # type: ignore[no-untyped-def]
    def fn(obs: Observation) -> dict[str, torch.Tensor]:
        d = policy.distribution(obs)
        return {"mean": d.move.mean, "choice": d.choice_probs(), "target": d.target_probs(), "value": policy.value(obs)}

    return fn


def _policy(name: str, spec, seed: int = 0):  # type: ignore[no-untyped-def]
    from eqmarl.models.e2gn2 import E2GN2Layer

    torch.manual_seed(seed)
    policy = make_policy(ModelConfig(name=name, hidden=16, activation="tanh"), spec, centralized_critic=False).double()
    for m in policy.modules():  # an O(1) action mean instead of the near-zero initial one
        if isinstance(m, E2GN2Layer):
            m.reset_gate(1.0)
    return policy


def test_e2gn2_mixed_head_equivariant_and_baselines_not(env5d: SmaxSMACv2) -> None:
    obs = _f64(env5d.reset(seed=5))
    gen = torch.Generator().manual_seed(0)
    kinds = {"mean": "equivariant", "choice": "invariant", "target": "invariant", "value": "invariant"}
    errs = assert_equivariant(_outputs(_policy("e2gn2", env5d.spec)), obs, kinds, generator=gen)
    assert max(errs.values()) < 1e-9
    for name in ("gnn", "mlp"):
        with pytest.raises(EquivarianceError):
            assert_equivariant(_outputs(_policy(name, env5d.spec)), obs, kinds, generator=gen)


def test_e2gn2_discrete_move_probabilities_permute_under_compass_symmetries(env5d: SmaxSMACv2) -> None:
    obs = _f64(env5d.reset(seed=6))
    policy = _policy("e2gn2", env5d.spec)
    dirs = torch.tensor(COMPASS, dtype=torch.float64)
    with torch.no_grad():
        policy.head.log_std.fill_(-0.3)
        probs = policy.distribution(obs).compass_probs(dirs)
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs[..., 0]), atol=1e-12, rtol=0)
    r = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    f = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    group = [torch.linalg.matrix_power(r, k) @ (f if refl else eye) for k in range(4) for refl in (0, 1)]
    for g in group:
        perm = [int(((dirs @ g.T)[k] - dirs).norm(dim=-1).argmin()) for k in range(4)]  # g d_k = d_perm[k]
        with torch.no_grad():
            probs_g = policy.distribution(rotate_observation(obs, g)).compass_probs(dirs)
        expected = torch.empty_like(probs)
        expected[..., perm] = probs
        assert (probs_g - expected).abs().max() < 1e-9


@pytest.mark.slow
def test_same_weights_other_team_sizes(env5d: SmaxSMACv2) -> None:
    """A 5v5 E2GN2 policy runs unchanged on 7 allies vs 8 enemies; the MLP's head cannot."""
    policy = make_policy(ModelConfig(name="e2gn2", hidden=16), env5d.spec, centralized_critic=False)
    big = SmaxSMACv2(2, n_units=7, n_enemies=8, seed=0)
    obs = big.reset(seed=0)
    out = policy.act(obs)
    assert out.action.shape == (2, 7, 4) and out.logprob.shape == (2, 7)
    big.step(out.action)
    mlp = make_policy(ModelConfig(name="mlp", hidden=16), env5d.spec, centralized_critic=False)
    with pytest.raises((ValueError, RuntimeError)):
        mlp.act(obs)


def test_joint_log_prob_and_entropy() -> None:
    from eqmarl.models.distributions import DiagGaussian, MaskedCategorical
    from eqmarl.models.smacv2_heads import MixedDistribution

    choice = MaskedCategorical(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[True, True, False]]))
    move = DiagGaussian(torch.tensor([[0.5, -0.5]]), torch.tensor([-0.2, -0.2]))
    target = MaskedCategorical(torch.tensor([[1.0, 0.0, 3.0]]), torch.tensor([[True, True, False]]))
    d = MixedDistribution(choice, move, target)
    for _ in range(50):  # masked choices and targets are never sampled
        a = d.sample()
        assert int(a[0, 0]) != 2 and int(a[0, 3]) != 2
    a = torch.tensor([[1.0, 0.2, 0.1, 0.0]])
    expected = choice.log_prob(torch.tensor([1])) + move.log_prob(a[:, 1:3])
    torch.testing.assert_close(d.log_prob(a), expected)
    stop = torch.tensor([[0.0, 9.0, 9.0, 1.0]])  # stop: the vector and target do not count
    torch.testing.assert_close(d.log_prob(stop), choice.log_prob(torch.tensor([0])))
    p = choice.logits.exp()
    torch.testing.assert_close(d.entropy(), choice.entropy() + p[:, 1] * move.entropy())


@pytest.mark.parametrize("seed", range(3))
def test_mixed_entropy_gradient_per_part_and_joint(seed: int) -> None:
    """``per_part`` and ``joint`` give the same entropy value; on the choice logits,
    ``per_part``'s gradient is the choice entropy's alone and ``joint``'s adds
    ``dp/dz . (0, H(move), H(target))``; the move's log-std gets ``p(move) dH(move)`` in both."""
    from eqmarl.models.distributions import DiagGaussian, MaskedCategorical
    from eqmarl.models.smacv2_heads import MixedDistribution

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(6, 3, generator=g, dtype=torch.float64)
    mean = torch.randn(6, 2, generator=g, dtype=torch.float64)
    log_std = torch.randn((), generator=g, dtype=torch.float64)
    t_logits = torch.randn(6, 4, generator=g, dtype=torch.float64)
    choice_mask = torch.rand(6, 3, generator=g) < 0.8
    choice_mask[:, 1] = True
    target_mask = torch.rand(6, 4, generator=g) < 0.7
    target_mask[:, 0] = True

    def grads(mode: str) -> tuple[torch.Tensor, ...]:
        zz, ls, tt = (x.clone().requires_grad_(True) for x in (z, log_std, t_logits))
        d = MixedDistribution(
            MaskedCategorical(zz, choice_mask),
            DiagGaussian(mean, ls.expand(2)),
            MaskedCategorical(tt, target_mask),
            entropy_grad=mode,
        )
        h = d.entropy()
        return (h.detach(), *torch.autograd.grad(h.sum(), (zz, ls, tt)))

    h_part, dz_part, dls_part, dt_part = grads("per_part")
    h_joint, dz_joint, dls_joint, dt_joint = grads("joint")
    torch.testing.assert_close(h_part, h_joint)
    torch.testing.assert_close(dls_part, dls_joint)
    torch.testing.assert_close(dt_part, dt_joint)
    zz = z.clone().requires_grad_(True)
    (dz_choice,) = torch.autograd.grad(MaskedCategorical(zz, choice_mask).entropy().sum(), zz)
    torch.testing.assert_close(dz_part, dz_choice)
    assert (dz_joint - dz_part).abs().max() > 1e-3  # the joint gradient also moves the choice
    with pytest.raises(ValueError, match="mixed_entropy"):
        from eqmarl.models.smacv2_heads import MixedActionHead

        MixedActionHead(8, 3, equivariant=False, init_log_std=0.0, mixed_entropy="both")


# ----------------------------------------------------------------------------- config
def test_env_smax_composes_and_sc2_without_starcraft_stops(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = compose(["env=smax", "model=e2gn2"])
    assert cfg.env.name == "smacv2" and cfg.env.backend == "smax"  # type: ignore[attr-defined]
    monkeypatch.setenv("SC2PATH", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as e:
        compose(["env=smacv2"])
    msg = str(e.value)
    assert "env.backend" in msg and str(tmp_path / "nowhere") in msg and "image" in msg and "env.backend=smax" in msg
    with pytest.raises(ConfigError, match=r"env\.surround_sides"):
        compose(["env=smax", "env.surround_sides=top"])
    from eqmarl.envs.smacv2 import StarCraftIINotFound, make_smacv2

    with pytest.raises(StarCraftIINotFound, match=r"env\.backend=smax"):
        make_smacv2("sc2", 2, 0)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_eval_render_end_to_end(tmp_path, clean_env) -> None:  # type: ignore[no-untyped-def]
    """``launch.py env=smax`` trains E2GN2 and logs win rates; ``eqmarl eval`` runs the
    checkpoint on the unseen right side; ``eqmarl render`` writes a GIF.
    (16 envs, discrete moves: the step compiled for ``env5d`` is reused from the cache.)"""
    import csv
    import json

    from tests.conftest import launch_cmd, run_ok

    run = tmp_path / "run"
    run_ok(
        launch_cmd(
            "env=smax",
            "env.movement=discrete",
            "model=e2gn2",
            "model.hidden=16",
            "train.num_envs=16",
            "train.eval_episodes=16",
            "train.total_env_steps=320",
            "train.eval_every=1",
            "algo.rollout_steps=10",
            "algo.epochs=1",
            "algo.num_minibatches=2",
            "logger.wandb_mode=disabled",
            "logger.progress=false",
            f"hydra.run.dir={run}",
        ),
        clean_env,
        timeout=900,
    )
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and rows[-1]["eval_win_rate"] != "" and 0.0 <= float(rows[-1]["eval_win_rate"]) <= 1.0
    out = tmp_path / "right.json"
    cli = [sys.executable, "-m", "eqmarl.cli"]
    p = run_ok(
        [*cli, "eval", str(run), "env.surround_sides=right", "--episodes", "16", "--out", str(out)], clean_env, 900
    )
    assert json.loads(p.stdout) == json.loads(out.read_text())  # stdout: the JSON alone (no jaxmarl chatter)
    result = json.loads(out.read_text())
    assert result["episodes"] == 16 and 0.0 <= result["win_rate"] <= 1.0 and result["env"]["surround_sides"] == "right"
    bad = [*cli, "eval", str(run), "model.hidden=8"]
    p = subprocess.run(bad, capture_output=True, text=True, env=clean_env, check=False)
    assert p.returncode == 2 and "env.<key>=<value>" in p.stderr
    gif = tmp_path / "episode.gif"
    run_ok([*cli, "render", str(run), "--out", str(gif), "--steps", "4"], clean_env, 900)
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames >= 2
