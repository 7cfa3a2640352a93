"""``train.compile``: the compiled policy step and PPO loss equal the eager ones.

The graph models trace as one graph each (no graph breaks: no host syncs, no
data-dependent shapes), and on a fixed batch the compiled loss terms and gradients,
and the compiled rollout step's actions, log-probs and values, equal eager within 1e-5.
Compiling takes a minute on a small CPU, so the compiled comparisons are ``slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eqmarl.config.errors import ConfigError
from eqmarl.train.compiled import COMPILE_MODES, CompiledPhase
from tests.conftest import TINY, compose


def _trainer(tmp_path: Path, *overrides: str):
    from eqmarl.train.trainer import Trainer

    cfg = compose([*TINY, "train.threads=1", *overrides])
    return Trainer(cfg, tmp_path)


def test_modes_agree_with_the_config_check() -> None:
    from eqmarl.config import train as train_config

    assert train_config.COMPILE_MODES == COMPILE_MODES


def test_bad_mode_is_refused_naming_the_key() -> None:
    from eqmarl.config import validate

    with pytest.raises(ConfigError, match=r"train\.compile.*reduce-overhead"):
        validate(compose([*TINY, "train.compile=fast"]))


def test_deepspeed_with_compile_is_refused() -> None:
    from eqmarl.config import validate

    with pytest.raises(ConfigError, match=r"train\.compile.*deepspeed"):
        validate(compose([*TINY, "train.compile=default", "learner=deepspeed"]))


def test_none_is_the_function_itself() -> None:
    calls = []
    phase = CompiledPhase(lambda x: calls.append(x) or x + 1, "none")
    assert phase(1) == 2 and calls == [1] and phase.compile_s == 0.0


@pytest.mark.parametrize("model", ["e2gn2", "egnn", "gnn", "mlp"])
def test_policy_traces_as_one_graph(tmp_path: Path, one_thread: None, model: str) -> None:
    """No graph breaks in the update's forward or the rollout's policy step."""
    trainer = _trainer(tmp_path, f"model={model}")
    rollout = trainer.rollout()
    obs = rollout.obs.map(lambda x: x[0])
    for fn, args in ((trainer.policy.evaluate, (obs, rollout.action[0])), (trainer.policy.act, (obs,))):
        explained = torch._dynamo.explain(fn)(*args)
        reasons = [b.reason.splitlines()[0] for b in explained.break_reasons]
        assert explained.graph_break_count == 0, reasons
        assert explained.graph_count == 1


def test_sender_index_without_masks_is_every_other_node() -> None:
    from eqmarl.models.message_passing import _sender_index

    for n in (2, 3, 6):
        got = _sender_index(n, None, torch.device("cpu"))
        assert got.tolist() == [[j for j in range(n) if j != i] for i in range(n)]
    got = _sender_index(5, torch.tensor([3, 0]), torch.device("cpu"))
    assert got.tolist() == [[0, 1, 2, 4], [1, 2, 3, 4]]


@pytest.mark.slow
def test_compiled_phases_equal_eager(tmp_path: Path, one_thread: None) -> None:
    """One compile of each phase (the slow part); then compare on a fixed batch."""
    torch._dynamo.reset()
    trainer = _trainer(tmp_path, "train.compile=default")
    updater, collector = trainer.updater, trainer.collector
    assert updater.loss.enabled and collector.policy_step.enabled

    # the rollout's policy step: same RNG state, same draws
    obs = collector.env.reset(seed=5)
    state = torch.get_rng_state()
    with torch.no_grad():
        eager = trainer.policy.act(obs)
        torch.set_rng_state(state)
        compiled = collector.policy_step(obs)
    for name in ("action", "logprob", "value"):
        torch.testing.assert_close(getattr(compiled, name), getattr(eager, name), atol=1e-5, rtol=1e-5)
    assert collector.policy_step.compile_s > 0

    # the micro-batch loss and its gradients on a fixed batch
    from eqmarl.train.update import Batch

    rollout = trainer.rollout()
    batch = Batch.from_rollout(rollout, trainer.batch_frames)
    index = torch.arange(updater.minibatch_size)
    args = (
        batch.observations(index),
        batch.action[index],
        batch.logprob[index],
        batch.advantages[index],
        batch.value[index],
        batch.returns[index],
        None,
    )
    params = [p for p in trainer.policy.parameters() if p.requires_grad]

    def loss_and_grads(fn):  # type: ignore[no-untyped-def]
        trainer.policy.zero_grad(set_to_none=True)
        terms = fn(*args)
        updater.loss.backward(terms["loss"].backward)
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]
        return {k: v.detach() for k, v in terms.items()}, grads

    eager_terms, eager_grads = loss_and_grads(updater._loss_terms)
    compiled_terms, compiled_grads = loss_and_grads(updater.loss)
    assert set(compiled_terms) == set(eager_terms)
    for k in eager_terms:
        torch.testing.assert_close(compiled_terms[k], eager_terms[k], atol=1e-5, rtol=1e-5)
    for g_c, g_e in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g_c, g_e, atol=1e-5, rtol=1e-4)
    assert any(float(g.abs().sum()) > 0 for g in eager_grads)

    # a whole iteration runs compiled and reports its compile time apart
    metrics = trainer.update(rollout)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert updater.loss.compile_s > 0
