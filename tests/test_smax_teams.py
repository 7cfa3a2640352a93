"""Team sizes drawn per episode (``env.min_units``) on SMAX: the draws, the padding units
(dead from the start, never acting, never targeted, out of the graph, the rewards and the
PPO loss), the equality with an unpadded battle, the config's errors, and a run through
the real CLI.

Needs jax and jaxmarl (``.ci/setup-smax.sh``); skipped without them.  Two envs are built
per module (each compiles its jitted step, ~20 s on a loaded 2-core machine).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("jax")
pytest.importorskip("jaxmarl")

import jax.numpy as jnp

from eqmarl.algos.ppo import ppo_loss
from eqmarl.config import ConfigError
from eqmarl.core.env import Observation
from eqmarl.core.smacv2_actions import CHOICE_ATTACK, CHOICE_MOVE, CHOICE_STOP, MASK_TARGETS
from eqmarl.envs.smacv2_scenarios import PAD_POSITION, check_team_sizes
from eqmarl.envs.smax import SmaxSMACv2
from eqmarl.train.rollout import with_agent_mask
from tests.conftest import compose

N_MAX, N_MIN, E = 5, 3, 8


@pytest.fixture(scope="module")
def padded() -> SmaxSMACv2:
    """8 envs of 3..5 per side (padded to 5v5), every action checked against the mask."""
    return SmaxSMACv2(E, n_units=N_MAX, n_enemies=N_MAX, min_units=N_MIN, episode_limit=4, seed=0, check_actions=True)


@pytest.fixture(scope="module")
def plain3() -> SmaxSMACv2:
    """One unpadded 3v3 env (the same config as tests/test_smax.py's env3: its step is cached)."""
    return SmaxSMACv2(1, race="terran", n_units=3, n_enemies=3, episode_limit=5, seed=0)


def sizes(env: SmaxSMACv2) -> tuple[np.ndarray, np.ndarray]:
    """Each env's (live allies, live-at-start enemies): units not at PAD_POSITION."""
    pos = np.asarray(env.smax_state().unit_positions)
    present = ~np.all(pos == np.array(PAD_POSITION, dtype=np.float32), axis=-1)
    n = env.n_allies
    return present[:, :n].sum(-1), present[:, n:].sum(-1)


def padding(env: SmaxSMACv2) -> np.ndarray:
    """``[E, N]`` bool: the padding units of the current episodes."""
    pos = np.asarray(env.smax_state().unit_positions)
    return np.all(pos == np.array(PAD_POSITION, dtype=np.float32), axis=-1)


# ----------------------------------------------------------------------------- draws
def test_team_sizes_drawn_per_episode(padded: SmaxSMACv2) -> None:
    seen: list[int] = []
    per_env: list[set[int]] = [set() for _ in range(E)]
    for seed in range(3):
        obs = padded.reset(seed)
        allies, enemies = sizes(padded)
        assert np.array_equal(allies, enemies)  # n vs n
        assert obs.agent_mask is not None and obs.agent_mask.sum(-1).tolist() == allies.tolist()
        seen += allies.tolist()
        for i, n in enumerate(allies.tolist()):
            per_env[i].add(n)
        # the live units are the first n of each team
        pad = padding(padded)
        idx = np.arange(2 * N_MAX) % N_MAX
        assert np.array_equal(pad, idx[None] >= allies[:, None])
    # autoreset draws again: episodes of 4 steps, everyone stops
    for _ in range(2 * 4):
        res = padded.step(torch.tensor([[[CHOICE_STOP, 0.0, 0.0, 0.0]] * N_MAX] * E))
        allies, enemies = sizes(padded)
        assert np.array_equal(allies, enemies)
        assert res.obs.agent_mask is not None and res.obs.agent_mask.sum(-1).tolist() == allies.tolist()
        if bool(res.done.any()):
            for i in np.flatnonzero(res.done.numpy()):
                per_env[i].add(int(allies[i]))
    assert set(seen) <= set(range(N_MIN, N_MAX + 1)) and len(set(seen)) >= 2
    assert any(len(s) >= 2 for s in per_env)  # the same env plays different sizes


def test_padding_dead_from_the_start_never_acts_never_targeted(padded: SmaxSMACv2) -> None:
    """Random valid actions (attacks first) for 12 steps: at every step the padding units
    are dead at PAD_POSITION with no health, out of the graph and the observations, may
    only stop, are never an available target, and no unit attacks one; padded allies told
    to move and attack (mask not checked) do nothing."""
    gen = torch.Generator().manual_seed(0)
    obs = padded.reset(7)
    for t in range(12):
        pad = torch.from_numpy(padding(padded))
        s = padded.smax_state()
        assert not np.asarray(s.unit_alive)[pad.numpy()].any()
        assert (np.asarray(s.unit_health)[pad.numpy()] == 0).all()
        g, m = obs.graph, obs.action_mask
        assert g is not None and m is not None and obs.agent_mask is not None
        assert not bool(g.node_mask[pad].any())
        assert float(g.h[pad].abs().sum() + g.x[pad].abs().sum() + g.v[pad].abs().sum()) == 0.0
        assert torch.equal(obs.agent_mask, ~pad[:, :N_MAX])
        pad_allies, pad_enemies = pad[:, :N_MAX], pad[:, N_MAX:]
        assert m[pad_allies].int().tolist() == [[1] + [0] * (m.shape[-1] - 1)] * int(pad_allies.sum())
        assert not bool((m[..., MASK_TARGETS:] & pad_enemies[:, None, :]).any())
        # every node's [h, x, v] in the flat observation: the padding nodes' are zero
        nodes = obs.state.reshape(E, 2 * N_MAX, -1)
        assert float(nodes[pad].abs().sum()) == 0.0
        # no unit attacked a padding unit (SMAX stores each unit's last raw attack action)
        attack = np.asarray(s.prev_attack_actions)
        for e in range(E):
            for u in range(2 * N_MAX):
                a = int(attack[e, u]) - 5  # 5 movement actions, then the targets
                if a < 0 or t == 0 or pad[e, u]:  # a padding unit's attack is void (it is dead)
                    continue
                victim = N_MAX + a if u < N_MAX else N_MAX - 1 - a  # SMAX's enemy order is reversed
                assert not pad[e, victim], (e, u, victim)
        # random valid actions: attack where possible, else move (random vector), else stop
        can_attack, can_move = m[..., CHOICE_ATTACK], m[..., CHOICE_MOVE]
        choice = torch.where(can_attack, CHOICE_ATTACK, torch.where(can_move, CHOICE_MOVE, CHOICE_STOP))
        targets = m[..., MASK_TARGETS:].float()
        weights = (targets + (targets.sum(-1, keepdim=True) == 0).float()).reshape(E * N_MAX, -1)
        target = torch.multinomial(weights, 1, generator=gen).reshape(E, N_MAX)
        vec = torch.randn(E, N_MAX, 2, generator=gen)
        obs = padded.step(torch.cat([choice[..., None].float(), vec, target[..., None].float()], -1)).obs
    # padded allies told to move and to attack: nothing happens to them (SMAX ignores dead units)
    padded.check_actions = False
    try:
        obs = padded.reset(3)
        pad = padding(padded)
        before = np.asarray(padded.smax_state().unit_positions).copy()
        action = torch.zeros(E, N_MAX, 4)
        action[..., 0] = torch.where(torch.from_numpy(pad[:, :N_MAX]), CHOICE_MOVE, CHOICE_STOP)
        action[..., 1] = 1.0
        padded.step(action)
        after = np.asarray(padded.smax_state().unit_positions)
        np.testing.assert_array_equal(after[pad], before[pad])
        action[..., 0] = torch.where(torch.from_numpy(pad[:, :N_MAX]), CHOICE_ATTACK, CHOICE_STOP)
        health = np.asarray(padded.smax_state().unit_health).copy()
        padded.step(action)
        # the live allies stopped: no enemy lost health
        np.testing.assert_array_equal(np.asarray(padded.smax_state().unit_health)[:, N_MAX:], health[:, N_MAX:])
    finally:
        padded.check_actions = True


# ----------------------------------------------------------------------------- same as unpadded
def _battle(env: SmaxSMACv2, pos: list, health: list, batch: int):
    s = env.smax_state()
    n = len(pos)
    hp = jnp.tile(jnp.array(health, dtype=jnp.float32)[None], (batch, 1))
    return s.replace(
        unit_positions=jnp.tile(jnp.array(pos, dtype=jnp.float32)[None], (batch, 1, 1)),
        unit_health=hp,
        unit_alive=hp > 0,
        unit_types=jnp.zeros((batch, n), dtype=jnp.uint8),
        unit_weapon_cooldowns=jnp.zeros((batch, n), dtype=jnp.float32),
        prev_movement_actions=jnp.zeros((batch, n, 2), dtype=jnp.float32),
        prev_attack_actions=jnp.zeros((batch, n), dtype=jnp.int32),
        step=jnp.zeros((batch,), dtype=s.step.dtype),
        done=jnp.zeros((batch,), dtype=bool),
    )


def test_padded_battle_matches_unpadded(padded: SmaxSMACv2, plain3: SmaxSMACv2) -> None:
    """A 3v3 battle played padded to 5v5 gives the live units the observations, masks and
    rewards of the same battle in a 3v3 env, except the weapon cooldown after an attack:
    SMAX draws it with one random key per unit, so other unit counts draw other values
    (its enemy AI's random choices likewise; here every enemy either shoots the closest
    ally or sees none, which is deterministic)."""
    allies = [(16.0, 16.0), (16.0, 13.0), (13.0, 16.0)]
    enemies = [(17.0, 16.0), (2.0, 2.0), (30.0, 30.0)]  # enemy 0 in range of ally 0; 1, 2 see nobody
    pad = [PAD_POSITION] * (N_MAX - 3)
    plain3.reset(0), padded.reset(0)  # the enemy AI's memory too (set_smax_state keeps it)
    o3 = plain3.set_smax_state(_battle(plain3, allies + enemies, [45.0] * 6, 1))
    o5 = padded.set_smax_state(_battle(padded, allies + pad + enemies + pad, ([45.0] * 3 + [0.0] * 2) * 2, E))
    live = [0, 1, 2, N_MAX, N_MAX + 1, N_MAX + 2]
    a3 = [[CHOICE_ATTACK, 0.0, 0.0, 0.0], [CHOICE_MOVE, 1.0, 0.0, 0.0], [CHOICE_MOVE, 0.0, -1.0, 0.0]]
    stop = [CHOICE_STOP, 0.0, 0.0, 0.0]
    for step in range(3):
        assert o3.graph is not None and o5.graph is not None and o5.action_mask is not None
        keep = [c for c in range(o3.graph.h.shape[-1]) if c != 4 or step == 0]  # 4: cooldown fraction
        torch.testing.assert_close(o5.graph.h[0, live][:, keep], o3.graph.h[0][:, keep])
        torch.testing.assert_close(o5.graph.x[0, live], o3.graph.x[0])
        torch.testing.assert_close(o5.graph.v[0, live], o3.graph.v[0])
        assert torch.equal(o5.graph.node_mask[0, live], o3.graph.node_mask[0])
        assert o3.action_mask is not None
        assert torch.equal(o5.action_mask[0, :3, : MASK_TARGETS + 3], o3.action_mask[0])
        assert not bool(o5.action_mask[0, :3, MASK_TARGETS + 3 :].any())
        assert o5.agent_mask is not None and o5.agent_mask[0].tolist() == [True] * 3 + [False] * 2
        assert o3.agent_mask is None  # fixed teams: no mask, the loss unweighted as before
        acts = a3 if step == 0 else [stop, a3[1], a3[2]]
        r3 = plain3.step(torch.tensor([acts]))
        r5 = padded.step(torch.tensor([acts + [stop] * (N_MAX - 3)] * E))
        # SMAX's damage reward divided by 3 live enemies, not by the 5 the env was built for
        torch.testing.assert_close(r5.reward[0, 0], r3.reward[0, 0])
        if step == 0:
            assert float(r3.reward[0, 0]) == pytest.approx(9 / 45 / 3, abs=1e-6)  # one marine shot
        o3, o5 = r3.obs, r5.obs
    state3, state5 = plain3.smax_state(), padded.smax_state()
    np.testing.assert_allclose(np.asarray(state5.unit_health)[0, live], np.asarray(state3.unit_health)[0])


# ----------------------------------------------------------------------------- PPO loss
def test_padding_agents_carry_no_weight_in_the_loss() -> None:
    """The rollout's weights are 0 for padding agents (``Observation.agent_mask``), and the
    loss and its gradients do not depend on what the policy says for them."""
    T, Ev, A = 3, 2, 4
    like = torch.zeros(T, Ev, A)
    present = torch.tensor([[True, True, False, False], [True, True, True, True]])
    assert with_agent_mask(None, [None] * T, like) is None
    w = with_agent_mask(None, [present] * T, like)
    assert w is not None and torch.equal(w, present.float().expand(T, -1, -1))
    crashed = torch.ones(T, Ev, A)
    crashed[1, 1] = 0
    w2 = with_agent_mask(crashed, [present, None, present], like)
    assert w2 is not None and w2[1].tolist() == [[1.0] * 4, [0.0] * 4] and w2[0, 0].tolist() == [1, 1, 0, 0]
    # the loss and its gradients are blind to the padding agents' entries
    gen = torch.Generator().manual_seed(0)
    base = {k: torch.randn(T, Ev, A, generator=gen) for k in ("old_logprob", "adv", "old_value", "returns", "ent")}
    logprob = torch.randn(T, Ev, A, generator=gen, requires_grad=True)
    value = torch.randn(T, Ev, A, generator=gen, requires_grad=True)

    def loss(junk: float) -> tuple[dict, tuple]:
        pad = w == 0
        garbage = {k: torch.where(pad, v + junk, v) for k, v in base.items()}
        lp, val = torch.where(pad, logprob.detach() + junk, logprob), torch.where(pad, value.detach() - junk, value)
        out = ppo_loss(
            lp, garbage["old_logprob"], garbage["adv"], val, garbage["old_value"], garbage["returns"],
            garbage["ent"], 0.2, 0.5, 0.01, clip_vloss=True, weights=w,
        )  # fmt: skip
        grads = torch.autograd.grad(out["loss"], (logprob, value))
        return out, grads

    out_a, grads_a = loss(0.0)
    out_b, grads_b = loss(3.0)
    for k in out_a:
        torch.testing.assert_close(out_a[k], out_b[k])
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb)
        assert float(ga[w == 0].abs().sum()) == 0.0
    stacked = Observation.stack([Observation(obs=like[0], state=like[0, :, 0], agent_mask=present)] * T)
    assert stacked.agent_mask is not None and stacked.agent_mask.shape == (T, Ev, A)


# ----------------------------------------------------------------------------- config
def test_min_units_config_errors(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = compose(["env=smax", "env.n_units=8", "env.n_enemies=8", "env.min_units=4"])
    assert cfg.env.min_units == 4  # type: ignore[attr-defined]
    assert compose(["experiment=smacv2_team_sizes"]).env.min_units == 4  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"env\.min_units.*\[1, env\.n_units=8\]"):
        compose(["env=smax", "env.n_units=8", "env.n_enemies=8", "env.min_units=9"])
    with pytest.raises(ConfigError, match=r"env\.min_units.*\[1, env\.n_units=5\]"):
        compose(["env=smax", "env.min_units=0"])
    with pytest.raises(ConfigError, match=r"env\.n_enemies.*8 \(= env\.n_units\) with env\.min_units=4"):
        compose(["env=smax", "env.n_units=8", "env.n_enemies=9", "env.min_units=4"])
    with pytest.raises(ConfigError, match=r"env\.min_units.*null with env\.backend=sc2"):
        check_team_sizes("sc2", 4, 8, 8)
    monkeypatch.setenv("SC2PATH", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"env\.min_units.*null with env\.backend=sc2"):
        compose(["env=smacv2", "env.n_units=8", "env.n_enemies=8", "env.min_units=4"])


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_with_drawn_team_sizes_then_eval_at_fixed_sizes(tmp_path, clean_env) -> None:  # type: ignore[no-untyped-def]
    """``launch.py env=smax env.min_units=...`` trains E2GN2 on 2..4 per side; ``eqmarl eval``
    runs the checkpoint at a fixed 6v6 (a size it never saw) with ``env.min_units=null``."""
    import json
    import sys

    from tests.conftest import launch_cmd, run_ok

    run = tmp_path / "run"
    run_ok(
        launch_cmd(
            "env=smax",
            "env.n_units=4",
            "env.n_enemies=4",
            "env.min_units=2",
            "env.episode_limit=20",
            "model=e2gn2",
            "model.hidden=16",
            "train.num_envs=8",
            "train.eval_episodes=8",
            "train.total_env_steps=160",
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
    saved = json.loads((run / "config.json").read_text())
    assert saved["env"]["min_units"] == 2
    out = tmp_path / "6v6.json"
    overrides = ["env.n_units=6", "env.n_enemies=6", "env.min_units=null"]
    cli = [sys.executable, "-m", "eqmarl.cli", "eval", str(run), *overrides, "--episodes", "8", "--out", str(out)]
    run_ok(cli, clean_env, 900)
    result = json.loads(out.read_text())
    assert result["episodes"] == 8 and 0.0 <= result["win_rate"] <= 1.0
    assert result["env"]["n_units"] == 6 and result["env"]["min_units"] is None
