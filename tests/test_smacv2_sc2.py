"""``env.backend=sc2`` (:mod:`eqmarl.envs.smacv2_sc2`) against a STAND-IN for smacv2.

StarCraft II is not available here: every test runs the real adapter code on
``tests/stand_ins/sc2_standin.py``, a stand-in with smacv2's documented interface
(positions, health, masks, ``battle_won``, the ``get_agent_action`` hook), which can
crash, hang or drop its connection at random steps.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch

from eqmarl.core.smacv2_actions import CHOICE_ATTACK, CHOICE_MOVE, CHOICE_STOP, MASK_TARGETS
from eqmarl.envs.smacv2_sc2 import SC2_COMPASS, SC2Slot, SC2SMACv2, SC2WorkerFailed, smacv2_kwargs

STANDIN = "tests.stand_ins.sc2_standin:StandInSC2"
N, M = 3, 4


def _kwargs(**extra):
    return {**smacv2_kwargs("protoss", N, M, "surrounded_and_reflect", 0.5, True), **extra}


@pytest.fixture(autouse=True)
def _keep_tmpdir(monkeypatch):
    """An in-process SC2Slot sets TMPDIR (meant for its worker process): restore it after."""
    monkeypatch.setenv("TMPDIR", os.environ.get("TMPDIR", tempfile.gettempdir()))
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)


def _slot(tmp_path, movement="continuous", **extra):
    slot = SC2Slot(STANDIN, _kwargs(**extra), N, M, movement, 50, str(tmp_path))
    return slot, slot.reset(seed=3)


def _random_actions(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Masked random mixed actions ``[E, A, 4]`` (what the policy head emits)."""
    e, a, _ = mask.shape
    out = torch.zeros(e, a, 4)
    for i in range(e):
        for j in range(a):
            m = mask[i, j]
            choices = torch.nonzero(m[:3]).flatten()
            c = int(choices[torch.randint(len(choices), (1,), generator=gen)])
            out[i, j, 0] = c
            out[i, j, 1:3] = torch.randn(2, generator=gen)
            if c == CHOICE_ATTACK:
                t = torch.nonzero(m[MASK_TARGETS:]).flatten()
                out[i, j, 3] = int(t[torch.randint(len(t), (1,), generator=gen)])
    return out


def test_features_and_masks_match_the_standin(tmp_path):
    slot, rec = _slot(tmp_path)
    env = slot.env
    units = [env.get_unit_by_id(i) for i in range(N)] + [env.enemies[k] for k in range(M)]
    for i, u in enumerate(units):
        ally = i < N
        assert rec["alive"][i] == 1
        np.testing.assert_allclose(rec["x"][i], [(u.pos.x - 16) / 16, (u.pos.y - 16) / 16], rtol=1e-6)
        frac = (u.health + u.shield) / (u.health_max + u.shield_max)
        np.testing.assert_allclose(rec["h"][i, :4], [frac, 1.0, float(ally), float(not ally)], rtol=1e-6)
        assert rec["h"][i, 5:].sum() == 1.0  # one SMAX type (stalker or zealot)
        assert rec["h"][i, 5 + 2 : 5 + 4].sum() == 1.0
    for i in range(N):
        avail = env.get_avail_agent_actions(i)
        np.testing.assert_array_equal(rec["mask"][i, MASK_TARGETS:], avail[6 : 6 + M])
        assert rec["mask"][i, 2] == any(avail[6:])
    # discrete movement: the compass mask is smacv2's N, E, S, W
    slot_d, rec_d = _slot(tmp_path, movement="discrete")
    for i in range(N):
        avail = slot_d.env.get_avail_agent_actions(i)
        np.testing.assert_array_equal(rec_d["mask"][i, 3:7], [avail[a] for a in SC2_COMPASS])


def test_pool_observation_is_the_slots(tmp_path):
    env = SC2SMACv2(
        num_envs=2, seed=1, race="protoss", n_units=N, n_enemies=M, env_class=STANDIN, sc2_tmpdir=str(tmp_path)
    )
    try:
        obs = env.observe()
        slot = SC2Slot(STANDIN, _kwargs(), N, M, "continuous", 200, str(tmp_path))
        rec = slot.reset(seed=1 * 1000 + 1)
        torch.testing.assert_close(obs.graph.h[1], torch.from_numpy(rec["h"]))
        torch.testing.assert_close(obs.graph.x[1], torch.from_numpy(rec["x"]))
        assert obs.graph.node_mask[1].tolist() == [True] * (N + M)
        torch.testing.assert_close(obs.action_mask[1], torch.from_numpy(rec["mask"]).bool())
        assert obs.graph.edge_rule == "bipartite"
        adj = obs.graph.adjacency()[0]
        assert not adj[N:, N:].any() and adj[:N, N:].all() and adj[N:, :N].all()
        assert obs.obs.shape == (2, N, env.spec.obs_dim) and obs.state.shape == (2, env.spec.state_dim)
    finally:
        env.close()


def test_action_translation(tmp_path):
    slot, rec = _slot(tmp_path, enemy_damage=0.0)
    env = slot.env
    start = [(env.agents[i].pos.x, env.agents[i].pos.y) for i in range(N)]
    act = np.zeros((N, 4), np.float32)
    act[0] = [CHOICE_MOVE, 0.3, 0.4, 0]  # continuous: a move order to pos + 2 * v
    act[1] = [CHOICE_STOP, 0, 0, 0]
    target = int(np.flatnonzero(rec["mask"][2, MASK_TARGETS:])[0]) if rec["mask"][2, 2] else None
    act[2] = [CHOICE_ATTACK, 0, 0, target] if target is not None else [CHOICE_STOP, 0, 0, 0]
    rec = slot.step(act)
    cmds = env.last_commands
    assert cmds[0] == ("move", 0, pytest.approx(start[0][0] + 0.6), pytest.approx(start[0][1] + 0.8))
    assert cmds[1] == ("stop", 1)
    if target is not None:
        assert cmds[2] == ("attack", 2, 100 + target)
    np.testing.assert_allclose(rec["v"][0], [0.3, 0.4])
    # discrete: the available compass move of largest dot product (E = smacv2's 4)
    slot_d, _ = _slot(tmp_path, movement="discrete")
    assert slot_d._translate(np.array([[CHOICE_MOVE, 0.9, 0.2, 0]] * N, np.float32))[0] in (4, 2)


def test_win_flag_and_episode_end(tmp_path):
    env = SC2SMACv2(
        num_envs=1,
        seed=0,
        race="terran",
        n_units=N,
        n_enemies=M,
        env_class=STANDIN,
        env_kwargs=_kwargs(enemy_damage=0.0, map_name="10gen_terran"),
        sc2_tmpdir=str(tmp_path),
        episode_limit=400,
    )
    try:
        obs, gen = env.observe(), torch.Generator().manual_seed(0)
        for _ in range(400):
            # attack whatever is in range, else move toward the enemies' side (east)
            act = _random_actions(obs.action_mask, gen)
            m = obs.action_mask
            act[..., 0] = torch.where(m[..., 2], CHOICE_ATTACK, CHOICE_MOVE)
            act[..., 1:3] = torch.tensor([1.0, 0.0])
            act[..., 3] = torch.where(m[..., 2], m[..., MASK_TARGETS:].float().argmax(-1).float(), 0.0)
            res = env.step(act)
            obs = res.obs
            if bool(res.done[0]):
                break
        assert bool(res.terminated[0]) and res.info["win"][0] == 1.0
        assert not res.final_obs.graph.node_mask[0, N:].any()  # every enemy dead in the last obs
        assert res.obs.graph.node_mask[0].all()  # a fresh episode
    finally:
        env.close()


def test_fuzzed_crashes_hangs_and_drops(tmp_path):
    log = tmp_path / "faults.log"
    kw = _kwargs(crash_prob=0.004, hang_prob=0.0025, drop_prob=0.004, swallow_prob=0.003, fault_log=str(log))
    env = SC2SMACv2(
        num_envs=3,
        seed=7,
        race="protoss",
        n_units=N,
        n_enemies=M,
        env_class=STANDIN,
        env_kwargs=kw,
        sc2_tmpdir=str(tmp_path),
        step_timeout=0.5,
        max_failures=6,
        backoff=0.01,
        episode_limit=60,
    )
    steps, crashed_steps, counted, episodes = 1000, 0, 0.0, 0
    try:
        obs, gen = env.observe(), torch.Generator().manual_seed(1)
        for _ in range(steps):
            res = env.step(_random_actions(obs.action_mask, gen))
            crashed = res.info["crashed"].bool()
            counted += float(res.info["restarts"].sum())
            crashed_steps += int(crashed.sum())
            # a crashed game's transition: truncated, zero reward, neither a win nor a loss
            assert res.truncated[crashed].all() and not res.terminated[crashed].any()
            assert (res.reward[crashed] == 0).all()
            assert res.info["win"][crashed].isnan().all() and res.episode_return[crashed].isnan().all()
            # the other ended episodes have a win flag
            ended = res.done & ~crashed
            assert not res.info["win"][ended].isnan().any()
            episodes += int(ended.sum())
            obs = res.obs
    finally:
        env.close()
    faults = log.read_text().splitlines()
    kinds = {k: sum(line.startswith(k) for line in faults) for k in ("crash", "hang", "drop", "swallow")}
    assert all(kinds.values()), kinds  # every kind of fault happened
    assert len(faults) == crashed_steps == counted == env.restarts  # each fault: one restart, counted
    assert episodes > 0


def test_repeated_failure_of_one_worker_raises(tmp_path):
    kw = _kwargs(fail_seeds=(1001,))  # slot 1 of seed 1 crashes at every step
    env = SC2SMACv2(
        num_envs=2,
        seed=1,
        race="protoss",
        n_units=N,
        n_enemies=M,
        env_class=STANDIN,
        env_kwargs=kw,
        sc2_tmpdir=str(tmp_path),
        step_timeout=0.5,
        max_failures=3,
        backoff=0.01,
    )
    try:
        obs, gen = env.observe(), torch.Generator().manual_seed(2)
        with pytest.raises(SC2WorkerFailed, match=r"worker 1 failed 3 times in a row"):
            for _ in range(10):
                obs = env.step(_random_actions(obs.action_mask, gen)).obs
        assert env.restarts == 2
    finally:
        env.close()


def test_make_smacv2_builds_the_sc2_backend(tmp_path, monkeypatch):
    from eqmarl.envs import smacv2, smacv2_sc2

    monkeypatch.setenv("SC2PATH", str(tmp_path / "none"))
    with pytest.raises(smacv2.StarCraftIINotFound, match=r"env\.backend=smax"):
        smacv2.make_smacv2("sc2", num_envs=1, seed=0)
    (tmp_path / "sc2" / "Versions").mkdir(parents=True)
    monkeypatch.setenv("SC2PATH", str(tmp_path / "sc2"))
    monkeypatch.setattr(smacv2_sc2, "DEFAULT_ENV_CLASS", STANDIN)
    env = smacv2.make_smacv2("sc2", num_envs=1, seed=0, race="zerg", n_units=N, n_enemies=M, movement="discrete")
    try:
        assert isinstance(env, SC2SMACv2) and env.spec.n_targets == M and len(env.spec.move_directions) == 4
        res = env.step(torch.zeros(1, N, 4))
        assert res.obs.action_mask.shape == (1, N, MASK_TARGETS + M)
    finally:
        env.close()
