"""learner=deepspeed (real DeepSpeed, CPU accelerator, gloo), micro-batches and activation
checkpointing: equal to the plain learners within stated tolerances; exact resume; a
consolidated checkpoint that evaluates without DeepSpeed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eqmarl.train.trainer import Trainer
from tests.conftest import TINY, compose

deepspeed = pytest.importorskip(
    "deepspeed", reason="learner=deepspeed tests need: DS_BUILD_OPS=0 pip install deepspeed"
)

# 2 iterations x 2 epochs x 2 minibatches, graph model with kNN
BASE = [*TINY, "model=e2gn2", "env.n_agents=5", "model.knn=3", "train.num_envs=4", "train.total_env_steps=200"]


@pytest.fixture(autouse=True)
def _threads(one_thread):  # type: ignore[no-untyped-def]
    yield


@pytest.fixture(autouse=True)
def _no_rendezvous_leak():  # type: ignore[no-untyped-def]
    """learner=deepspeed starts a one-rank process group in this process (kept for the
    session: DeepSpeed caches it); it must leave no rendezvous variables behind for the
    processes later tests start (SLURM jobs inherit the submitting environment)."""
    import os

    keys = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    before = {k: os.environ.get(k) for k in keys}
    yield
    after = {k: os.environ.get(k) for k in keys}
    assert after == before, f"rendezvous variables leaked into the test process: {after}"


def first_update_grads(overrides: list[str]) -> list[torch.Tensor]:
    """Gradients of the first optimizer step of a fresh trainer (one minibatch, one epoch)."""
    cfg = compose([*BASE, "algo.epochs=1", "algo.num_minibatches=1", *overrides])
    tr = Trainer(cfg, Path("/tmp/unused"))
    grads: list[torch.Tensor] = []
    step = tr.strategy.optimizer_step

    def record(*args: bool) -> torch.Tensor:
        grads.extend(p.grad.detach().clone() for p in tr.policy.parameters())
        return step(*args)

    tr.strategy.optimizer_step = record  # type: ignore[method-assign]
    tr.update(tr.rollout())
    return grads


def rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    fa, fb = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
    return float((fa - fb).norm() / fb.norm())


@pytest.mark.parametrize(
    "extra", [["learner.micro_batches=4"], ["model.activation_checkpointing=true"]], ids=["micro4", "ckpt"]
)
def test_micro_batches_and_activation_checkpointing_keep_the_gradient(extra: list[str]) -> None:
    ref = first_update_grads([])
    got = first_update_grads(extra)
    assert rel_diff(got, ref) <= 1e-6


def run_iterations(tmp: Path, overrides: list[str], iterations: int = 2) -> Trainer:
    cfg = compose([*BASE, "train.checkpoint_every=1", *overrides])
    tr = Trainer(cfg, tmp)
    for _ in range(iterations):
        tr.strategy.set_lr(cfg.algo.lr)
        tr.update(tr.rollout())
        tr.iteration += 1
    return tr


def max_param_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# DeepSpeed reduces and clips in its own order: fp32 results agree to rounding
DS_TOLERANCE = 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 2, 3])
def test_deepspeed_one_process_equals_single(tmp_path: Path, stage: int) -> None:
    ref = run_iterations(tmp_path / "ref", ["learner=single"])
    ds = run_iterations(
        tmp_path / "ds", ["learner=deepspeed", f"learner.zero_stage={stage}", "learner.micro_batches=2"]
    )
    assert max_param_diff(ds.strategy.plain_state_dict(), ref.policy.state_dict()) < DS_TOLERANCE


@pytest.mark.slow
def test_zero3_with_per_agent_weights_equals_single(tmp_path: Path) -> None:
    """ZeRO-3 partitions the stacked per-agent weights; the Gaussian head's log-std, used
    after the head's forward (inside the distribution), is gathered with the whole policy."""
    per_agent = ["model=mlp", "model.share_params=false", "model.knn=0"]
    ref = run_iterations(tmp_path / "ref", [*per_agent, "learner=single"])
    ds = run_iterations(tmp_path / "ds", [*per_agent, "learner=deepspeed", "learner.zero_stage=3"])
    assert ref.policy.state_dict()["head.log_std"].shape[0] == 5  # one row per agent
    assert max_param_diff(ds.strategy.plain_state_dict(), ref.policy.state_dict()) < DS_TOLERANCE


@pytest.mark.slow
def test_bf16_weights_train(tmp_path: Path) -> None:
    """learner.precision=bf16_weights: DeepSpeed's bf16 mode (16-bit weights, fp32 master
    copy in the optimizer); rollouts run under autocast and hand float32 to PPO, the
    weights move, and the consolidated policy loads into a plain float32 policy."""
    from eqmarl.models import make_policy

    start = run_iterations(tmp_path / "start", ["learner=single"], iterations=0).policy.state_dict()
    ds = run_iterations(
        tmp_path / "ds", ["learner=deepspeed", "learner.zero_stage=2", "learner.precision=bf16_weights"]
    )
    weights = ds.strategy.plain_state_dict()
    assert {v.dtype for v in weights.values()} == {torch.bfloat16}
    assert max_param_diff(weights, start) > 1e-3  # the fp32 master weights took the steps
    ro = ds.rollout()
    assert ro.logprob.dtype == ro.value.dtype == ro.action.dtype == torch.float32
    assert bool(torch.isfinite(ro.logprob).all()) and math.isfinite(ds.update(ro)["loss"])
    plain = make_policy(ds.cfg.model, ds.spec, centralized_critic=False)
    plain.load_state_dict(weights)
    assert next(plain.parameters()).dtype == torch.float32


@pytest.mark.slow
def test_deepspeed_bf16_and_offload_train(tmp_path: Path) -> None:
    ds = run_iterations(
        tmp_path / "ds",
        ["learner=deepspeed", "learner.zero_stage=2", "learner.offload_optimizer=true", "learner.precision=bf16"],
        iterations=1,
    )
    ref = run_iterations(tmp_path / "ref", ["learner=single"], iterations=1)
    d = max_param_diff(ds.strategy.plain_state_dict(), ref.policy.state_dict())
    assert 0 < d < 1e-2  # bf16 products: close to fp32, not equal
    assert all(p.dtype == torch.float32 for p in ds.policy.parameters())


@pytest.mark.slow
def test_deepspeed_resume_is_exact_and_checkpoint_needs_no_deepspeed(tmp_path: Path) -> None:
    """2+2 iterations with a save/resume in between equal 4 straight (ZeRO-2, CPU); the
    saved plain policy loads and acts in a process that never imports deepspeed."""
    from eqmarl.launch.job import run_training

    ds = [
        "learner=deepspeed",
        "learner.zero_stage=2",
        "train.total_env_steps=400",
        "train.checkpoint_every=2",
        "train.eval_every=0",
        "logger.csv=false",
    ]
    straight = compose(BASE + ds)
    run_training(straight, tmp_path / "straight")
    half = compose(BASE + ds + ["train.max_iterations=2"])
    run_training(half, tmp_path / "split")
    ckpt = tmp_path / "split" / "checkpoints" / "ckpt_000002.pt"
    assert (tmp_path / "split" / "checkpoints" / "deepspeed" / "iter_000002").is_dir()
    run_training(straight, tmp_path / "split", checkpoint=ckpt)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "ckpt_000004.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoints" / "ckpt_000004.pt", weights_only=False)
    for k in a["policy"]:
        assert torch.equal(a["policy"][k], b["policy"][k]), k
    code = f"""
import sys, torch
from eqmarl.build import make_env
from eqmarl.models import make_policy
from eqmarl.config import ModelConfig, MpeEnvConfig
st = torch.load({str(tmp_path / "split" / "checkpoints" / "ckpt_000004.pt")!r}, weights_only=False)
env = make_env(MpeEnvConfig(n_agents=5), 2, 0, 'cpu')
m = st['config']['model']
p = make_policy(ModelConfig(**m), env.spec, False)
p.load_state_dict(st['policy'])
out = p.act(env.reset(seed=0))
assert out.action.shape == (2, 5, 2)
assert 'deepspeed' not in sys.modules, 'deepspeed was imported'
print('OK')
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0 and "OK" in p.stdout, p.stderr[-2000:]


def test_missing_deepspeed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from eqmarl.train.deepspeed_strategy import import_deepspeed

    monkeypatch.setitem(sys.modules, "deepspeed", None)
    with pytest.raises(ImportError, match="pip install 'eqmarl\\[deepspeed\\]'"):
        import_deepspeed(torch.device("cpu"))


def test_deepspeed_settings_are_checked() -> None:
    from eqmarl.config import ConfigError

    for bad, key in (
        ("learner.zero_stage=4", "learner.zero_stage"),
        ("learner.precision=fp16", "learner.precision"),
        ("learner.micro_batches=7", "learner.micro_batches"),
    ):
        with pytest.raises(ConfigError) as e:
            compose([*BASE, "learner=deepspeed", bad])
        assert e.value.key == key
    with pytest.raises(ConfigError) as e:
        compose([*BASE, "learner=single", "learner.zero_stage=2"])
    assert e.value.key == "learner.zero_stage"
    with pytest.raises(ConfigError) as e:
        compose([*BASE, "learner=deepspeed", "learner.offload_optimizer=true"])
    assert e.value.key == "learner.offload_optimizer"
