"""The learner contract: the registry, settings through the constructor, the models'
ZeRO-3 declarations, and DdpStrategy over a real 2-process gloo group on this machine
(no SLURM needed)."""

from __future__ import annotations

import socket
import sys
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from eqmarl.config import LearnerConfig, ModelConfig
from eqmarl.core.env import EnvSpec
from eqmarl.core.errors import InvalidOption
from eqmarl.models import make_policy
from eqmarl.models.egnn import EGNNLayer
from eqmarl.models.heads import ExternalParameters
from eqmarl.train.learners import LEARNERS, make_learner
from eqmarl.train.strategy import DdpStrategy, SingleStrategy, destroy_distributed
from eqmarl.wrappers.eqc import EQC


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(100 + rank)  # different initial parameters: DdpStrategy must broadcast rank 0's
    net = nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    strat = DdpStrategy(net, opt, max_grad_norm=0.0)
    x = torch.full((4, 3), float(rank + 1))  # each rank its own data
    strat.step(net(x).pow(2).mean())
    out[rank] = {
        "params": {k: v.clone() for k, v in net.state_dict().items()},
        "grad": net.weight.grad.clone(),
        "sum": strat.all_reduce_sum(torch.tensor([float(rank + 1)])).item(),
        "any": strat.any_rank(rank == 1),
        "none": strat.any_rank(False),
        "cat": strat.all_gather_cat(torch.tensor([rank, rank])).tolist(),
        "gathered": strat.gather_objects({"rank": rank}),
    }
    destroy_distributed()


def test_ddp_strategy_averages_gradients_over_two_gloo_ranks():
    world, port = 2, _free_port()
    with mp.Manager() as m:
        out = m.dict()
        mp.spawn(_rank_main, args=(world, port, out), nprocs=world, join=True)
        res = dict(out)
    # the expected update: rank 0's initial parameters, gradient = mean of the two ranks' gradients
    torch.manual_seed(100)
    ref = nn.Linear(3, 2)
    grads = []
    for r in range(world):
        ref.zero_grad()
        ref(torch.full((4, 3), float(r + 1))).pow(2).mean().backward()
        grads.append(ref.weight.grad.clone())
    assert torch.allclose(res[0]["grad"], (grads[0] + grads[1]) / 2)
    for k in res[0]["params"]:
        assert torch.equal(res[0]["params"][k], res[1]["params"][k]), k
    assert res[0]["sum"] == res[1]["sum"] == 3.0
    assert res[0]["any"] and res[1]["any"] and not res[0]["none"]
    assert res[0]["cat"] == res[1]["cat"] == [0, 0, 1, 1]
    assert res[0]["gathered"] == [{"rank": 0}, {"rank": 1}] and res[1]["gathered"] is None


def test_single_strategy_collectives_are_identities():
    net = nn.Linear(2, 1)
    s = SingleStrategy(net, torch.optim.SGD(net.parameters(), lr=0.1), 0.5)
    x = torch.arange(3.0)
    assert s.all_reduce_sum(x) is x and s.all_gather_cat(x) is x and s.any_rank(True) and s.gather_objects(1) == [1]


def test_learners_are_registered_by_name() -> None:
    assert set(LEARNERS) == {"single", "ddp", "deepspeed"}
    net = nn.Linear(2, 1)
    with pytest.raises(InvalidOption, match="allowed: single, ddp, deepspeed") as e:
        make_learner(LearnerConfig(name="nope"), net, torch.optim.SGD(net.parameters(), lr=0.1), max_grad_norm=0.5)
    assert e.value.key == "learner.name"


def test_settings_go_through_the_constructor() -> None:
    net = nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    s = make_learner(LearnerConfig(micro_batches=4), net, opt, max_grad_norm=0.25, keep_snapshots=False)
    assert isinstance(s, SingleStrategy)
    assert (s.micro_batches, s.max_grad_norm, s.keep_snapshots, s.skipped) == (4, 0.25, False, False)


def test_a_missing_deepspeed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """learner=deepspeed imports its module only when built; without DeepSpeed the error
    names the package to install."""
    monkeypatch.setitem(sys.modules, "deepspeed", None)
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    net = nn.Linear(2, 1)
    with pytest.raises(ImportError, match=r"pip install 'eqmarl\[deepspeed\]'"):
        make_learner(LearnerConfig(name="deepspeed"), net, torch.optim.Adam(net.parameters()), max_grad_norm=0.5)


def _spec(action_type: str) -> EnvSpec:
    return EnvSpec(
        n_agents=3,
        obs_dim=6,
        state_dim=18,
        action_type=action_type,
        action_dim=2 if action_type == "continuous" else 5,
        episode_limit=25,
    )


@pytest.mark.parametrize("share_params", [True, False], ids=["shared", "per_agent"])
def test_models_declare_their_zero3_external_parameters(share_params: bool) -> None:
    """A continuous policy declares its head's log-std (read by the distribution after the
    head returned), a discrete one nothing; a message-passing layer declares ``phi_e``'s
    first map, which it reads without calling it; EQC passes its policy's on."""
    model = ModelConfig(name="mlp", hidden=8, share_params=share_params)
    cont = make_policy(model, _spec("continuous"), False)
    assert isinstance(cont, ExternalParameters)
    assert [id(p) for p in cont.zero3_external_parameters()] == [id(cont.head.log_std)]
    wrapped = EQC(cont, SimpleNamespace())  # continuous: EQC reads nothing of the group action here
    assert [id(p) for p in wrapped.zero3_external_parameters()] == [id(cont.head.log_std)]
    assert make_policy(model, _spec("discrete"), False).zero3_external_parameters() == []
    layer = EGNNLayer(8, "silu", n_channels=1)
    assert [id(p) for p in layer.zero3_external_parameters()] == [id(layer.edge_in.weight), id(layer.edge_in.bias)]
