"""simple_spread_large: VMAS physics with vectorized contacts, reward and observations."""

from __future__ import annotations

import pytest
import torch

from eqmarl.envs.mpe_vmas import VmasMPE


@pytest.fixture(autouse=True)
def _threads(one_thread):  # type: ignore[no-untyped-def]
    yield


def test_dynamics_equal_vmas_simple_spread_with_collisions() -> None:
    """Same state, same actions: positions and velocities equal VMAS's simple_spread (whose
    contact forces come from its per-pair loop), with agents packed so that they collide."""
    n, e = 6, 3
    ref = VmasMPE("simple_spread", num_envs=e, n_agents=n, seed=0)
    big = VmasMPE("simple_spread_large", num_envs=e, n_agents=n, seed=1)
    ref.reset(seed=0)
    st = ref.state_dict()
    for key in list(st):
        if key.endswith("._pos") and int(key.split(".")[0]) >= n:  # entities: landmarks, then agents
            st[key] = st[key] * 0.2  # agents within 0.2 of the centre: many contacts
    ref.load_state_dict(st)
    big.load_state_dict(st)
    gen = torch.Generator().manual_seed(0)
    contacts = 0
    for _ in range(10):
        act = torch.rand(e, n, 2, generator=gen) * 2 - 1
        a, b = ref.step(act), big.step(act)
        torch.testing.assert_close(b.obs.graph.x, a.obs.graph.x, rtol=0, atol=1e-5)
        torch.testing.assert_close(b.obs.graph.v, a.obs.graph.v, rtol=0, atol=1e-5)
        x = a.obs.graph.x[:, :n]
        d = torch.cdist(x, x) + torch.eye(n) * 9
        contacts += int((d < 0.3).sum())
        # reward: -(mean landmark-to-nearest-agent distance) - colliding ordered pairs / N
        land = a.obs.graph.x[:, n:]
        cover = torch.cdist(land, x).min(-1).values.mean(-1)
        torch.testing.assert_close(b.reward[:, 0], -cover - (d < 0.3).sum((1, 2)).float() / n, rtol=1e-5, atol=1e-5)
    assert contacts > 0


def test_observation_is_fixed_size_at_any_agent_count() -> None:
    for n in (3, 50):
        env = VmasMPE("simple_spread_large", num_envs=2, n_agents=n, seed=0)
        obs = env.reset(seed=0)
        assert obs.obs.shape == (2, n, 8) and env.spec.obs_dim == 8
        assert obs.graph is not None and obs.graph.x.shape == (2, 2 * n, 2)
