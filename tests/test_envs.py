"""Batched MPE envs (VMAS and mpe2 backends), the worker pool and the env registry."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
import torch

from eqmarl.build import make_env
from eqmarl.config import ConfigError, MpeEnvConfig
from eqmarl.core.env import Observation, StepResult
from eqmarl.envs.mpe import MPE_MOVES
from eqmarl.envs.mpe_mpe2 import Mpe2MPE, _mpe2_action
from eqmarl.envs.mpe_vmas import VmasMPE
from eqmarl.envs.vector import ProcessVectorEnv

E = 4
LIMIT = 5
BACKENDS = {"vmas": VmasMPE, "mpe2": Mpe2MPE}
CASES = [(b, s, c) for b in ("vmas", "mpe2") for s in ("simple_spread", "simple_tag") for c in (True, False)]
IDS = [f"{b}-{s}-{'cont' if c else 'disc'}" for b, s, c in CASES]

# Where the agent's own position sits in its flat observation.  Not the same everywhere:
# VMAS simple_spread observes [pos, vel, ...]; VMAS simple_tag and both mpe2 scenarios
# observe [vel, pos, ...].
POS_SLICE = {
    ("vmas", "simple_spread"): slice(0, 2),
    ("vmas", "simple_tag"): slice(2, 4),
    ("mpe2", "simple_spread"): slice(2, 4),
    ("mpe2", "simple_tag"): slice(2, 4),
}
VEL_SLICE = {
    ("vmas", "simple_spread"): slice(2, 4),
    ("vmas", "simple_tag"): slice(0, 2),
    ("mpe2", "simple_spread"): slice(0, 2),
    ("mpe2", "simple_tag"): slice(0, 2),
}


def build(backend: str, scenario: str, continuous: bool, num_envs: int = E, **kw):
    return BACKENDS[backend](
        scenario,
        num_envs,
        n_agents=3,
        continuous_actions=continuous,
        episode_limit=kw.pop("episode_limit", LIMIT),
        seed=0,
        **kw,
    )


@pytest.fixture
def env_case(request):
    backend, scenario, continuous = request.param
    env = build(backend, scenario, continuous)
    yield env, backend, scenario, continuous
    env.close()


def random_actions(env, gen: torch.Generator) -> torch.Tensor:
    e, a = env.num_envs, env.spec.n_agents
    if env.spec.action_type == "continuous":
        return torch.rand(e, a, 2, generator=gen) * 2 - 1
    return torch.randint(0, env.spec.action_dim, (e, a), generator=gen)


def check_observation(o: Observation, env) -> None:
    s, e = env.spec, env.num_envs
    assert o.obs.shape == (e, s.n_agents, s.obs_dim) and o.obs.dtype == torch.float32
    assert o.state.shape == (e, s.state_dim) and o.state.dtype == torch.float32
    assert torch.equal(o.state, o.obs.reshape(e, -1))
    assert o.action_mask is None
    g = o.graph
    assert g is not None
    assert g.h.shape == (e, s.n_nodes, s.node_feat_dim) and g.h.dtype == torch.float32
    assert g.x.shape == (e, s.n_nodes, 2) and g.x.dtype == torch.float32
    assert g.v.shape == (e, s.n_nodes, 2) and g.v.dtype == torch.float32
    assert g.node_mask.shape == (e, s.n_nodes) and g.node_mask.dtype == torch.bool
    assert bool(g.node_mask.all())
    assert torch.equal(g.agent_node, torch.arange(s.n_agents))
    assert torch.isfinite(o.obs).all() and torch.isfinite(g.x).all()


def check_step(r: StepResult, env) -> None:
    e, a = env.num_envs, env.spec.n_agents
    check_observation(r.obs, env)
    check_observation(r.final_obs, env)
    assert r.reward.shape == (e, a) and r.reward.dtype == torch.float32
    assert r.terminated.shape == (e,) and r.terminated.dtype == torch.bool
    assert r.truncated.shape == (e,) and r.truncated.dtype == torch.bool
    assert r.episode_return.shape == (e,) and r.episode_return.dtype == torch.float32
    assert r.episode_length.shape == (e,) and r.episode_length.dtype == torch.long
    for v in r.info.values():
        assert v.shape[0] == e


# ----------------------------------------------------------------------------- spec/shapes
@pytest.mark.parametrize("env_case", CASES, ids=IDS, indirect=True)
def test_spec_and_shapes(env_case):
    env, _backend, scenario, continuous = env_case
    s = env.spec
    n_prey, n_land = (0, 3) if scenario == "simple_spread" else (1, 2)
    assert s.n_agents == 3 and s.episode_limit == LIMIT
    assert s.n_nodes == 3 + n_prey + n_land
    assert s.node_feat_dim == (2 if scenario == "simple_spread" else 3)
    assert s.state_dim == 3 * s.obs_dim
    if continuous:
        assert (s.action_type, s.action_dim, s.move_directions) == ("continuous", 2, [])
    else:
        assert (s.action_type, s.action_dim) == ("discrete", 5)
        assert s.move_directions == MPE_MOVES
    o = env.reset(seed=1)
    check_observation(o, env)
    gen = torch.Generator().manual_seed(0)
    r = env.step(random_actions(env, gen))
    check_step(r, env)
    assert torch.isfinite(r.reward).all()
    assert not r.done.any()
    assert torch.equal(r.final_obs.obs, r.obs.obs)


@pytest.mark.parametrize("env_case", CASES, ids=IDS, indirect=True)
def test_graph_matches_obs(env_case):
    env, backend, scenario, _ = env_case
    n_types = env.spec.node_feat_dim
    n_prey = 0 if scenario == "simple_spread" else 1
    types = [0] * 3 + [1] * n_prey + [n_types - 1] * (env.spec.n_nodes - 3 - n_prey)
    want_h = torch.nn.functional.one_hot(torch.tensor(types), n_types).float()
    pos, vel = POS_SLICE[backend, scenario], VEL_SLICE[backend, scenario]
    gen = torch.Generator().manual_seed(1)
    o = env.reset(seed=2)
    for _ in range(3):
        g = o.graph
        assert torch.equal(g.h, want_h.expand_as(g.h))
        assert torch.allclose(g.x[:, :3], o.obs[..., pos], atol=1e-5)
        assert torch.allclose(g.v[:, :3], o.obs[..., vel], atol=1e-5)
        assert torch.equal(g.v[:, 3 + n_prey :], torch.zeros_like(g.v[:, 3 + n_prey :]))
        o = env.step(random_actions(env, gen)).obs
    # the agents moved: velocities are not all zero any more
    assert g.v[:, :3].abs().sum() > 0


# ----------------------------------------------------------------------------- autoreset
@pytest.mark.parametrize("env_case", CASES, ids=IDS, indirect=True)
def test_autoreset(env_case):
    env, *_ = env_case
    gen = torch.Generator().manual_seed(3)
    env.reset(seed=4)
    ret = torch.zeros(env.num_envs)
    for t in range(1, 2 * LIMIT + 1):
        r = env.step(random_actions(env, gen))
        check_step(r, env)
        ret += r.reward[:, 0]
        assert not r.terminated.any()
        if t % LIMIT:
            assert not r.truncated.any(), t
            assert torch.isnan(r.episode_return).all()
            assert (r.episode_length == 0).all()
            assert torch.equal(r.final_obs.obs, r.obs.obs)
        else:
            assert r.truncated.all(), t
            assert torch.isfinite(r.episode_return).all()
            assert torch.allclose(r.episode_return, ret, atol=1e-4)
            assert (r.episode_length == LIMIT).all()
            # obs is a fresh episode's first observation, final_obs the old episode's last
            for a, b in ((r.obs.obs, r.final_obs.obs), (r.obs.graph.x, r.final_obs.graph.x)):
                assert ((a - b).abs().flatten(1).amax(1) > 1e-3).all()
            # a fresh episode starts at rest
            assert torch.equal(r.obs.graph.v[:, :3], torch.zeros_like(r.obs.graph.v[:, :3]))
            ret.zero_()


def test_vmas_truncation_counts_per_env():
    """After a full reset the step counter restarts: no early truncation."""
    env = build("vmas", "simple_spread", True)
    env.reset(seed=0)
    zero = torch.zeros(E, 3, 2)
    for _ in range(LIMIT - 1):
        env.step(zero)
    env.reset(seed=0)
    for _ in range(LIMIT - 1):
        assert not env.step(zero).done.any()
    assert env.step(zero).truncated.all()


# ----------------------------------------------------------------------------- seeding
def _rollout(env, seed: int, steps: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(11)
    out = [env.reset(seed=seed).obs]
    out += [env.step(random_actions(env, gen)).obs.obs for _ in range(steps)]
    return torch.stack(out)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_seeding(case):
    env1, env2 = build(*case), build(*case)
    try:
        a = _rollout(env1, 5, LIMIT + 2)  # across an autoreset
        b = _rollout(env2, 5, LIMIT + 2)
        c = _rollout(env2, 6, 2)
    finally:
        env1.close()
        env2.close()
    assert torch.equal(a, b)
    assert not torch.allclose(a[:3], c, atol=1e-3)
    # envs of one batch differ from each other
    assert not torch.allclose(a[0, 0], a[0, 1], atol=1e-3)


# ----------------------------------------------------------------------------- returns
@pytest.mark.parametrize("backend", ["vmas", "mpe2"])
def test_still_policy_team_return(backend):
    """Agents that stand still in simple_spread (3 agents) score about -142 per episode:
    25 steps of the shared reward 3 * (-sum of landmark-to-closest-agent distances) plus
    collision penalties.  Checks the return definition (and, for mpe2, that its reward was
    converted to VMAS's)."""
    n = 200 if backend == "vmas" else 64
    env = build(backend, "simple_spread", True, num_envs=n, episode_limit=25)
    try:
        env.reset(seed=0)
        zero = torch.zeros(n, 3, 2)
        for _ in range(25):
            r = env.step(zero)
            assert torch.allclose(r.reward, r.reward[:, :1].expand_as(r.reward))
    finally:
        env.close()
    assert r.truncated.all()
    mean = r.episode_return.mean().item()
    assert -160.0 < mean < -125.0, mean


# ----------------------------------------------------------------------------- mpe2 actions
def test_mpe2_action_mapping():
    """Our actions drive mpe2 agents the way ``MPE_MOVES`` says (order and sign)."""
    from mpe2 import simple_spread_v3

    assert np.allclose(_mpe2_action(np.array([0.5, -0.25]), True), [0, 0, 0.5, 0.25, 0])
    assert np.allclose(_mpe2_action(np.array([-3.0, 2.0]), True), [0, 1, 0, 0, 1])
    for continuous in (False, True):
        env = simple_spread_v3.parallel_env(N=1, max_cycles=5, continuous_actions=continuous)
        world = env.unwrapped.world
        moves = MPE_MOVES if not continuous else [(0, 0.6, -0.3), (1, -0.2, 0.9)]
        for idx, dx, dy in moves:
            env.reset(seed=0)
            a = idx if not continuous else np.array([dx, dy])
            env.step({"agent_0": _mpe2_action(a, continuous)})
            v = world.agents[0].state.p_vel
            want = np.array([dx, dy])
            if not want.any():
                assert np.allclose(v, 0.0)
            else:  # velocity points along the commanded direction
                assert np.allclose(v / np.linalg.norm(v), want / np.linalg.norm(want), atol=1e-6)
        env.close()


@pytest.mark.parametrize("backend", ["mpe2", "vmas"])
def test_discrete_moves_follow_mpe_moves(backend):
    """Discrete action i accelerates every learner along ``MPE_MOVES[i]``."""
    env = build(backend, "simple_tag", False, num_envs=1)
    try:
        for idx, dx, dy in MPE_MOVES:
            env.reset(seed=0)
            v = env.step(torch.full((1, 3), idx)).obs.graph.v[0, :3]
            want = torch.tensor([dx, dy]).expand_as(v)
            assert torch.allclose(torch.sign(v), want, atol=0), (idx, v)
    finally:
        env.close()


# ----------------------------------------------------------------------------- worker pool
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_restart_after_kill():
    env = build("mpe2", "simple_tag", True, workers=2)
    try:
        gen = torch.Generator().manual_seed(0)
        env.reset(seed=0)
        r0 = env.step(random_actions(env, gen))
        pids = env.worker_pids
        assert len(pids) == 2 and env.restarts == 0
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _alive(pids[0]) and time.monotonic() < deadline:
            time.sleep(0.01)
        r = env.step(random_actions(env, gen))
        check_step(r, env)
        assert env.restarts == 1
        new = env.worker_pids
        assert new[0] != pids[0] and new[1] == pids[1]
        # worker 0 held envs 0 and 1: their episodes were cut and restarted
        assert r.info["worker_restart"].tolist() == [True, True, False, False]
        assert r.truncated.tolist() == [True, True, False, False]
        assert torch.equal(r.final_obs.obs[:2], r0.obs.obs[:2])
        assert (r.episode_length[:2] == 1).all() and torch.isfinite(r.episode_return[:2]).all()
        assert torch.equal(r.obs.graph.v[:2, :3], torch.zeros(2, 3, 2))  # fresh episodes
        r2 = env.step(random_actions(env, gen))
        check_step(r2, env)
        assert not r2.info["worker_restart"].any() and env.restarts == 1
    finally:
        env.close()


def test_close_leaves_no_children():
    env = build("mpe2", "simple_spread", False, workers=2)
    env.reset(seed=0)
    env.step(torch.zeros(E, 3, dtype=torch.long))
    pids = env.worker_pids
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    env.close()
    env.close()  # idempotent
    assert not any(_alive(p) for p in pids)  # gone, and reaped (a zombie would be "alive")
    assert not [p for p in mp.active_children() if p.pid in pids]


def test_del_closes_workers():
    env = build("mpe2", "simple_spread", True, workers=1)
    pool = env._pool  # held here: only Mpe2MPE.__del__ -> close() can stop the worker
    pids = env.worker_pids
    assert len(pids) == 1 and _alive(pids[0])
    del env
    gc.collect()
    assert not _alive(pids[0])
    pool.close()  # idempotent after __del__


def test_pool_generic_and_errors():
    """The pool runs any picklable factory; an env error is raised, not a restart."""
    pool = ProcessVectorEnv([_CountEnv] * 3, workers=2)
    try:
        assert pool.num_workers == 2
        out = pool.reset([10, 20, 30])
        assert out["count"].tolist() == [10, 20, 30]
        out, restarted = pool.step(np.array([1, 2, 3]))
        assert out["count"].tolist() == [11, 22, 33] and not restarted.any()
        with pytest.raises(RuntimeError, match="boom"):
            pool.step(np.array([1, -1, 1]))
        assert pool.restarts == 0
        out, _ = pool.step(np.array([0, 0, 0]))  # still in sync after the error
        assert out["count"].shape == (3,)
    finally:
        pool.close()
    with pytest.raises(RuntimeError):
        pool.step(np.array([0, 0, 0]))


class _CountEnv:
    """A toy unbatched env for the pool: its state is a counter."""

    def __init__(self) -> None:
        self.count = 0

    def reset(self, seed):
        self.count = 0 if seed is None else seed
        return {"count": np.int64(self.count)}

    def step(self, action):
        if action < 0:
            raise ValueError("boom")
        self.count += int(action)
        return {"count": np.int64(self.count)}


# ----------------------------------------------------------------------------- registry
def test_registry_builds_backends():
    cfg = MpeEnvConfig(scenario="simple_tag", backend="vmas", n_agents=2, n_prey=2)
    env = make_env(cfg, num_envs=2, seed=0)
    assert isinstance(env, VmasMPE) and env.spec.n_agents == 2 and env.spec.n_nodes == 6
    cfg = MpeEnvConfig(scenario="simple_spread", backend="mpe2", workers=1, episode_limit=7)
    env = make_env(cfg, num_envs=2, seed=0)
    try:
        assert isinstance(env, Mpe2MPE) and env.spec.episode_limit == 7
        assert len(env.worker_pids) == 1
    finally:
        env.close()


@pytest.mark.parametrize(
    "field,value",
    [("scenario", "simple_push"), ("backend", "pettingzoo"), ("prey_policy", "chase")],
)
def test_registry_rejects_unknown(field, value):
    cfg = MpeEnvConfig(**{field: value})
    with pytest.raises(ConfigError, match=f"env.{field}"):
        make_env(cfg, num_envs=1, seed=0)


def test_registry_rejects_unknown_env_name():
    cfg = MpeEnvConfig()
    cfg.name = "starcraft"
    with pytest.raises(ConfigError, match=r"env\.name"):
        make_env(cfg, num_envs=1, seed=0)
