"""EQC symmetrizer: exact equivariance (float64) for every element of C5, D10, S5, fixed
points, idempotence, gradients, checkpoints, recurrent state, one batched pass.

Toy layout with 5 'colours': observation = 2 invariant entries, 5 colour blocks of 3
entries, 2 invariant entries (19); actions = 3 invariant actions, then two blocks of 5
colour actions (13).  The global state is the two agents' observations concatenated.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from eqmarl.core.env import EnvSpec, Observation
from eqmarl.models.distributions import MaskedCategorical
from eqmarl.models.mlp import MLPEncoder
from eqmarl.models.policy import Policy
from eqmarl.symmetry.actions import GroupAction, section_permutation
from eqmarl.symmetry.groups import GroupError, PermutationGroup, make_group
from eqmarl.wrappers.eqc import EQC

# small tensors: one torch thread (see tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


N_COL, BLOCK, OBS_DIM, N_ACT, N_AGENTS = 5, 3, 19, 13, 2
COL_OFF = 2
INV_IDX = [0, 1, 17, 18]


def toy_obs_perm(p: Tensor) -> Tensor:
    return section_permutation(p, OBS_DIM, COL_OFF, N_COL, BLOCK)


def toy_action_perm(p: Tensor) -> Tensor:
    out = section_permutation(p, N_ACT, 3, N_COL, 1)
    return section_permutation(p, N_ACT, 8, N_COL, 1, out=out)


def toy_state_perm(p: Tensor) -> Tensor:
    one = toy_obs_perm(p)
    return torch.cat([one, one + OBS_DIM])


def toy_action(group: str | PermutationGroup) -> GroupAction:
    grp = make_group(group) if isinstance(group, str) else group
    return GroupAction.from_point_maps(grp, toy_obs_perm, toy_action_perm, toy_state_perm)


SPEC = EnvSpec(
    n_agents=N_AGENTS,
    obs_dim=OBS_DIM,
    state_dim=N_AGENTS * OBS_DIM,
    action_type="discrete",
    action_dim=N_ACT,
    episode_limit=10,
)


def random_policy(seed: int, centralized: bool = False) -> Policy:
    torch.manual_seed(seed)
    actor = MLPEncoder(OBS_DIM, 32, 2, "tanh", "obs", N_AGENTS)
    critic = MLPEncoder(
        SPEC.state_dim if centralized else OBS_DIM, 32, 2, "tanh", "state" if centralized else "obs", N_AGENTS
    )
    pol = Policy(actor, critic, SPEC).double()
    with torch.no_grad():  # logits of order 1 (the default head init is almost uniform)
        pol.head.logits.weight.normal_(0.0, 1.0)
        pol.value_head.v.weight.normal_(0.0, 1.0)
    return pol


def random_obs(seed: int, e: int = 6) -> Observation:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(e, N_AGENTS, OBS_DIM, generator=g, dtype=torch.float64)
    mask = torch.rand(e, N_AGENTS, N_ACT, generator=g) < 0.7
    mask[..., 0] = True  # at least one legal action
    return Observation(obs=obs, state=obs.reshape(e, -1), action_mask=mask)


def probs_of(model: nn.Module, obs: Observation) -> Tensor:
    return model.distribution(obs).logits.exp()


class DeepSetsPolicy(nn.Module):
    """A hand-built S5-equivariant policy on the toy layout (shared weights per colour)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.spec = SPEC
        self.own = nn.Linear(BLOCK, 16)
        self.pool = nn.Linear(BLOCK, 16)
        self.inv = nn.Linear(len(INV_IDX), 16)
        self.colour_logits = nn.Linear(16, 2)  # one logit per colour-action block
        self.inv_logits = nn.Linear(16 + len(INV_IDX), 3)
        self.v = nn.Linear(16 + len(INV_IDX), 1)
        self.double()

    def _feats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        blocks = x[..., COL_OFF : COL_OFF + N_COL * BLOCK].unflatten(-1, (N_COL, BLOCK))  # [*B, 5, 3]
        u = x[..., INV_IDX]
        f = torch.tanh(self.own(blocks) + self.pool(blocks.mean(-2, keepdim=True)) + self.inv(u).unsqueeze(-2))
        return f, torch.cat([f.mean(-2), u], -1)

    def distribution(self, obs: Observation) -> MaskedCategorical:
        f, pooled = self._feats(obs.obs)
        col = self.colour_logits(f)  # [*B, 5, 2]
        logits = torch.cat([self.inv_logits(pooled), col[..., 0], col[..., 1]], -1)
        return MaskedCategorical(logits, obs.action_mask)

    def value(self, obs: Observation) -> Tensor:
        return self.v(self._feats(obs.obs)[1]).squeeze(-1)


def max_equivariance_error(model: nn.Module, action: GroupAction, obs: Observation) -> tuple[float, float]:
    """Largest |p(L_g x) - K_g p(x)| and |v(L_g x) - v(x)| over all g."""
    with torch.no_grad():
        return _max_equivariance_error(model, action, obs)


def _max_equivariance_error(model: nn.Module, action: GroupAction, obs: Observation) -> tuple[float, float]:
    p0, v0 = probs_of(model, obs), model.value(obs)
    worst_p = worst_v = 0.0
    for g in range(action.order):
        moved = action.observation(obs, g)
        worst_p = max(worst_p, float((probs_of(model, moved) - action.mask(p0, g)).abs().max()))
        worst_v = max(worst_v, float((model.value(moved) - v0).abs().max()))
    return worst_p, worst_v


@pytest.mark.parametrize("group", ["C5", "D10", "S5"])
@pytest.mark.parametrize("average", ["probs", "logits"])
def test_exactly_equivariant_float64(group: str, average: str) -> None:
    action = toy_action(group)
    assert action.order == {"C5": 5, "D10": 10, "S5": 120}[group]
    for seed in range(2):
        pol = random_policy(seed, centralized=seed == 1)
        obs = random_obs(seed)
        # the raw policy is far from equivariant (so the check below can fail)
        raw_p, _ = max_equivariance_error(pol, action, obs)
        assert raw_p > 1e-3
        eqc = EQC(pol, action, average=average)
        err_p, err_v = max_equivariance_error(eqc, action, obs)
        assert err_p < 1e-9 and err_v < 1e-9, (err_p, err_v)
        p = probs_of(eqc, obs).detach()
        assert torch.allclose(p.sum(-1), torch.ones((), dtype=torch.float64), atol=1e-12)
        assert float(p[~obs.action_mask].max()) == 0.0  # masked actions stay impossible


def test_matches_definition_with_a_loop_and_gradients_flow() -> None:
    """S(psi)(x) = 1/|G| sum_g K_g^{-1} psi(L_g x), computed by an explicit loop."""
    action = toy_action("D10")
    pol = random_policy(3)
    obs = random_obs(3)
    eqc = EQC(pol, action)
    ref = sum(action.unmask(probs_of(pol, action.observation(obs, g)), g) for g in range(action.order)) / action.order
    ref_v = sum(pol.value(action.observation(obs, g)) for g in range(action.order)) / action.order
    assert torch.allclose(probs_of(eqc, obs), ref, atol=1e-12)
    assert torch.allclose(eqc.value(obs), ref_v, atol=1e-12)
    # gradients (training with EQC): equal to the gradients of the loop reference
    a = eqc.act(obs).action
    logp, ent, v = eqc.evaluate(obs, a)
    (logp.sum() + 0.1 * ent.sum() + v.sum()).backward()
    g_batched = [p.grad.clone() for p in pol.parameters()]
    assert all(bool(torch.isfinite(g).all()) and float(g.abs().sum()) > 0 for g in g_batched)
    pol.zero_grad()
    ref = sum(action.unmask(probs_of(pol, action.observation(obs, g)), g) for g in range(action.order)) / action.order
    ref_dist = MaskedCategorical(ref.clamp_min(1e-300).log(), obs.action_mask)
    ref_v = sum(pol.value(action.observation(obs, g)) for g in range(action.order)) / action.order
    (ref_dist.log_prob(a).sum() + 0.1 * ref_dist.entropy().sum() + ref_v.sum()).backward()
    for gb, p in zip(g_batched, pol.parameters()):
        assert torch.allclose(gb, p.grad, atol=1e-8)


def test_equivariant_policy_is_a_fixed_point() -> None:
    obs = random_obs(5)
    pol = DeepSetsPolicy(0)
    for group in ("C5", "D10", "S5"):
        action = toy_action(group)
        err_p, _ = max_equivariance_error(pol, action, obs)
        assert err_p < 1e-12  # the hand-built policy really is equivariant
        for average in ("probs", "logits"):
            eqc = EQC(pol, action, average=average)
            assert torch.allclose(probs_of(eqc, obs), probs_of(pol, obs), atol=1e-12)
            assert torch.allclose(eqc.value(obs), pol.value(obs), atol=1e-12)


def test_idempotent() -> None:
    obs = random_obs(6)
    action = toy_action("C5")
    once = EQC(random_policy(6), action)
    twice = EQC(once, action)
    assert torch.allclose(probs_of(twice, obs), probs_of(once, obs), atol=1e-12)
    # a different group than the one symmetrized for is not automatically respected
    s5 = toy_action("S5")
    err_p, _ = max_equivariance_error(once, s5, obs)
    assert err_p > 1e-4


def test_one_batched_forward_pass() -> None:
    action = toy_action("S5")
    pol = random_policy(7)
    calls: list[tuple[int, ...]] = []
    orig = pol.distribution

    def counting(o: Observation):  # type: ignore[no-untyped-def]
        calls.append(tuple(o.obs.shape))
        return orig(o)

    pol.distribution = counting  # type: ignore[method-assign]
    EQC(pol, action).distribution(random_obs(7, e=4))
    assert calls == [(120 * 4, N_AGENTS, OBS_DIM)]


def test_test_time_on_saved_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    action = toy_action("C5")
    trained = random_policy(8)
    path = tmp_path / "policy.pt"
    torch.save(trained.state_dict(), path)
    fresh = random_policy(99)
    eqc = EQC(fresh, action)
    eqc.load_state_dict(torch.load(path))  # a plain-policy checkpoint loads into the wrapper
    obs = random_obs(8)
    assert torch.allclose(probs_of(eqc, obs), probs_of(EQC(trained, action), obs), atol=1e-12)
    assert set(eqc.state_dict()) == set(trained.state_dict())
    # and a wrapper's checkpoint loads into a plain policy
    plain = random_policy(100)
    plain.load_state_dict(eqc.state_dict())
    assert torch.allclose(probs_of(plain, obs), probs_of(trained, obs))


class GRUPolicy(nn.Module):
    """A recurrent Policy-like module: ``distribution/value(obs, hidden) -> (out, new_hidden)``."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.spec = SPEC
        self.cell = nn.GRUCell(OBS_DIM, 16)
        self.logits = nn.Linear(16, N_ACT)
        self.v = nn.Linear(16, 1)
        self.double()

    def _step(self, obs: Observation, hidden: Tensor) -> Tensor:
        b = obs.obs.shape[:-1]
        return self.cell(obs.obs.reshape(-1, OBS_DIM), hidden.reshape(-1, 16)).reshape(*b, 16)

    def distribution(self, obs: Observation, hidden: Tensor) -> tuple[MaskedCategorical, Tensor]:
        h = self._step(obs, hidden)
        return MaskedCategorical(self.logits(h), obs.action_mask), h

    def value(self, obs: Observation, hidden: Tensor) -> tuple[Tensor, Tensor]:
        h = self._step(obs, hidden)
        return self.v(h).squeeze(-1), h


def test_recurrent_state_averaged_and_equivariant_over_time() -> None:
    action = toy_action("D10")
    pol = GRUPolicy(0)
    eqc = EQC(pol, action)
    e, steps = 3, 4
    h0 = torch.zeros(e, N_AGENTS, 16, dtype=torch.float64)
    # the new hidden state is the mean over the copies, each started from the same state
    obs = random_obs(20, e)
    _, h1 = eqc.distribution(obs, hidden=h0)
    manual = torch.stack([pol.distribution(action.observation(obs, g), h0)[1] for g in range(action.order)]).mean(0)
    assert torch.allclose(h1, manual, atol=1e-12)
    for g in (1, 4, 7):
        h, hg = h0, h0
        for t in range(steps):
            obs = random_obs(30 + t, e)
            moved = action.observation(obs, g)
            (dist, h_new) = eqc.distribution(obs, hidden=h)
            (dist_g, hg_new) = eqc.distribution(moved, hidden=hg)
            assert torch.allclose(dist_g.logits.exp(), action.mask(dist.logits.exp(), g), atol=1e-10)
            v, _ = eqc.value(obs, hidden=h)
            vg, _ = eqc.value(moved, hidden=hg)
            assert torch.allclose(v, vg, atol=1e-10)
            assert torch.allclose(h_new, hg_new, atol=1e-10)  # the averaged state is invariant
            h, hg = h_new, hg_new
    # without averaging (feeding each copy its own, un-averaged state) it would not be invariant
    obs = random_obs(40, e)
    with torch.no_grad():
        h_plain = pol.distribution(obs, h0)[1]
        h_moved = pol.distribution(action.observation(obs, 1), h0)[1]
    assert float((h_plain - h_moved).abs().max()) > 1e-3


def test_rejects_non_groups_and_bad_actions() -> None:
    bad = torch.tensor([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [1, 2, 0, 3, 4], [2, 0, 1, 3, 4]])
    with pytest.raises(GroupError, match="not closed"):
        toy_action(PermutationGroup(bad))
    # a representation with the wrong direction convention is an anti-homomorphism for S5
    s5 = make_group("S5")
    with pytest.raises(GroupError, match="homomorphism"):
        GroupAction.from_point_maps(s5, lambda p: toy_obs_perm(torch.argsort(p)), toy_action_perm)
    # non-permutation tables and wrong sizes
    with pytest.raises(GroupError, match="permutation"):
        GroupAction(make_group("C5"), torch.zeros(5, OBS_DIM, dtype=torch.long), torch.arange(N_ACT).repeat(5, 1))
    with pytest.raises(GroupError, match="must be"):
        GroupAction(make_group("C5"), torch.arange(OBS_DIM).repeat(4, 1), torch.arange(N_ACT).repeat(5, 1))
    with pytest.raises(ValueError, match="actions"):
        EQC(random_policy(0), GroupAction.from_point_maps(make_group("C5"), toy_obs_perm, lambda p: torch.arange(4)))
    with pytest.raises(ValueError, match="average"):
        EQC(random_policy(0), toy_action("C5"), average="median")


def test_float32_and_single_element_helpers() -> None:
    action = toy_action("S5")
    pol = random_policy(9).float()
    obs = random_obs(9).map(lambda t: t.float() if t.is_floating_point() else t)
    eqc = EQC(pol, action)
    gen = torch.Generator().manual_seed(0)
    g = action.group.sample(obs.obs.shape[0], gen)  # one element per env
    moved = action.observation(obs, g)
    assert torch.allclose(probs_of(eqc, moved), action.mask(probs_of(eqc, obs), g), atol=1e-5)
    # K_g on action indices agrees with K_g on one-hot vectors; unmask inverts mask
    a = torch.randint(N_ACT, obs.obs.shape[:-1], generator=gen)
    onehot = nn.functional.one_hot(a, N_ACT).float()
    assert torch.equal(action.mask(onehot, g).argmax(-1), action.action(a, g))
    assert torch.equal(action.unmask(action.mask(onehot, g), g), onehot)
