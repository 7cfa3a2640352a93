import torch

from eqmarl.algos.gae import gae


def naive_gae(r, v, v_next, term, trunc, gamma, lam):
    """Per-env loop in plain Python floats, written from the definitions."""
    T, E = len(r), len(r[0])
    adv = [[0.0] * E for _ in range(T)]
    for e in range(E):
        running = 0.0
        for t in reversed(range(T)):
            if term[t][e]:
                delta = r[t][e] - v[t][e]
                running = delta
            elif trunc[t][e]:
                delta = r[t][e] + gamma * v_next[t][e] - v[t][e]
                running = delta
            else:
                delta = r[t][e] + gamma * v_next[t][e] - v[t][e]
                running = delta + gamma * lam * running
            adv[t][e] = running
    return adv


def test_gae_matches_naive_loop_with_truncation_and_termination():
    g = torch.Generator().manual_seed(0)
    T, E = 13, 5
    r = torch.randn(T, E, generator=g, dtype=torch.float64)
    v = torch.randn(T, E, generator=g, dtype=torch.float64)
    v_next = torch.randn(T, E, generator=g, dtype=torch.float64)
    term = torch.rand(T, E, generator=g) < 0.15
    trunc = (torch.rand(T, E, generator=g) < 0.15) & ~term
    adv, ret = gae(r, v, v_next, term, term | trunc, 0.97, 0.9)
    want = torch.tensor(
        naive_gae(r.tolist(), v.tolist(), v_next.tolist(), term.tolist(), trunc.tolist(), 0.97, 0.9),
        dtype=torch.float64,
    )
    assert term.any() and trunc.any()
    torch.testing.assert_close(adv, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(ret, want + v, rtol=0, atol=1e-12)


def test_gae_truncation_bootstraps_but_termination_does_not():
    r = torch.tensor([[1.0, 1.0]])
    v = torch.tensor([[0.0, 0.0]])
    v_next = torch.tensor([[10.0, 10.0]])
    term = torch.tensor([[True, False]])
    done = torch.tensor([[True, True]])
    adv, _ = gae(r, v, v_next, term, done, 0.5, 1.0)
    assert adv.tolist() == [[1.0, 1.0 + 0.5 * 10.0]]


def test_gae_per_agent_trailing_dims():
    g = torch.Generator().manual_seed(1)
    T, E, A = 7, 3, 4
    r, v, vn = (torch.randn(T, E, A, generator=g, dtype=torch.float64) for _ in range(3))
    term = torch.rand(T, E, generator=g) < 0.2
    done = term | (torch.rand(T, E, generator=g) < 0.2)
    adv, _ = gae(r, v, vn, term, done, 0.99, 0.95)
    for a in range(A):
        adv_a, _ = gae(r[..., a], v[..., a], vn[..., a], term, done, 0.99, 0.95)
        torch.testing.assert_close(adv[..., a], adv_a)
