"""Graph encoders (gnn, egnn, e2gn2), their heads, and their symmetries.

Symmetry claims are checked through the shared helper in
:mod:`eqmarl.symmetry.testing`, which must also *fail* for the non-equivariant
baselines (gnn, mlp).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from eqmarl.config import ModelConfig
from eqmarl.core.env import EnvSpec, Observation
from eqmarl.core.graph import EntityGraph
from eqmarl.envs.mpe import MPE_MOVES
from eqmarl.envs.mpe_vmas import VmasMPE
from eqmarl.models import Policy, make_policy
from eqmarl.models.e2gn2 import E2GN2Layer
from eqmarl.models.egnn import EGNNLayer
from eqmarl.models.heads import MoveDirectionMap, TargetLogitsHead
from eqmarl.models.message_passing import graph_batch
from eqmarl.models.registry import ENCODERS
from eqmarl.symmetry.testing import (
    EquivarianceError,
    assert_equivariant,
    assert_permutation_equivariant,
    random_o2,
    rotate_observation,
)

GRAPH_MODELS = ("gnn", "egnn", "e2gn2")
EQUIVARIANT_MODELS = ("egnn", "e2gn2")
DTYPES = (torch.float64, torch.float32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: intra-op threads only add overhead (and contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------- helpers
def make_spec(n_agents: int = 3, n_landmarks: int = 3, action_type: str = "continuous") -> EnvSpec:
    return EnvSpec(
        n_agents=n_agents,
        obs_dim=4,
        state_dim=4 * n_agents,
        action_type=action_type,
        action_dim=2 if action_type == "continuous" else 5,
        episode_limit=25,
        n_nodes=n_agents + n_landmarks,
        node_feat_dim=2,
        move_directions=[] if action_type == "continuous" else list(MPE_MOVES),
    )


def random_obs(
    n_envs: int,
    n_agents: int = 3,
    n_landmarks: int = 3,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    n_pad: int = 0,
    drop_landmarks: bool = False,
) -> Observation:
    """Random MPE-like graphs: agents first, then landmarks, then ``n_pad`` padding nodes.

    With ``drop_landmarks`` graph ``e`` masks out its last ``e % (n_landmarks + 1)``
    landmarks too, so the batch mixes different real node counts.  Padding rows hold NaN.
    """
    g = torch.Generator().manual_seed(seed)
    n = n_agents + n_landmarks + n_pad
    types = torch.tensor([0] * n_agents + [1] * (n_landmarks + n_pad))
    h = torch.nn.functional.one_hot(types, 2).to(dtype).expand(n_envs, n, 2).clone()
    x = (torch.rand(n_envs, n, 2, generator=g, dtype=dtype) * 2 - 1) * 1.5
    v = torch.rand(n_envs, n, 2, generator=g, dtype=dtype) - 0.5
    mask = torch.ones(n_envs, n, dtype=torch.bool)
    if n_pad:
        mask[:, n - n_pad :] = False
    if drop_landmarks:
        for e in range(n_envs):
            k = e % (n_landmarks + 1)
            if k:
                mask[e, n_agents + n_landmarks - k : n_agents + n_landmarks] = False
    for t in (h, x, v):
        t[~mask] = float("nan")
    graph = EntityGraph(h=h, x=x, v=v, node_mask=mask, agent_node=torch.arange(n_agents))
    return Observation(
        obs=torch.zeros(n_envs, n_agents, 4, dtype=dtype),
        state=torch.zeros(n_envs, 4 * n_agents, dtype=dtype),
        graph=graph,
    )


def to_dtype(obs: Observation, dtype: torch.dtype) -> Observation:
    return obs.map(lambda t: t.to(dtype) if t.is_floating_point() else t)


def build_policy(
    name: str,
    spec: EnvSpec,
    dtype: torch.dtype = torch.float64,
    backend: str = "dense",
    centralized: bool = False,
    seed: int = 0,
    hidden: int = 16,
    layers: int = 2,
) -> Policy:
    torch.manual_seed(seed)
    cfg = ModelConfig(name=name, hidden=hidden, layers=layers, graph_backend=backend)
    return make_policy(cfg, spec, centralized).to(dtype)


def policy_outputs(policy: Policy):
    """``obs -> {mean or logits [E, A, .], value [E, A], h [E, A, H]}``."""

    def fn(obs: Observation) -> dict[str, Tensor]:
        dist = policy.distribution(obs)
        out = {"value": policy.value(obs), "h": policy.actor_encoder(obs).h}
        if policy.spec.action_type == "continuous":
            out["mean"] = dist.mean
        else:
            out["logits"] = dist.logits
        return out

    return fn


@pytest.fixture(scope="module")
def vmas_obs() -> Observation:
    """Real VMAS simple_spread observations a few steps in (non-zero velocities), float64."""
    env = VmasMPE("simple_spread", num_envs=8, seed=0)
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    obs = None
    for _ in range(3):
        obs = env.step(torch.rand(8, 3, 2, generator=gen) * 2 - 1).obs
    assert obs is not None and float(obs.graph.v.abs().max()) > 0
    return to_dtype(obs, torch.float64)


# --------------------------------------------------------------------------- symmetry
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", EQUIVARIANT_MODELS)
@pytest.mark.parametrize("centralized", [False, True], ids=["ippo", "mappo"])
def test_equivariant_actor_and_invariant_critic_random_graphs(name: str, dtype: torch.dtype, centralized: bool) -> None:
    policy = build_policy(name, make_spec(), dtype, centralized=centralized)
    obs = random_obs(16, dtype=dtype, n_pad=2, drop_landmarks=True)
    gen = torch.Generator().manual_seed(1)
    for reflection in (False, True):
        errs = assert_equivariant(
            policy_outputs(policy),
            obs,
            {"mean": "equivariant", "value": "invariant", "h": "invariant"},
            g=random_o2(reflection, gen, dtype),
        )
        assert set(errs) == {"mean", "value", "h"}
    # the check is not vacuous: the mean is not zero and moves with the input
    out = policy_outputs(policy)(obs)
    assert float(out["mean"].detach().abs().max()) > 1e-6
    g = random_o2(True, gen, dtype)
    moved = policy_outputs(policy)(rotate_observation(obs, g))["mean"]
    assert float((moved - out["mean"]).detach().abs().max()) > 1e-6


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", EQUIVARIANT_MODELS)
def test_equivariant_on_vmas_observations(vmas_obs: Observation, name: str, dtype: torch.dtype) -> None:
    obs = to_dtype(vmas_obs, dtype)
    spec = VmasMPE("simple_spread", num_envs=1).spec
    policy = build_policy(name, spec, dtype)
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        assert_equivariant(policy_outputs(policy), obs, {"mean": "equivariant", "value": "invariant"}, generator=gen)


@pytest.mark.parametrize("name", EQUIVARIANT_MODELS)
def test_discrete_logits_are_invariant(vmas_obs: Observation, name: str) -> None:
    policy = build_policy(name, make_spec(action_type="discrete"))
    assert_equivariant(policy_outputs(policy), vmas_obs, {"logits": "invariant", "value": "invariant"})


def test_gnn_and_mlp_fail_the_rotation_check(vmas_obs: Observation) -> None:
    spec = VmasMPE("simple_spread", num_envs=1).spec
    gen = torch.Generator().manual_seed(3)
    for name in ("gnn", "mlp"):
        policy = build_policy(name, spec)
        # the MLP reads the flat VMAS observation, a concatenation of 2-D vectors, so
        # rotate it too: the check then compares like with like.
        with pytest.raises(EquivarianceError, match="mean"):
            assert_equivariant(
                policy_outputs(policy),
                vmas_obs,
                {"mean": "equivariant"},
                transform=lambda o, g: rotate_observation(o, g, flat_vectors=True),
                generator=gen,
            )
        with pytest.raises(EquivarianceError, match="value"):
            assert_equivariant(
                policy_outputs(policy),
                vmas_obs,
                {"value": "invariant"},
                transform=lambda o, g: rotate_observation(o, g, flat_vectors=True),
                generator=gen,
            )


def test_random_o2_is_orthogonal_with_both_determinants() -> None:
    gen = torch.Generator().manual_seed(4)
    dets = set()
    for _ in range(32):
        g = random_o2(generator=gen)
        assert torch.allclose(g @ g.T, torch.eye(2, dtype=torch.float64), atol=1e-12)
        dets.add(round(float(torch.linalg.det(g))))
    assert dets == {-1, 1}
    assert float(torch.linalg.det(random_o2(True, gen))) == pytest.approx(-1.0)
    assert float(torch.linalg.det(random_o2(False, gen))) == pytest.approx(1.0)


@pytest.mark.parametrize("backend", ["dense", "pyg"])
@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_permutation_equivariance(name: str, backend: str) -> None:
    policy = build_policy(name, make_spec(), backend=backend)
    obs = random_obs(8, n_pad=1, drop_landmarks=True)

    def fn(o: Observation) -> dict[str, Tensor]:
        feats = policy.actor_encoder(o)
        return {"mean": policy.distribution(o).mean, "value": policy.value(o), "h_nodes": feats.h_nodes}

    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        assert_permutation_equivariant(fn, obs, {"mean": "agent", "value": "agent", "h_nodes": "node"}, generator=gen)
    # and the helper fails when an output is declared with the wrong kind
    with pytest.raises(EquivarianceError):
        assert_permutation_equivariant(fn, obs, {"value": "invariant"}, generator=gen)


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_same_weights_run_with_more_agents_and_landmarks(name: str) -> None:
    small = build_policy(name, make_spec(3, 3))
    big = build_policy(name, make_spec(5, 6), seed=1)
    big.load_state_dict(small.state_dict())  # parameter shapes do not depend on counts
    obs5 = random_obs(6, n_agents=5, n_landmarks=6, seed=6)
    out_small = policy_outputs(small)(obs5)  # the 3-agent policy on a 5-agent graph
    out_big = policy_outputs(big)(obs5)
    assert out_small["mean"].shape == (6, 5, 2) and out_small["value"].shape == (6, 5)
    for k in out_small:
        torch.testing.assert_close(out_small[k], out_big[k], rtol=0, atol=1e-12)
    assert all(bool(t.isfinite().all()) for t in out_small.values())
    if name != "gnn":
        assert_equivariant(policy_outputs(small), obs5, {"mean": "equivariant", "value": "invariant"})
    env5 = VmasMPE("simple_spread", num_envs=4, n_agents=5, seed=0)
    act = small.act(to_dtype(env5.reset(seed=0), torch.float64))
    assert act.action.shape == (4, 5, 2)


# ------------------------------------------------------------------- implementations
@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_dense_and_pyg_backends_agree(name: str) -> None:
    spec = make_spec()
    dense = build_policy(name, spec, backend="dense")
    pyg = build_policy(name, spec, backend="pyg", seed=7)
    pyg.load_state_dict(dense.state_dict())
    obs = random_obs(8, n_pad=2, drop_landmarks=True)
    out_d, out_p = policy_outputs(dense)(obs), policy_outputs(pyg)(obs)
    hn_d, hn_p = all_nodes(dense.critic_encoder)(obs).h_nodes, all_nodes(pyg.critic_encoder)(obs).h_nodes
    for k in out_d:
        torch.testing.assert_close(out_p[k], out_d[k], rtol=0, atol=1e-9)
    torch.testing.assert_close(hn_p, hn_d, rtol=0, atol=1e-9)
    # gradients agree too
    loss_d = sum(t.pow(2).sum() for t in out_d.values())
    loss_p = sum(t.pow(2).sum() for t in out_p.values())
    loss_d.backward()
    loss_p.backward()
    for (k, pd), (_, pp) in zip(dense.named_parameters(), pyg.named_parameters()):
        if pd.grad is None:
            assert pp.grad is None, k
        else:
            torch.testing.assert_close(pp.grad, pd.grad, rtol=0, atol=1e-9, msg=k)


@pytest.mark.parametrize("backend", ["dense", "pyg"])
@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_padding_does_not_change_real_nodes(name: str, backend: str) -> None:
    policy = build_policy(name, make_spec(), backend=backend)
    base = random_obs(4, n_agents=3, n_landmarks=2, seed=8)
    padded = random_obs(4, n_agents=3, n_landmarks=2, seed=99, n_pad=4)  # NaN in padding rows
    n = base.graph.num_nodes
    for f in ("h", "x", "v"):
        getattr(padded.graph, f)[:, :n] = getattr(base.graph, f)
    out, out_pad = policy_outputs(policy)(base), policy_outputs(policy)(padded)
    for k in out:
        torch.testing.assert_close(out_pad[k], out[k], rtol=0, atol=1e-12)
    enc = all_nodes(policy.critic_encoder)
    hn, hn_pad = enc(base).h_nodes, enc(padded).h_nodes
    torch.testing.assert_close(hn_pad[:, :n], hn, rtol=0, atol=1e-12)
    assert bool((hn_pad[:, n:] == 0).all())


def all_nodes(encoder):
    """The critic encoder with the last layer computed at every node (``readout='h'``),
    so that ``h_nodes`` is returned; the parameters are the same."""
    import copy

    enc = copy.deepcopy(encoder)
    enc.readout = "h"
    return enc


@pytest.mark.parametrize("backend", ["dense", "pyg"])
@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_critic_agents_only_readout_equals_full_readout(name: str, backend: str) -> None:
    """A critic's last layer sends messages to the agent nodes only; its values equal
    those of the same weights computed at every node."""
    policy = build_policy(name, make_spec(), backend=backend)
    assert policy.critic_encoder.readout == "h_agents"
    obs = random_obs(6, n_pad=1, drop_landmarks=True, seed=12)
    part, full = policy.critic_encoder(obs), all_nodes(policy.critic_encoder)(obs)
    assert part.h_nodes is None and full.h_nodes is not None
    torch.testing.assert_close(part.h, full.h, rtol=0, atol=1e-12)


def _reference_layer(layer: EGNNLayer, h: Tensor, u: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The docstring equations, one edge at a time (one graph: ``h [N, H], u [N, K, 2]``)."""
    real = mask.nonzero().flatten().tolist()
    c = 1.0 / (len(real) - 1)
    k = layer.n_channels
    act = layer.edge_act
    h_new, u_new = h.clone(), u.clone()
    for i in real:
        m_i = torch.zeros_like(h[i])
        agg = torch.zeros_like(u[i])
        for j in real:
            if j == i:
                continue
            d = u[i] - u[j]
            inv = torch.stack([d[p] @ d[q] for p in range(k) for q in range(p, k)])
            m_ij = layer.edge_out(act(layer.edge_in(torch.cat([h[i], h[j], inv]))))
            m_i = m_i + m_ij
            agg = agg + layer.coord_mlp(m_ij).view(k, k) @ d
        own = u[i] * layer.gate_mlp(m_i).unsqueeze(-1) if isinstance(layer, E2GN2Layer) else u[i]
        u_new[i] = own + c * agg
        h_new[i] = h[i] + layer.node_mlp(torch.cat([h[i], m_i]))
    return h_new, u_new


@pytest.mark.parametrize("backend", ["dense", "pyg"])
@pytest.mark.parametrize("layer_cls", [EGNNLayer, E2GN2Layer], ids=["egnn", "e2gn2"])
def test_layer_matches_its_equations(layer_cls: type, backend: str) -> None:
    torch.manual_seed(14)
    layer = layer_cls(8, "silu", 2).double()
    if isinstance(layer, E2GN2Layer):
        layer.reset_gate(1.0)  # a visible gate
    torch.nn.init.normal_(layer.coord_mlp[-1].weight)  # a visible coordinate update
    obs = random_obs(3, n_landmarks=3, n_pad=1, drop_landmarks=True, seed=15)
    g = graph_batch(obs.graph, use_velocity=True, dtype=torch.float64)
    h = torch.randn(3, g.num_nodes, 8, dtype=torch.float64)
    h_out, u_out = layer(h, g.u, g, backend)
    for e in range(3):
        h_ref, u_ref = _reference_layer(layer, h[e], g.u[e], g.node_mask[e])
        real = g.node_mask[e]
        torch.testing.assert_close(h_out[e][real], h_ref[real], rtol=0, atol=1e-10)
        torch.testing.assert_close(u_out[e][real], u_ref[real], rtol=0, atol=1e-10)
        assert float((u_out[e][real] - g.u[e][real]).detach().abs().max()) > 1e-3  # a visible update


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_batch_of_different_node_counts_matches_one_by_one(name: str) -> None:
    policy = build_policy(name, make_spec())
    obs = random_obs(4, n_pad=1, drop_landmarks=True, seed=9)
    batched = policy_outputs(policy)(obs)
    for e in range(4):
        single = policy_outputs(policy)(obs.map(lambda t, e=e: t[e : e + 1]))
        for k in batched:
            torch.testing.assert_close(batched[k][e : e + 1], single[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_per_agent_graphs(name: str) -> None:
    """Graphs of batch shape [E, A] (one ego graph per agent): with identical copies of
    the shared graph every agent reads what it reads from the shared graph."""
    policy = build_policy(name, make_spec())
    obs = random_obs(5, seed=10)
    ego_graph = obs.graph.map(lambda t: t.unsqueeze(1).expand(-1, 3, *t.shape[1:]))
    ego = Observation(obs=obs.obs, state=obs.state, graph=ego_graph)
    shared, per_agent = policy_outputs(policy)(obs), policy_outputs(policy)(ego)
    for k in shared:
        torch.testing.assert_close(per_agent[k], shared[k], rtol=0, atol=1e-12)
    feats = policy.critic_encoder(ego)
    assert feats.h_nodes is not None and feats.h_nodes.shape == (5, 3, 6, 16)
    if name != "gnn":
        assert_equivariant(policy_outputs(policy), ego, {"mean": "equivariant", "value": "invariant"})
    bad = EntityGraph(
        h=obs.graph.h.unsqueeze(1).expand(-1, 2, -1, -1),
        x=obs.graph.x.unsqueeze(1).expand(-1, 2, -1, -1),
        v=obs.graph.v.unsqueeze(1).expand(-1, 2, -1, -1),
        node_mask=obs.graph.node_mask.unsqueeze(1).expand(-1, 2, -1),
        agent_node=obs.graph.agent_node,
    )
    with pytest.raises(ValueError, match="one agent node per agent"):
        policy.actor_encoder(Observation(obs=obs.obs, state=obs.state, graph=bad))


def test_graph_model_needs_a_graph() -> None:
    spec = make_spec()
    spec.node_feat_dim = 0
    with pytest.raises(ValueError, match="entity graph"):
        make_policy(ModelConfig(name="egnn"), spec, False)
    with pytest.raises(ValueError, match="graph_backend"):
        make_policy(ModelConfig(name="gnn", graph_backend="sparse"), make_spec(), False)


# ------------------------------------------------------------------ exploration bias
def test_exploration_bias_egnn_vs_e2gn2() -> None:
    """At initialization EGNN's action mean is the agent's own position; E2GN2's is ~0.

    Measured first with a script (default ModelConfig: hidden 64, 2 layers, tanh, both
    velocity and position channels), 8 initializations x 1,024 states of this test's
    distribution (3 agents + 3 landmarks, positions U[-1.5, 1.5]^2, velocities
    U[-0.5, 0.5]^2) = 24,576 agent means; |position| median 1.20:
      EGNN : cosine(mean, own position) mean 1.00000 (1%: 1.0000);
             |mean| / |position| mean 0.9997 (1%-99%: 0.997-1.002).
      E2GN2: |mean| mean 0.012 (median 0.005, 99%: 0.058, max 0.082);
             |mean| / |position| mean 0.011 (99%: 0.049).
    On real VMAS simple_spread states (8 inits x 3,072 states x 3 agents = 73,728):
    EGNN cosine 1.00000, ratio 0.9999; E2GN2 |mean| 0.011, ratio 0.0145.
    The test uses 4 x 256 states; margins: ~1% around EGNN's values, >= 4x above E2GN2's.
    """
    spec = make_spec()
    cos, ratio, norm = {}, {}, {}
    for name in EQUIVARIANT_MODELS:
        c, r, nrm = [], [], []
        for seed in range(4):
            torch.manual_seed(seed)
            enc = ENCODERS[name].build(ModelConfig(name=name), spec, "actor", False)
            obs = random_obs(256, seed=100 + seed, dtype=torch.float32)
            with torch.no_grad():
                u = enc(obs).u
            x = obs.graph.x[:, :3]
            c.append(torch.nn.functional.cosine_similarity(u, x, dim=-1).flatten())
            r.append((u.norm(dim=-1) / x.norm(dim=-1)).flatten())
            nrm.append(u.norm(dim=-1).flatten())
        cos[name], ratio[name], norm[name] = torch.cat(c), torch.cat(r), torch.cat(nrm)
    assert float(cos["egnn"].mean()) > 0.99
    assert 0.98 < float(ratio["egnn"].mean()) < 1.02
    assert float(torch.quantile(ratio["egnn"], 0.01)) > 0.95
    assert float(ratio["e2gn2"].mean()) < 0.1
    assert float(norm["e2gn2"].mean()) < 0.05
    assert float(torch.quantile(norm["e2gn2"], 0.99)) < 0.25
    # the contrast itself: E2GN2's mean is over 10x smaller than EGNN's in typical states
    assert float(norm["egnn"].median()) > 10 * float(norm["e2gn2"].median())


# ----------------------------------------------------------------------------- heads
def test_target_logits_head() -> None:
    torch.manual_seed(11)
    spec = make_spec()
    enc = all_nodes(ENCODERS["egnn"].build(ModelConfig(name="egnn", hidden=16), spec, "critic", False)).double()
    head = TargetLogitsHead(16).double()
    targets = torch.tensor([3, 5, 4])
    obs = random_obs(4, seed=12)

    def fn(o: Observation) -> dict[str, Tensor]:
        return {"logits": head(enc(o), targets)}

    logits = fn(obs)["logits"]
    assert logits.shape == (4, 3, 3)
    assert_equivariant(fn, obs, {"logits": "invariant"})
    # permuting the targets permutes the logits; per-agent graphs give per-agent logits
    torch.testing.assert_close(head(enc(obs), targets[[2, 0, 1]]), logits[..., [2, 0, 1]])
    ego = Observation(obs.obs, obs.state, obs.graph.map(lambda t: t.unsqueeze(1).expand(-1, 3, *t.shape[1:])))
    torch.testing.assert_close(head(enc(ego), targets), logits)


def _move_symmetries() -> list[Tensor]:
    """The 8 symmetries of the four compass moves (dihedral group D4) as 2x2 matrices."""
    rots = [
        torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]).round()
        for a in (0, math.pi / 2, math.pi, 3 * math.pi / 2)
    ]
    flip = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    return rots + [r @ flip for r in rots]


def test_move_direction_map_is_equivariant() -> None:
    moves = MoveDirectionMap(MPE_MOVES, threshold=0.1)
    dirs = {(round(dx), round(dy)): idx for idx, dx, dy in MPE_MOVES}
    vec = torch.randn(2000, 2, generator=torch.Generator().manual_seed(13))
    vec = vec[vec.norm(dim=-1) > 0.1]
    base = moves(vec)
    assert set(base.tolist()) == {1, 2, 3, 4}
    for g in _move_symmetries():
        # the move permutation induced by g: move k with direction d goes to g d
        perm = torch.arange(5)
        for idx, dx, dy in MPE_MOVES:
            gd = g @ torch.tensor([dx, dy])
            perm[idx] = dirs[(round(float(gd[0])), round(float(gd[1])))]
        assert torch.equal(moves(vec @ g.T), perm[base])
    # a 45-degree rotation is not a symmetry of the move set: the helper-style check fails
    r45 = torch.tensor([[1.0, -1.0], [1.0, 1.0]]) / math.sqrt(2)
    assert not torch.equal(moves(vec @ r45.T), base)
    # short vectors are the no-op; and the choice is the best-aligned direction
    assert moves(torch.tensor([[0.05, -0.03], [0.9, 0.2], [-0.1, -2.0]])).tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="move_directions"):
        MoveDirectionMap([])


# ------------------------------------------------------------------------- policies
@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "discrete"])
@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_make_policy_runs_on_vmas(name: str, continuous: bool) -> None:
    env = VmasMPE("simple_spread", num_envs=6, continuous_actions=continuous, seed=0)
    obs = env.reset(seed=0)
    torch.manual_seed(0)
    policy = make_policy(ModelConfig(name=name, hidden=16, layers=2), env.spec, centralized_critic=False)
    out = policy.act(obs)
    if continuous:
        assert out.action.shape == (6, 3, 2) and out.action.dtype == torch.float32
    else:
        assert out.action.shape == (6, 3) and out.action.dtype == torch.long
    assert out.logprob.shape == (6, 3) and out.value.shape == (6, 3)
    res = env.step(out.action)
    logprob, entropy, value = policy.evaluate(obs, out.action)
    torch.testing.assert_close(logprob, out.logprob)
    assert entropy.shape == value.shape == (6, 3)
    (logprob.sum() + value.sum()).backward()
    # every parameter is used (DDP without find_unused_parameters)
    unused = [k for k, p in policy.named_parameters() if p.grad is None]
    assert not unused, unused
    assert bool(res.reward.isfinite().all())
    # MAPPO builds the same kind of (global-graph) critic
    mappo = make_policy(ModelConfig(name=name, hidden=16, layers=2), env.spec, centralized_critic=True)
    assert type(mappo.critic_encoder) is type(policy.critic_encoder)
    assert mappo.act(obs).value.shape == (6, 3)


# ------------------------------------------------------------- dense-path fast paths
@pytest.mark.parametrize("backend", ["dense", "pyg"])
@pytest.mark.parametrize("layer_cls", [EGNNLayer, E2GN2Layer], ids=["egnn", "e2gn2"])
@pytest.mark.parametrize("padded", [False, True], ids=["complete", "padded"])
def test_layer_receivers_subset_equals_the_full_layer_rows(layer_cls: type, backend: str, padded: bool) -> None:
    """``receivers=`` (messages only towards some nodes, e.g. the agents in an actor's last
    layer) gives exactly the full layer's rows for those nodes, gradients included."""
    torch.manual_seed(16)
    layer = layer_cls(8, "relu", 2).double()
    if isinstance(layer, E2GN2Layer):
        layer.reset_gate(1.0)
    torch.nn.init.normal_(layer.coord_mlp[-1].weight)
    obs = random_obs(5, n_landmarks=3, n_pad=1 if padded else 0, drop_landmarks=padded, seed=17)
    g = graph_batch(obs.graph, use_velocity=True, dtype=torch.float64)
    assert g.complete is not padded
    h = torch.randn(5, g.num_nodes, 8, dtype=torch.float64, requires_grad=True)
    receivers = torch.tensor([2, 0])
    h_full, u_full = layer(h, g.u, g, backend)
    h_sub, u_sub = layer(h, g.u, g, backend, receivers=receivers)
    torch.testing.assert_close(h_sub, h_full[:, receivers], rtol=0, atol=1e-12)
    torch.testing.assert_close(u_sub, u_full[:, receivers], rtol=0, atol=1e-12)
    (grad_full,) = torch.autograd.grad(h_full[:, receivers].sum() + u_full[:, receivers].sum(), h)
    (grad_sub,) = torch.autograd.grad(h_sub.sum() + u_sub.sum(), h)
    torch.testing.assert_close(grad_sub, grad_full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_complete_graph_fast_path_equals_the_masked_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Complete graphs skip the adjacency masks; forcing the masked path changes nothing."""
    import eqmarl.models.message_passing as gnn_mod

    policy = build_policy(name, make_spec())
    obs = random_obs(6, seed=18)
    out_fast = policy_outputs(policy)(obs)
    real_graph_batch = gnn_mod.graph_batch

    def masked_graph_batch(*args, **kwargs):
        g = real_graph_batch(*args, **kwargs)
        assert g.complete
        g.complete = False
        return g

    monkeypatch.setattr(gnn_mod, "graph_batch", masked_graph_batch)
    out_masked = policy_outputs(policy)(obs)
    for k in out_fast:
        torch.testing.assert_close(out_masked[k], out_fast[k], rtol=0, atol=1e-12)
