"""Sparse kNN graphs (``model.knn``): construction against a brute-force reference,
equivariance of E2GN2 on them at N = 200, and the PPO update reusing the rollout's graph."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor

from eqmarl.config import ModelConfig
from eqmarl.core.env import EnvSpec, Observation
from eqmarl.core.graph import EntityGraph
from eqmarl.core.knn import brute_force_knn, knn_neighbors
from eqmarl.models import make_policy
from eqmarl.models.message_passing import graph_batch
from eqmarl.symmetry.testing import assert_equivariant, assert_permutation_equivariant

from .conftest import TINY, compose


@pytest.fixture(autouse=True)
def _threads(one_thread):  # type: ignore[no-untyped-def]
    yield


def _check_against_reference(x: Tensor, mask: Tensor, k: int, rule: str, group: Tensor | None, chunk: int) -> None:
    nbr, valid = knn_neighbors(x, mask, k, rule, group, chunk_elems=chunk)
    adj = EntityGraph(
        h=x, x=x, v=x, node_mask=mask, agent_node=torch.arange(1), edge_rule=rule, node_group=group
    ).adjacency()
    ref = brute_force_knn(x, adj, k)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            got = nbr[b, i][valid[b, i]].tolist()
            assert got == ref[b][i], (b, i, got, ref[b][i])


@pytest.mark.parametrize("chunk", [1, 37, 1 << 24], ids=["row-by-row", "odd-chunks", "one-chunk"])
def test_knn_matches_brute_force_with_ties(chunk: int) -> None:
    """Integer grid positions: many exactly equal distances; ties go to the lower index
    whatever the chunking; padded nodes neither send nor receive."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-3, 4, (5, 23, 2), generator=g).double()
    mask = torch.rand(5, 23, generator=g) > 0.2
    mask[0] = True
    _check_against_reference(x, mask, 6, "full", None, chunk)
    # fewer allowed senders than k: the rest are invalid slots
    _check_against_reference(x[:, :5], mask[:, :5], 6, "full", None, chunk)


def test_knn_respects_the_bipartite_rule() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-2, 3, (3, 17, 2), generator=g).double()
    mask = torch.ones(3, 17, dtype=torch.bool)
    group = torch.randint(0, 3, (3, 17), generator=g)
    _check_against_reference(x, mask, 5, "bipartite", group, 50)


def test_knn_float32_is_exact_and_translation_invariant_on_ties() -> None:
    """Differences, not the |a|^2+|b|^2-2ab form: a shifted grid keeps its ties."""
    x = torch.stack(torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij"), -1).view(1, 36, 2)
    mask = torch.ones(1, 36, dtype=torch.bool)
    nbr, _ = knn_neighbors(x, mask, 4)
    nbr_shift, _ = knn_neighbors(x + 1000.0, mask, 4)
    assert torch.equal(nbr, nbr_shift)
    # node 7 (1, 1): four neighbours at distance 1, in index order
    assert nbr[0, 7].tolist() == [1, 6, 8, 13]


def _spec(n_agents: int, n_landmarks: int) -> EnvSpec:
    return EnvSpec(
        n_agents=n_agents,
        obs_dim=4,
        state_dim=4 * n_agents,
        action_type="continuous",
        action_dim=2,
        episode_limit=25,
        n_nodes=n_agents + n_landmarks,
        node_feat_dim=2,
    )


def _obs(
    n_envs: int, n_agents: int, n_landmarks: int, seed: int = 0, dtype: torch.dtype = torch.float64
) -> Observation:
    g = torch.Generator().manual_seed(seed)
    n = n_agents + n_landmarks
    types = torch.tensor([0] * n_agents + [1] * n_landmarks)
    h = torch.nn.functional.one_hot(types, 2).to(dtype).expand(n_envs, n, 2).clone()
    x = (torch.rand(n_envs, n, 2, generator=g, dtype=dtype) * 2 - 1) * 3
    v = torch.rand(n_envs, n, 2, generator=g, dtype=dtype) - 0.5
    graph = EntityGraph(
        h=h, x=x, v=v, node_mask=torch.ones(n_envs, n, dtype=torch.bool), agent_node=torch.arange(n_agents)
    )
    return Observation(
        obs=torch.zeros(n_envs, n_agents, 4, dtype=dtype),
        state=torch.zeros(n_envs, 4 * n_agents, dtype=dtype),
        graph=graph,
    )


def _outputs(policy):  # type: ignore[no-untyped-def]
    def fn(obs: Observation) -> dict[str, Tensor]:
        return {"mean": policy.distribution(obs).mean, "value": policy.value(obs), "h": policy.critic_encoder(obs).h}

    return fn


@pytest.mark.parametrize("backend", ["dense", "pyg"])
def test_e2gn2_knn_is_o2_and_permutation_equivariant_at_200_nodes(backend: str) -> None:
    """N = 200 nodes (100 agents, 100 landmarks), k = 8: random float64 positions have no
    ties, so the kNN sets are O(2)-invariant and relabel with the nodes."""
    torch.manual_seed(0)
    policy = make_policy(
        ModelConfig(name="e2gn2", hidden=16, layers=2, knn=8, graph_backend=backend), _spec(100, 100), False
    ).double()
    obs = _obs(2, 100, 100)
    fn = _outputs(policy)
    errs = assert_equivariant(
        fn,
        obs,
        {"mean": "equivariant", "value": "invariant", "h": "invariant"},
        generator=torch.Generator().manual_seed(3),
    )
    assert max(errs.values()) < 1e-9
    assert_permutation_equivariant(
        fn, obs, {"mean": "agent", "value": "agent", "h": "agent"}, generator=torch.Generator().manual_seed(4)
    )
    # the graph really is sparse: 8 senders per node, not 199
    g = graph_batch(obs.graph, True, torch.float64, knn=8)
    assert g.nbr is not None and g.nbr.shape == (2, 200, 8) and g.adj is None


def test_knn_dense_and_pyg_agree_and_large_k_is_the_complete_graph() -> None:
    obs = _obs(3, 6, 9, seed=2)
    outs = {}
    for backend in ("dense", "pyg"):
        for knn in (0, 4, 14, 50):
            torch.manual_seed(0)
            p = make_policy(
                ModelConfig(name="e2gn2", hidden=16, layers=2, knn=knn, graph_backend=backend), _spec(6, 9), False
            ).double()
            outs[backend, knn] = (p.distribution(obs).mean, p.value(obs))
    for knn in (0, 4, 14, 50):
        for a, b in zip(outs["dense", knn], outs["pyg", knn]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for knn in (14, 50):  # k >= N - 1: every other node is a neighbour
        for a, b in zip(outs["dense", knn], outs["dense", 0]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(outs["dense", 4][0], outs["dense", 0][0])


def test_update_uses_exactly_the_rollout_graph() -> None:
    """The rollout stores each step's neighbour lists; they equal a rebuild from the
    flattened minibatch (other batch size, other chunking), and re-evaluating the stored
    actions at epoch 0 gives the rollout's log-probs exactly."""
    from eqmarl.train.trainer import Trainer

    cfg = compose([*TINY, "env.n_agents=12", "model.knn=3", "train.num_envs=4"])
    tr = Trainer(cfg, run_dir=__import__("pathlib").Path("/tmp/unused"))
    ro = tr.rollout()
    g = ro.obs.graph
    assert g is not None and g.neighbors is not None and g.neighbors.shape[-1] == 3
    n = g.node_mask.shape[-1]
    flat = ro.obs.map(lambda t: t.reshape((-1, *t.shape[2:])))
    idx = torch.randperm(flat.obs.shape[0])[:37]
    mb = flat.map(lambda t: t[idx])
    rebuilt, valid = knn_neighbors(mb.graph.x, mb.graph.node_mask, 3, chunk_elems=5 * n)
    assert torch.equal(rebuilt, mb.graph.neighbors) and bool(valid.all())
    logp, _, _ = tr.policy.evaluate(mb, ro.action.reshape((-1, *ro.action.shape[2:]))[idx])
    assert torch.equal(logp, ro.logprob.reshape(-1, 12)[idx])
    stripped = dataclasses.replace(mb, graph=dataclasses.replace(mb.graph, neighbors=None, neighbor_valid=None))
    logp2, _, _ = tr.policy.evaluate(stripped, ro.action.reshape((-1, *ro.action.shape[2:]))[idx])
    assert torch.equal(logp, logp2)


def test_inference_chunks_give_the_unchunked_results() -> None:
    """``train.inference_chunk_envs``: rollouts and evaluations run the policy a few envs
    at a time; the stored log-probs and values equal one forward over all envs, and the
    deterministic evaluation equals the unchunked one."""
    from eqmarl.models.policy import over_env_chunks
    from eqmarl.train.trainer import Trainer

    base = [*TINY, "env.n_agents=6", "train.num_envs=8", "train.eval_episodes=7"]
    tr = Trainer(compose([*base, "train.inference_chunk_envs=3"]), run_dir=__import__("pathlib").Path("/tmp/unused"))
    ro = tr.rollout()
    flat = ro.obs.map(lambda t: t.reshape((-1, *t.shape[2:])))
    with torch.no_grad():
        logp, _, value = tr.policy.evaluate(flat, ro.action.reshape((-1, *ro.action.shape[2:])))
    torch.testing.assert_close(logp, ro.logprob.reshape(logp.shape), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value, ro.value.reshape(value.shape), rtol=1e-5, atol=1e-5)
    one = tr.policy.act(flat, deterministic=True)
    for a, b in zip(over_env_chunks(lambda o: tr.policy.act(o, deterministic=True), flat, 5), one):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    whole = Trainer(compose(base), run_dir=__import__("pathlib").Path("/tmp/unused"))
    whole.policy.load_state_dict(tr.policy.state_dict())
    assert whole.evaluate() == pytest.approx(tr.evaluate(), rel=1e-5)
