"""Non-finite values in training (issue 13, class 2): a NaN/inf loss or gradient skips the
optimizer step on every rank, a step that leaves useless parameters is rolled back, the run
stops with a clear message after ``train.max_nonfinite_updates`` in a row, and no checkpoint
ever holds a non-finite tensor.  Faults are real: NaN in the rollout's data, a learning rate
that overflows the parameters, a NaN written into a parameter."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from eqmarl.train.checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint
from eqmarl.train.nonfinite import NonFiniteError, NonFiniteGuard, state_is_finite
from eqmarl.train.strategy import DdpStrategy, destroy_distributed
from eqmarl.train.trainer import Trainer
from tests.conftest import TINY, compose, launch_cmd

# 2 epochs x 2 minibatches: 4 optimizer steps per update
SMALL = [*TINY, "model=mlp", "train.num_envs=4", "train.total_env_steps=400"]


@pytest.fixture(autouse=True)
def _threads(one_thread):  # type: ignore[no-untyped-def]
    yield


def params(tr: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in tr.policy.parameters()]


def test_guard_rolls_back_an_unconfirmed_step_and_counts_until_the_limit() -> None:
    g = NonFiniteGuard(3)
    assert g.record(skipped=False) is False  # applied, pending
    assert g.record(skipped=True) is True and g.streak == 1  # its parameters gave NaN: roll it back
    assert g.record(skipped=False) is False and g.streak == 1  # applied again: not confirmed yet
    assert g.record(skipped=True) is True and g.streak == 2
    assert g.record(skipped=True) is False and g.streak == 3 and g.exhausted  # nothing pending to undo
    g = NonFiniteGuard(3)
    g.record(skipped=True)
    g.record(skipped=False)
    g.record(skipped=False)  # the second finite loss confirms the first step
    assert g.streak == 0 and not g.exhausted
    assert g.confirm(finite=False) is True and g.streak == 1  # the last step's outputs are NaN
    assert g.confirm(finite=True) is False  # nothing pending any more


class FakeLearner:
    """The learner calls the guard makes: ``skipped``, ``rollback``, ``any_rank``, ``is_main``."""

    is_main = True

    def __init__(self) -> None:
        self.skipped = False
        self.rollbacks = 0

    def rollback(self) -> None:
        self.rollbacks += 1

    def any_rank(self, flag: bool) -> bool:
        return flag


def test_guard_owns_skip_rollback_and_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    learner = FakeLearner()
    g = NonFiniteGuard(2, learner, lr=0.1, max_grad_norm=0.0, run_dir=tmp_path)
    assert g.after_step(iteration=5) is False  # applied, unconfirmed
    learner.skipped = True
    assert g.after_step(iteration=5) is True and learner.rollbacks == 1
    assert "iteration 5: non-finite loss or gradient norm, optimizer step skipped and the one before" in (
        capsys.readouterr().err
    )
    assert g.confirm_last_step(5, lambda: torch.zeros(1)) is False  # nothing pending
    with pytest.raises(NonFiniteError, match=r"2 optimizer steps in a row.*algo\.lr=0\.1.*\(clipping off\)"):
        g.after_step(iteration=5)
    assert not g.checkpoint_allowed(5, {"w": torch.tensor([float("nan")])})
    assert "checkpoint of iteration 5 not written" in capsys.readouterr().err


def test_nan_in_the_rollout_skips_every_step_and_keeps_the_state(tmp_path: Path) -> None:
    tr = Trainer(compose([*SMALL, "train.max_nonfinite_updates=100"]), tmp_path)
    tr.update(tr.rollout())  # Adam has state now
    before, opt_before = params(tr), {k: v.clone() for k, v in tr.optimizer.state_dict()["state"][0].items()}
    ro = tr.rollout()
    ro.advantages.fill_(float("nan"))  # bad data in every minibatch
    out = tr.update(ro)
    assert out["nonfinite_skips"] == 4
    assert all(torch.equal(a, b) for a, b in zip(before, params(tr)))
    opt_after = tr.optimizer.state_dict()["state"][0]
    assert all(torch.equal(opt_before[k], opt_after[k]) for k in opt_before)
    out = tr.update(tr.rollout())  # clean data trains again
    assert out["nonfinite_skips"] == 0 and torch.isfinite(torch.tensor(out["loss"]))


def test_consecutive_skips_stop_the_run_with_a_clear_message(tmp_path: Path) -> None:
    tr = Trainer(compose([*SMALL, "train.max_nonfinite_updates=3"]), tmp_path)
    ro = tr.rollout()
    ro.returns.fill_(float("inf"))
    with pytest.raises(NonFiniteError) as e:
        tr.update(ro)
    msg = str(e.value)
    assert "3 optimizer steps in a row" in msg and "algo.lr=" in msg and "algo.max_grad_norm=" in msg
    assert "No checkpoint was written" in msg


def test_a_step_that_overflows_the_parameters_is_rolled_back(tmp_path: Path) -> None:
    # lr=1e30: every applied step leaves finite but useless parameters (~1e30) whose next
    # loss is NaN; the step is undone, so the rollout after the update is safe
    tr = Trainer(compose([*SMALL, "algo.lr=1e30", "train.max_nonfinite_updates=100"]), tmp_path)
    before = params(tr)
    out = tr.update(tr.rollout())
    assert out["nonfinite_skips"] >= 2
    after = params(tr)
    assert state_is_finite(after) and all(torch.equal(a, b) for a, b in zip(before, after))
    tr.rollout()  # on the old code: VMAS asserts on NaN actions


def test_without_rollback_copies_such_a_step_stops_the_run(tmp_path: Path) -> None:
    """train.rollback_nonfinite=false keeps no copy of the model state (for large per-agent
    models): the overflowing step cannot be undone, so the run stops with a clear message."""
    tr = Trainer(
        compose([*SMALL, "algo.lr=1e30", "train.max_nonfinite_updates=100", "train.rollback_nonfinite=false"]),
        tmp_path,
    )
    with pytest.raises(NonFiniteError, match=r"train\.rollback_nonfinite=false"):
        tr.update(tr.rollout())
    assert tr.strategy._last is None


def test_the_nonfinite_streak_is_checkpointed_and_a_resume_continues_it(tmp_path: Path) -> None:
    """4 skipped steps, a checkpoint, a resume, 2 more: the run stops at
    train.max_nonfinite_updates=6 as an uninterrupted one would.  Old main: the streak
    restarts at 0 on resume (the run would go on past 6 skipped steps in a row)."""
    cfg = compose([*SMALL, "train.max_nonfinite_updates=6"])
    tr = Trainer(cfg, tmp_path)
    ro = tr.rollout()
    ro.advantages.fill_(float("nan"))
    assert tr.update(ro)["nonfinite_skips"] == 4 and tr.nonfinite.streak == 4
    tr.iteration = 1
    path = tr.save()
    assert path is not None
    state = load_checkpoint(path)
    assert state["nonfinite"] == {"streak": 4, "pending": False}
    resumed = Trainer(cfg, tmp_path)
    resumed.load_state_dict(state, checkpoint=path)
    assert resumed.nonfinite.streak == 4
    ro = resumed.rollout()
    ro.advantages.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="6 optimizer steps in a row"):
        resumed.update(ro)
    # a checkpoint written before the streak was saved loads with 0
    del state["nonfinite"]
    older = Trainer(cfg, tmp_path)
    older.load_state_dict(state, checkpoint=path)
    assert older.nonfinite.streak == 0 and not older.nonfinite.pending


def test_a_nonfinite_state_is_never_checkpointed(tmp_path: Path) -> None:
    tr = Trainer(compose(SMALL), tmp_path)
    assert tr.save() is not None  # iteration 0, finite
    tr.iteration = 1
    with torch.no_grad():
        next(iter(tr.policy.parameters()))[0].fill_(float("nan"))
    assert tr.save() is None
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["ckpt_000000.pt"]
    assert state_is_finite(load_checkpoint(resolve_checkpoint(tmp_path))["policy"])


@pytest.mark.slow
def test_diverging_cli_run_exits_nonzero_and_keeps_only_finite_checkpoints(tmp_path: Path, clean_env) -> None:
    run = tmp_path / "run"
    over = [*TINY, "train.total_env_steps=2000", "train.checkpoint_every=1", "algo.lr=1e30", f"hydra.run.dir={run}"]
    p = subprocess.run(launch_cmd(*over), capture_output=True, text=True, env=clean_env, timeout=300, check=False)
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "AssertionError" not in p.stderr
    assert "eqmarl: training stopped" in p.stderr and "algo.lr=1e+30" in p.stderr
    assert f"last good checkpoint is {run / 'checkpoints'}" in p.stderr
    assert "optimizer step skipped" in p.stderr
    ckpts = list_checkpoints(run / "checkpoints")
    assert ckpts and all(state_is_finite(load_checkpoint(c)["policy"], load_checkpoint(c)["optimizer"]) for c in ckpts)
    assert resolve_checkpoint(run) == ckpts[-1]  # resume= continues from the last finite one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, out: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    strat = DdpStrategy(net, opt, max_grad_norm=0.5)
    x = torch.ones(4, 3)
    before = [p.detach().clone() for p in net.parameters()]
    strat.zero_grad()
    loss = net(x).pow(2).mean() * (float("nan") if rank == 1 else 1.0)  # NaN on rank 1 only
    strat.backward(loss)
    strat.optimizer_step(bool(torch.isfinite(loss)))
    skipped = strat.skipped
    unchanged = all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    strat.zero_grad()
    strat.backward(net(x).pow(2).mean())
    strat.optimizer_step(True)
    out[rank] = {"skipped": skipped, "unchanged": unchanged, "then": strat.skipped, "w": net.weight.detach().clone()}
    destroy_distributed()


@pytest.mark.slow
def test_ddp_ranks_agree_to_skip_when_one_rank_has_a_nonfinite_loss() -> None:
    world, port = 2, _free_port()
    with mp.Manager() as m:
        out = m.dict()
        mp.spawn(_rank_main, args=(world, port, out), nprocs=world, join=True)
        res = dict(out)
    assert res[0]["skipped"] and res[1]["skipped"] and res[0]["unchanged"] and res[1]["unchanged"]
    assert not res[0]["then"] and not res[1]["then"]
    assert torch.equal(res[0]["w"], res[1]["w"]) and torch.isfinite(res[0]["w"]).all()


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 2])
def test_deepspeed_skips_a_nonfinite_step(tmp_path: Path, stage: int) -> None:
    pytest.importorskip("deepspeed")
    over = [*SMALL, "learner=deepspeed", f"learner.zero_stage={stage}", "train.max_nonfinite_updates=100"]
    tr = Trainer(compose(over), tmp_path)
    tr.update(tr.rollout())
    before = params(tr)
    ro = tr.rollout()
    ro.advantages.fill_(float("nan"))
    assert tr.update(ro)["nonfinite_skips"] == 4
    assert all(torch.equal(a, b) for a, b in zip(before, params(tr)))
    assert tr.update(tr.rollout())["nonfinite_skips"] == 0
