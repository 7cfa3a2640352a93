import math

import torch

from eqmarl.algos.ppo import ValueNorm, ppo_loss


def test_ppo_loss_terms_by_hand():
    logp = torch.tensor([math.log(0.5), math.log(0.2)])
    old = torch.tensor([math.log(0.25), math.log(0.4)])  # ratios 2.0 and 0.5
    adv = torch.tensor([1.0, -2.0])
    value = torch.tensor([0.5, 1.0])
    old_value = torch.tensor([0.0, 1.5])
    ret = torch.tensor([1.0, 0.0])
    ent = torch.tensor([0.3, 0.5])
    out = ppo_loss(
        logp, old, adv, value, old_value, ret, ent, clip_coef=0.2, vf_coef=0.5, ent_coef=0.01, norm_adv=False
    )
    # sample 1: ratio 2, A=1 -> max(-2, -1.2) = -1.2 ; sample 2: ratio .5, A=-2 -> max(1, 1.6) = 1.6
    assert math.isclose(out["pg_loss"].item(), (-1.2 + 1.6) / 2, rel_tol=1e-6)
    # 0.5 * mean((0.5-1)^2, (1-0)^2) = 0.5 * 0.625
    assert math.isclose(out["v_loss"].item(), 0.3125, rel_tol=1e-6)
    assert math.isclose(out["entropy"].item(), 0.4, rel_tol=1e-6)
    assert math.isclose(out["loss"].item(), 0.2 - 0.01 * 0.4 + 0.5 * 0.3125, rel_tol=1e-6)
    # approx_kl = mean((r-1) - log r) = ((1 - ln2) + (-0.5 + ln2)) / 2 = 0.25
    assert math.isclose(out["approx_kl"].item(), 0.25, rel_tol=1e-6)
    assert out["clipfrac"].item() == 1.0


def test_ppo_value_clipping_and_adv_norm():
    logp = old = torch.zeros(2)
    adv = torch.tensor([3.0, 1.0])
    value = torch.tensor([2.0, 0.0])
    old_value = torch.tensor([0.0, 0.0])
    ret = torch.tensor([0.0, 1.0])
    ent = torch.zeros(2)
    out = ppo_loss(logp, old, adv, value, old_value, ret, ent, 0.2, 1.0, 0.0, clip_vloss=True, norm_adv=True)
    # clipped value of sample 1 = 0.2: max((2-0)^2, (0.2-0)^2) = 4; sample 2: max(1, (0-1)^2) = 1
    assert math.isclose(out["v_loss"].item(), 0.5 * (4 + 1) / 2, rel_tol=1e-6)
    # normalized advantages are (+1/sqrt2*..): mean 0 -> with ratio 1 the pg loss is -mean(adv_n) = 0
    assert abs(out["pg_loss"].item()) < 1e-6


def test_value_norm_matches_batch_statistics():
    vn = ValueNorm()
    g = torch.Generator().manual_seed(0)
    chunks = [torch.randn(100, generator=g) * 3 + 5 for _ in range(4)]
    for c in chunks:
        vn.update(c)
    allx = torch.cat(chunks).double()
    assert math.isclose(vn.mean.item(), allx.mean().item(), rel_tol=1e-9)
    assert math.isclose(vn.var.item(), allx.var(unbiased=False).item(), rel_tol=1e-9)
    x = torch.randn(10, dtype=torch.float64)
    torch.testing.assert_close(vn.denormalize(vn.normalize(x)), x)


def test_ppo_weights_drop_samples_from_every_term():
    """Samples with weight 0 (a crashed game's transitions) change no term; weight-1 samples
    give exactly the loss of the kept samples alone."""
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(8, 3, generator=g) for _ in range(7)]
    keep = torch.ones(8, 3)
    keep[[1, 5]] = 0.0
    kw = {"clip_coef": 0.2, "vf_coef": 0.5, "ent_coef": 0.01, "clip_vloss": True, "norm_adv": False}
    weighted = ppo_loss(*args, weights=keep, **kw)
    subset = ppo_loss(*[a[keep[:, 0] > 0] for a in args], **kw)
    for k in subset:
        torch.testing.assert_close(weighted[k], subset[k], rtol=1e-6, atol=1e-7)
    wild = [a.clone() for a in args]
    for a in wild:
        a[[1, 5]] = 1e6  # whatever a crashed game left there
    again = ppo_loss(*wild, weights=keep, **kw)
    for k in subset:
        torch.testing.assert_close(again[k], weighted[k], rtol=1e-6, atol=1e-7)
    assert ppo_loss(*args, **kw)["loss"].item() != weighted["loss"].item()
