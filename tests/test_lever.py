"""The lever game: interface shapes, payoffs, autoreset, and its lever-relabelling symmetry."""

from __future__ import annotations

import pytest
import torch

from eqmarl.core.env import EnvSpec
from eqmarl.envs.lever import DEFAULT_PAYOFFS, LeverGame, lever_symmetry
from eqmarl.models.mlp import MLPEncoder
from eqmarl.models.policy import Policy
from eqmarl.symmetry.groups import GroupError, make_group
from eqmarl.wrappers.eqc import EQC

# small tensors: one torch thread (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def test_interface_shapes() -> None:
    env = LeverGame(num_envs=5)
    spec = env.spec
    assert isinstance(spec, EnvSpec)
    assert (spec.n_agents, spec.action_type, spec.action_dim, spec.episode_limit) == (2, "discrete", 10, 1)
    obs = env.reset(seed=0)
    assert obs.obs.shape == (5, 2, spec.obs_dim) and obs.state.shape == (5, spec.state_dim)
    assert obs.action_mask is not None and obs.action_mask.shape == (5, 2, 10) and bool(obs.action_mask.all())
    # the observation is the same for every agent and env (no information)
    assert torch.equal(obs.obs, obs.obs[:1, :1].expand_as(obs.obs))


def test_payoffs_and_autoreset() -> None:
    env = LeverGame(num_envs=4)
    obs = env.reset()
    actions = torch.tensor([[0, 0], [9, 9], [3, 4], [9, 2]])
    res = env.step(actions)
    expected = torch.tensor([1.0, 0.9, 0.0, 0.0])
    assert torch.allclose(res.reward, expected.unsqueeze(1).expand(4, 2))
    assert torch.allclose(res.episode_return, expected)
    assert bool(res.terminated.all()) and not bool(res.truncated.any()) and bool(res.done.all())
    assert torch.equal(res.episode_length, torch.ones(4, dtype=torch.long))
    assert torch.equal(res.info["coordinated"], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.equal(res.obs.obs, obs.obs) and torch.equal(res.final_obs.obs, obs.obs)
    # three players: payout only if all agree
    env3 = LeverGame(num_envs=2, n_agents=3)
    env3.reset()
    r3 = env3.step(torch.tensor([[1, 1, 1], [1, 1, 2]]))
    assert torch.allclose(r3.episode_return, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="actions"):
        env.step(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        env.step(torch.full((4, 2), 10))


def test_every_pairing_payoff() -> None:
    env = LeverGame(num_envs=100)
    a = torch.cartesian_prod(torch.arange(10), torch.arange(10))
    ret = env.step(a).episode_return.view(10, 10)
    pay = torch.tensor(DEFAULT_PAYOFFS)
    assert torch.allclose(ret, torch.diag(pay))


def test_symmetry_permutes_only_the_top_levers() -> None:
    act = lever_symmetry(DEFAULT_PAYOFFS, "C9")
    assert act.order == 9 and act.n_actions == 10 and act.obs_dim == 1
    assert bool((act.action_perm[:, 9] == 9).all())  # the 0.9 lever is fixed
    assert sorted(act.action_perm[:, 0].tolist()) == list(range(9))  # C9 is transitive on the rest
    pay = torch.tensor(DEFAULT_PAYOFFS)
    for g in range(act.order):  # K_g preserves payoffs: it is a symmetry of the game
        assert torch.equal(pay[act.action_perm[g]], pay)
    s9 = lever_symmetry(DEFAULT_PAYOFFS, "S9")
    assert s9.order == 362_880
    assert torch.equal(pay[s9.action_perm[12345]], pay)
    # the 0.9 lever may be anywhere; with two payoff levels only the top ones move
    moved = lever_symmetry([0.9, 1.0, 1.0, 1.0], "S3")
    assert bool((moved.action_perm[:, 0] == 0).all()) and moved.order == 6
    with pytest.raises(GroupError):
        lever_symmetry(DEFAULT_PAYOFFS, "C5")
    assert LeverGame(1).symmetry("D18").order == 18
    assert make_group("C9").degree == 9


def test_eqc_policy_is_uniform_over_equal_levers() -> None:
    torch.manual_seed(0)
    env = LeverGame(num_envs=3)
    spec = env.spec
    pol = Policy(MLPEncoder(spec.obs_dim, 16, 1), MLPEncoder(spec.obs_dim, 16, 1), spec)
    with torch.no_grad():
        pol.head.logits.weight.normal_(0.0, 3.0)
        pol.head.logits.bias.normal_(0.0, 3.0)
    obs = env.reset()
    raw = pol.distribution(obs).logits.exp().detach()
    assert float(raw[..., :9].std(-1).max()) > 1e-2  # the raw policy prefers some 1.0-lever
    eqc = EQC(pol, env.symmetry("C9"))
    p = eqc.distribution(obs).logits.exp().detach()
    assert torch.allclose(p[..., :9], p[..., :1].expand_as(p[..., :9]), atol=1e-6)
    assert torch.allclose(p[..., 9], raw[..., 9], atol=1e-6)  # the fixed lever keeps its probability
    assert torch.allclose(p.sum(-1), torch.ones(3, 2))
